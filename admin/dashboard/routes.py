"""The supervisor dashboard: the page (`/`, its files under `/static`) and its live socket
(`/board`).

The page is plain HTML, CSS and JavaScript modules in admin/dashboard/static: nothing to build.
It logs in at POST /auth/token and uses the admin API like any client; the roles behind it
are the API's (admin.api.roles), so what the page hides a user could not do anyway.

`/board` is a WebSocket. The browser's first message logs in, `{"type": "hello", "token"}`
(a bearer token: never in the URL, where proxies and logs would keep it); the server answers
`{"type": "hello", "user", "role", "queues", "may_command"}` and then streams the board
(admin.dashboard.feed). The browser may then send `{"type": "watch", "call_id"}` (or
`"call_id": null`) to open a call. Anything else it sends gets an error message and changes
nothing; a page that says nothing for `HELLO_TIMEOUT_S`, or whose user is deactivated, is
closed (4401, 4403).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from pathlib import Path
from typing import Any, cast

from fastapi import APIRouter, WebSocket
from fastapi.responses import FileResponse, Response
from sqlalchemy import exc as sa_exc
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from admin.api import auth
from admin.api.auth import Principal
from admin.api.context import ApiContext
from admin.api.errors import ApiError
from admin.api.roles import Permission
from admin.dashboard.feed import BoardFeed, Watcher

log = logging.getLogger("parley.dashboard")
router = APIRouter(include_in_schema=False)

STATIC = Path(__file__).parent / "static"
HELLO_TIMEOUT_S = 10.0
RECHECK_S = 30.0  # how often a watcher's user is checked again (deactivated: closed)
MESSAGE_LIMIT = 4096  # bytes of one message from a page
_CALL_ID = re.compile(r"[0-9a-f]{32}")
_CLOSE = {401: 4401, 403: 4403, 404: 4404, 409: 4409, 503: 1013}

# The page loads nothing from elsewhere and runs no inline script.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; media-src 'self' blob:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@router.get("/")
def page() -> Response:
    return FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)


@router.websocket("/board")
async def board(websocket: WebSocket) -> None:
    feed = cast(BoardFeed | None, getattr(websocket.app.state, "board_feed", None))
    context = cast(ApiContext, websocket.app.state.context)
    await websocket.accept()
    if feed is None:
        await error_close(websocket, 503, "the live board is not running in this API process")
        return
    try:
        principal = await log_in(websocket, context, Permission.WATCH_BOARD)
        await websocket.send_json(_introduction(context, principal))
    except ApiError as error:
        await error_close(websocket, error.status, error.message)
        return
    except WebSocketDisconnect:
        return
    watcher = feed.join(principal.username)
    log.info("dashboard watcher joined", extra={"user_id": principal.user_id})
    tasks = {
        asyncio.create_task(_send(websocket, watcher)),
        asyncio.create_task(_receive(websocket, feed, watcher)),
        asyncio.create_task(recheck(websocket, context, principal)),
    }
    try:
        await until_one_ends(tasks, "dashboard socket failed")
    finally:
        feed.leave(watcher)
        log.info("dashboard watcher left", extra={"user_id": principal.user_id})


async def until_one_ends(tasks: set[asyncio.Task[None]], failed: str) -> None:
    """Runs a socket's tasks until one ends (the page left, the feed closed…), then stops the
    others; a task that failed for another reason than the connection is logged as `failed`."""
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        failure = None if task.cancelled() else task.exception()
        if failure is not None and not isinstance(
            failure, WebSocketDisconnect | ConnectionError | OSError
        ):
            log.error(failed, exc_info=failure)


async def log_in(websocket: WebSocket, context: ApiContext, permission: Permission) -> Principal:
    """The user behind the socket's first message, `{"type": "hello", "token"}`; raises
    ApiError (401, 403, 503) when there is none or they lack `permission`."""
    try:
        raw = await asyncio.wait_for(websocket.receive_text(), HELLO_TIMEOUT_S)
    except TimeoutError:
        raise ApiError(401, 'log in first: send {"type": "hello", "token": …}') from None
    message = parse(raw)
    token = message.get("token") if message.get("type") == "hello" else None
    if not isinstance(token, str) or not token:
        raise ApiError(401, 'log in first: send {"type": "hello", "token": …}')
    try:
        return await run_in_threadpool(_authorize, context, token, permission)
    except (sa_exc.OperationalError, sa_exc.InterfaceError):
        raise ApiError(503, "the database cannot be reached; try again shortly") from None


def _introduction(context: ApiContext, principal: Principal) -> dict[str, Any]:
    """Who the page is for, and what it may offer them (the API decides again on each act)."""
    plane = context.control
    name = principal.username
    commands_all = principal.may(Permission.COMMAND_ALL_CALLS)
    return {
        "type": "hello",
        "user": name,
        "role": principal.role.value,
        "queues": sorted(plane.supervisors.get(name, ())) if plane else [],
        "may_command": plane is not None and principal.may(Permission.COMMAND_CALLS),
        "commands_all": commands_all,
        "is_supervisor": plane is not None and name in plane.supervisors,
        "phone": plane.supervisor_phones.get(name) if plane else None,
        "phones": sorted(plane.phones) if plane and commands_all else [],
    }


def _authorize(context: ApiContext, token: str, permission: Permission) -> Principal:
    with context.sessions() as session:
        principal = auth.authenticate(session, keys=context.keys, bearer=token, api_key=None)
    return auth.require(principal, permission)


async def _send(websocket: WebSocket, watcher: Watcher) -> None:
    while True:
        await websocket.send_text(await watcher.queue.get())


async def _receive(websocket: WebSocket, feed: BoardFeed, watcher: Watcher) -> None:
    while True:
        raw = await websocket.receive_text()
        try:
            message = parse(raw)
            if message.get("type") != "watch":
                raise ApiError(422, 'a page may only send {"type": "watch", "call_id"}')
            call_id = message.get("call_id")
            if call_id is not None and not (
                isinstance(call_id, str) and _CALL_ID.fullmatch(call_id)
            ):
                raise ApiError(422, "call_id is a call's id (32 hex digits) or null")
        except ApiError as error:
            await websocket.send_json({"type": "error", "message": error.message})
            continue
        feed.watch(watcher, call_id)


async def recheck(
    websocket: WebSocket,
    context: ApiContext,
    principal: Principal,
    permission: Permission = Permission.WATCH_BOARD,
) -> None:
    """Closes the socket once the user is deactivated or loses `permission`."""
    while True:
        await asyncio.sleep(RECHECK_S)
        try:
            await run_in_threadpool(_still_allowed, context, principal, permission)
        except (sa_exc.OperationalError, sa_exc.InterfaceError):
            continue  # the database is down: the socket goes on, checked again later
        except ApiError as refused:
            await error_close(websocket, refused.status, refused.message)
            return


def _still_allowed(context: ApiContext, principal: Principal, permission: Permission) -> None:
    with context.sessions() as session:
        auth.recheck(session, principal, permission)


def parse(raw: str) -> dict[str, Any]:
    if len(raw.encode()) > MESSAGE_LIMIT:
        raise ApiError(422, f"a message is at most {MESSAGE_LIMIT} bytes")
    try:
        message = json.loads(raw)
    except ValueError:
        raise ApiError(422, "a message is a JSON object") from None
    if not isinstance(message, dict):
        raise ApiError(422, "a message is a JSON object")
    return message


async def error_close(websocket: WebSocket, status: int, message: str) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_json({"type": "error", "message": message, "status": status})
        await websocket.close(code=_CLOSE.get(status, 1008), reason=message[:120])
