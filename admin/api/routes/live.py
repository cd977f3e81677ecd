"""/live: a WebSocket that streams call events to dashboards as they are stored.

Authenticate with `Authorization: Bearer <token>`, `X-API-Key: <key>`, or `?token=<token>`
(browsers cannot set headers on a WebSocket). Supervisors and admins only. Each message is
{"type": "event", "event": {...}} (caller numbers masked, caller text made safe) or
{"type": "error", "error": {...}}. An event that cannot be shown is left out (and logged); the
stream goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import cast

from fastapi import APIRouter, WebSocket
from sqlalchemy import exc as sa_exc
from starlette.concurrency import run_in_threadpool

from admin.api import auth, live_feed
from admin.api.auth import Principal
from admin.api.call_queries import event_out
from admin.api.context import ApiContext
from admin.api.errors import ApiError, ErrorBody, error_response
from admin.api.live_feed import FeedPosition
from admin.api.roles import Permission
from admin.models import CallEventRecord

log = logging.getLogger("parley.api")
router = APIRouter(tags=["live"])

_CLOSE_CODES = {401: 4401, 403: 4403, 503: 1013}  # 1013: try again later


@router.websocket("/live")
async def live(websocket: WebSocket) -> None:
    context = cast(ApiContext, websocket.app.state.context)
    try:
        principal = await run_in_threadpool(_authorize, context, websocket)
        position = await run_in_threadpool(_start, context)
    except ApiError as error:
        await _deny(websocket, error)
        return
    except (sa_exc.OperationalError, sa_exc.InterfaceError):
        await _deny(websocket, _unavailable())
        return
    await websocket.accept()
    log.info("live watcher joined", extra={"user_id": principal.user_id})
    sender = asyncio.create_task(_stream(websocket, context, principal, position))
    closed = asyncio.create_task(_until_closed(websocket))
    done, pending = await asyncio.wait({sender, closed}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error("live stream failed", exc_info=task.exception())
    log.info("live watcher left", extra={"user_id": principal.user_id})


def _authorize(context: ApiContext, websocket: WebSocket) -> Principal:
    header = websocket.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    bearer = credential if scheme.lower() == "bearer" else websocket.query_params.get("token")
    with context.sessions() as session:
        principal = auth.authenticate(
            session, keys=context.keys, bearer=bearer, api_key=websocket.headers.get("x-api-key")
        )
    return auth.require(principal, Permission.WATCH_LIVE)


def _start(context: ApiContext) -> FeedPosition:
    with context.sessions() as session:
        return live_feed.start(session)


def _poll(
    context: ApiContext, principal: Principal, position: FeedPosition
) -> list[CallEventRecord]:
    """New events, after checking that the watcher may still watch (deactivated: 401)."""
    with context.sessions() as session:
        auth.recheck(session, principal, Permission.WATCH_LIVE)
        return live_feed.poll(session, position)


async def _stream(
    websocket: WebSocket, context: ApiContext, principal: Principal, position: FeedPosition
) -> None:
    database_down = False
    while True:
        try:
            events = await run_in_threadpool(_poll, context, principal, position)
            database_down = False
        except ApiError as error:
            await websocket.send_json({"type": "error", **_body(error)})
            await websocket.close(code=_CLOSE_CODES.get(error.status, 1008), reason=error.message)
            return
        except (sa_exc.OperationalError, sa_exc.InterfaceError):
            if not database_down:  # say it once; keep trying, the events are not lost
                await websocket.send_json({"type": "error", **_body(_unavailable())})
            database_down = True
            events = []
        for event in events:
            message = _event_message(event)
            if message is not None:
                await websocket.send_text(message)
        await asyncio.sleep(context.live_poll_s)


def _event_message(event: CallEventRecord) -> str | None:
    """The event as a message, or None for one that cannot be shown (logged): every watcher
    gets the same events, so one that fails must not end every stream."""
    try:
        shown = {"type": "event", "event": event_out(event).model_dump(mode="json")}
        return json.dumps(shown, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except Exception:
        log.exception(
            "call event left out of /live",
            extra={"event_id": event.event_id, "call_id": event.call_id},
        )
        return None


async def _until_closed(websocket: WebSocket) -> None:
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass  # watchers have nothing to say; anything they send is ignored


async def _deny(websocket: WebSocket, error: ApiError) -> None:
    """Refuses the handshake with the HTTP error (where the server can), else closes."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(error_response(error))
        return
    await websocket.close(code=_CLOSE_CODES.get(error.status, 1008), reason=error.message)


def _body(error: ApiError) -> dict[str, object]:
    body = ErrorBody.model_validate(
        {"error": {"code": error.code, "message": error.message, "details": error.details}}
    )
    return body.model_dump(mode="json")


def _unavailable() -> ApiError:
    return ApiError(
        503, "the database cannot be reached; try again shortly", code="database_unavailable"
    )
