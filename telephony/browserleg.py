"""A supervisor's leg in a web browser: the dashboard tab's microphone and speaker stand in
for a phone the worker would ring.

The worker "rings" a browser leg (`browser:<supervisor>`, in place of a phone's SIP URI) by
waiting for that supervisor's audio to connect; no pjsua2 call slot is used. The API relays the
page's audio (admin/dashboard/audio.py) over the worker's audio socket (`audio_path`, a Unix
socket only its owner may use):

1. the API sends one JSON line, `{"call_id": …, "supervisor": …}`;
2. the worker answers one JSON line: `{"ok": true}`, or `{"ok": false, "held": bool, "error"}`
   (`held` false: this worker does not hold the call, try the next one);
3. both sides then send 20 ms frames of 16 kHz 16-bit mono PCM, 640 bytes each with no framing
   (the size is fixed), until either side closes. Closing is hanging up.

In the worker the leg is a media port in the call's conference bridge (`Leg.SUPERVISOR`):
what the bridge gives it goes to the browser; the browser's frames are its playout, behind a
small jitter buffer (`JITTER_FRAMES`) that never grows past `PLAYOUT_FRAMES`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent.session import FRAME_BYTES
from telephony.commands import BROWSER, browser_name
from telephony.inbox import LineTooLong, read_line

__all__ = [
    "BrowserLeg",
    "Connection",
    "LegRefused",
    "NotConnected",
    "audio_path",
    "connect",
    "serve_connection",
]

HELLO_LIMIT = 1024  # bytes of the API's first line
HELLO_TIMEOUT_S = 5.0
RING_S = 30.0  # a browser leg nobody connects to stops ringing (408) after this long
CLAIM_WAIT_S = 3.0  # a connection may arrive just before its leg starts ringing
READY_S = 5.0  # for its media port to join the call's bridge
JITTER_FRAMES = 2  # frames held before the browser's audio plays (again), 40 ms
PLAYOUT_FRAMES = 8  # at most this much of it queued (160 ms): older frames are dropped
UTTERANCE = "browser"  # the port counts the supervisor's audio as one long utterance


def audio_path(run_dir: Path, index: int) -> Path:
    return run_dir / f"worker-{index}.audio.sock"


class LegRefused(Exception):
    def __init__(self, message: str, *, held: bool) -> None:
        super().__init__(message)
        self.held = held  # the worker holds the call (so no other worker will take it)


class Port(Protocol):
    """What the relay needs of the leg's media port (telephony.mediaport.MediaPort)."""

    rx: Any  # deque of (pcm, monotonic ns): what the supervisor hears

    def queue_playout(self, utterance_id: str, frame_pcm: bytes) -> bool: ...


@dataclass(eq=False)
class BrowserLeg:
    """One browser leg of one call. Its fields are the worker's pjsua2 thread's, except
    `connected`, `ready`, `rx_ready` and `closer`, which are its event loop's."""

    supervisor: str
    rung_mono: float
    record: Any = None  # the call (telephony.worker.ActiveCall); None once it is over
    port: Port | None = None
    dropped: bool = False  # ended by Parley (a command, the call's end), not by the browser
    ended: bool = False
    connected: bool = False  # the browser's audio arrived
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # its port is in the bridge
    rx_ready: asyncio.Event = field(default_factory=asyncio.Event)
    closer: Callable[[], None] | None = None  # hangs up the connection

    def close(self) -> None:
        """Hangs up the browser's connection (event loop only)."""
        self.ready.set()  # a relay still waiting for its port gives up
        if self.closer is not None:
            self.closer()


Claim = Callable[[str, str], Awaitable[BrowserLeg]]  # (call id, supervisor) -> the leg
Hangup = Callable[[BrowserLeg], None]  # the browser left (the worker ends the leg)


