"""The browser audio leg's WebSocket, `/calls/{call_id}/audio`: a supervisor's microphone and
speaker in a call, relayed to the media worker holding it (telephony/browserleg.py).

The page first joins the call with its browser as the phone (`POST /calls/{id}/supervise`,
`{"phone": "browser"}`; the escalation service does the same for a supervisor whose phone is
`browser`), which rings a browser leg for that user; then it opens this socket:

- its first message logs in, `{"type": "hello", "token"}`; the user must be allowed to command
  the call (admins: every call; supervisors: their queues' calls), as for any call command;
- the server answers `{"type": "joined", "rate": 16000, "frame_bytes": 640}` once the worker
  took the leg (the supervisor is then on the call, in the mode the call is in);
- both sides then send binary messages of 16 kHz 16-bit little-endian mono PCM: the page any
  whole number of samples per message (at most `MAX_MESSAGE` bytes), the server 20 ms frames;
- closing the socket hangs up the leg; the server closes it (1000, after `{"type": "ended"}`)
  when the leg ends on the worker: dismissed, the call over, or another leg in its place.

Every join is audited (`call.audio`), refusals too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import cast

from fastapi import APIRouter, WebSocket
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from admin.api import call_control_access as access
from admin.api.auth import Principal
from admin.api.context import ApiContext
from admin.api.control_plane import ControlPlane
from admin.api.errors import ApiError
from admin.api.roles import Permission
from admin.dashboard.routes import error_close, log_in, parse, recheck, until_one_ends
from agent.session import FRAME_BYTES, SAMPLE_RATE
from telephony import browserleg
from telephony.commands import browser_uri

log = logging.getLogger("parley.dashboard.audio")
router = APIRouter(include_in_schema=False)

MAX_MESSAGE = 16 * FRAME_BYTES  # bytes of audio in one message from a page (320 ms)
_CALL_ID = re.compile(r"[0-9a-f]{32}")
ACTION = "call.audio"


@router.websocket("/calls/{call_id}/audio")
async def audio(websocket: WebSocket, call_id: str) -> None:
    context = cast(ApiContext, websocket.app.state.context)
    await websocket.accept()
    try:
        if not _CALL_ID.fullmatch(call_id):
            raise ApiError(404, "no such call: a call's id is 32 hex digits")
        principal = await log_in(websocket, context, Permission.COMMAND_CALLS)
        try:
            leg_uri = browser_uri(principal.username)
        except ValueError as error:
            raise ApiError(422, str(error)) from None
        plane = await run_in_threadpool(_check, context, principal, call_id)
        try:
            connection = await browserleg.connect(
                plane.workers.run_dir, plane.workers.workers, call_id, principal.username
            )
        except browserleg.NotConnected as refused:
            await run_in_threadpool(_audit, context, principal, call_id, leg_uri, "refused")
            raise ApiError(409, str(refused)) from None
    except ApiError as error:
        await error_close(websocket, error.status, error.message)
        return
    except WebSocketDisconnect:
        return
    await run_in_threadpool(_audit, context, principal, call_id, leg_uri, "done")
    log.info("browser leg joined", extra={"call_id": call_id, "user_id": principal.user_id})
    try:
        await websocket.send_json(
            {"type": "joined", "rate": SAMPLE_RATE, "frame_bytes": FRAME_BYTES}
        )
        tasks = {
            asyncio.create_task(_from_page(websocket, connection.writer)),
            asyncio.create_task(_to_page(websocket, connection.reader)),
            asyncio.create_task(recheck(websocket, context, principal, Permission.COMMAND_CALLS)),
        }
        await until_one_ends(tasks, "browser leg failed")
    finally:
        await connection.close()
        log.info("browser leg left", extra={"call_id": call_id, "user_id": principal.user_id})
        with contextlib.suppress(Exception):
            await websocket.send_json({"type": "ended"})
            await websocket.close(code=1000)


def _check(context: ApiContext, principal: Principal, call_id: str) -> ControlPlane:
    """The control plane, once `principal` may command the call (refusals audited)."""
    details = {"leg": "browser"}
    with context.sessions() as session:
        access.check_call(
            session, context, principal, call_id=call_id, action=ACTION, details=details
        )
    return access.control_plane(context)


def _audit(
    context: ApiContext, principal: Principal, call_id: str, leg_uri: str, outcome: str
) -> None:
    with context.sessions() as session:
        access.record(
            session,
            context,
            principal,
            action=ACTION,
            target=f"call:{call_id}",
            outcome=outcome,
            details={"leg": leg_uri},
        )


async def _from_page(websocket: WebSocket, writer: asyncio.StreamWriter) -> None:
    """The supervisor's voice, in whole 20 ms frames, to the worker."""
    pending = b""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is None:
            text = message.get("text") or ""
            try:
                said = parse(text)
            except ApiError as error:
                await websocket.send_json({"type": "error", "message": error.message})
                continue
            if said.get("type") == "bye":
                return
            await websocket.send_json(
                {"type": "error", "message": 'send audio as binary messages, or {"type": "bye"}'}
            )
            continue
        if len(data) > MAX_MESSAGE or len(data) % 2:
            await websocket.send_json(
                {
                    "type": "error",
                    "message": f"audio is whole 16-bit samples, at most {MAX_MESSAGE} bytes a "
                    "message; dropped",
                }
            )
            continue
        pending += data
        whole = len(pending) - len(pending) % FRAME_BYTES
        if whole:
            writer.write(pending[:whole])
            pending = pending[whole:]
            await writer.drain()


async def _to_page(websocket: WebSocket, reader: asyncio.StreamReader) -> None:
    """What the supervisor hears, frame by frame, to the page; returns when the leg ends."""
    while True:
        try:
            pcm = await reader.readexactly(FRAME_BYTES)
        except asyncio.IncompleteReadError:
            return
        await websocket.send_bytes(pcm)