async def serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, claim: Claim, hung_up: Hangup
) -> None:
    """Serves one connection on the worker's audio socket, start to end."""
    leg: BrowserLeg | None = None
    try:
        try:
            line = await asyncio.wait_for(read_line(reader, HELLO_LIMIT), HELLO_TIMEOUT_S)
            call_id, supervisor = _parse_hello(line)
            leg = await claim(call_id, supervisor)
        except LegRefused as refused:
            await _answer(writer, {"ok": False, "held": refused.held, "error": str(refused)})
            return
        except (TimeoutError, LineTooLong, ValueError) as error:
            message = "no hello" if isinstance(error, TimeoutError) else str(error)
            await _answer(writer, {"ok": False, "held": False, "error": message})
            return
        leg.closer = writer.close
        try:
            await asyncio.wait_for(leg.ready.wait(), READY_S)
        except TimeoutError:
            pass
        if leg.port is None or leg.ended:
            message = "the leg ended" if leg.ended else "the worker could not join the leg"
            await _answer(writer, {"ok": False, "held": True, "error": message})
            return
        await _answer(writer, {"ok": True})
        await _relay(leg, reader, writer)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
        if leg is not None and not leg.ended:
            hung_up(leg)


def _parse_hello(line: bytes | None) -> tuple[str, str]:
    if line is None:
        raise ValueError("closed before its hello")
    try:
        hello = json.loads(line)
    except ValueError:
        raise ValueError("the hello is one JSON object on one line") from None
    if not isinstance(hello, dict):
        raise ValueError("the hello is one JSON object on one line")
    call_id, supervisor = hello.get("call_id"), hello.get("supervisor")
    if not isinstance(call_id, str) or not re.fullmatch(r"[0-9a-f]{32}", call_id):
        raise ValueError("call_id is a call's id (32 hex digits)")
    if not isinstance(supervisor, str) or browser_name(BROWSER + supervisor) is None:
        raise ValueError("supervisor is a supervisor's name")
    return call_id, supervisor


async def _answer(writer: asyncio.StreamWriter, reply: dict[str, object]) -> None:
    writer.write(json.dumps(reply).encode() + b"\n")
    await writer.drain()


async def _relay(
    leg: BrowserLeg, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    port = leg.port
    if port is None:
        return
    tasks = {asyncio.create_task(_up(port, reader)), asyncio.create_task(_down(leg, port, writer))}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            error = None if task.cancelled() else task.exception()
            if error is not None and not isinstance(error, ConnectionError | OSError):
                raise error
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _up(port: Port, reader: asyncio.StreamReader) -> None:
    """The browser's voice into the call."""
    while True:
        try:
            pcm = await reader.readexactly(FRAME_BYTES)
        except asyncio.IncompleteReadError:
            return
        port.queue_playout(UTTERANCE, pcm)


async def _down(leg: BrowserLeg, port: Port, writer: asyncio.StreamWriter) -> None:
    """What the supervisor hears, to the browser."""
    rx = port.rx
    while True:
        await leg.rx_ready.wait()
        leg.rx_ready.clear()
        while rx:
            pcm, _ = rx.popleft()
            writer.write(pcm)
        await writer.drain()


@dataclass
class Connection:
    """The API's end of one browser leg (`connect`)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    worker: int

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


class NotConnected(Exception):
    """No worker took the leg; the message says why (for the supervisor)."""


async def connect(run_dir: Path, workers: int, call_id: str, supervisor: str) -> Connection:
    """Joins the browser leg ringing for `supervisor` on `call_id`, on whichever worker holds
    the call. Raises NotConnected."""
    hello = json.dumps({"call_id": call_id, "supervisor": supervisor}).encode() + b"\n"
    down = []
    for index in range(workers):
        path = audio_path(run_dir, index)
        try:
            reader, writer = await asyncio.open_unix_connection(path)
        except OSError as error:
            down.append(f"worker {index}: {error.strerror or error}")
            continue
        try:
            writer.write(hello)
            await writer.drain()
            line = await asyncio.wait_for(
                read_line(reader, HELLO_LIMIT), CLAIM_WAIT_S + READY_S + 1.0
            )
            reply = json.loads(line) if line else {}
        except (OSError, TimeoutError, LineTooLong, ValueError) as error:
            writer.close()
            down.append(f"worker {index}: {error}")
            continue
        if isinstance(reply, dict) and reply.get("ok") is True:
            return Connection(reader, writer, index)
        writer.close()
        if isinstance(reply, dict) and reply.get("held"):
            raise NotConnected(str(reply.get("error") or "the worker refused the leg"))
    detail = f" (not answering: {'; '.join(down)})" if down else ""
    raise NotConnected(f"no media worker holds a live call {call_id}{detail}")
