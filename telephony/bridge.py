"""The bridge between one call's media port and its duplex session (asyncio side).

Caller frames flow into the session continuously and are never gated while the agent speaks.
Agent audio is cut into 20 ms frames and queued for playout a little ahead of the clock; a
ClearPlayout empties the playout queue at once and tells the session how much was heard.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable

from agent.session import (
    FRAME_BYTES,
    FRAME_MS,
    AgentAudio,
    AgentDtmf,
    CallerAudio,
    CallerDtmf,
    ClearPlayout,
    DuplexSession,
    EventKind,
    PlayoutReport,
    SessionError,
    SessionEvent,
)
from telephony.events import CallEvent, CallEventKind, EventOutlet
from telephony.mediaport import MediaPort

log = logging.getLogger(__name__)

# Agent audio queued ahead of the playout clock. Enough to ride out scheduling hiccups, small
# enough that anything still upstream can be dropped instantly on a flush.
PLAYOUT_AHEAD_FRAMES = 10


class CallBridge:
    """Runs one call's session: caller audio in, agent audio out, events to the outlet."""

    def __init__(
        self,
        *,
        call_id: str,
        port: MediaPort,
        session: DuplexSession,
        outlet: EventOutlet,
        rx_ready: asyncio.Event,
        on_hangup_requested: Callable[[str], None],
        on_session_failed: Callable[[str], None],
        on_send_dtmf: Callable[[str], None] = lambda _digits: None,
    ) -> None:
        self.call_id = call_id
        self.port: MediaPort | None = port
        self.session = session
        self.outlet = outlet
        self._rx_ready = rx_ready
        self._on_hangup_requested = on_hangup_requested
        self._on_session_failed = on_session_failed
        self._on_send_dtmf = on_send_dtmf
        self._pending: collections.deque[tuple[str, bytes]] = collections.deque()
        self._partial = b""
        self._pending_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.flushes = 0

    async def start(self) -> None:
        await self.session.start()
        self._tasks = [
            asyncio.create_task(self._pump_caller(), name=f"caller-{self.call_id}"),
            asyncio.create_task(self._pump_agent(), name=f"agent-{self.call_id}"),
            asyncio.create_task(self._pace_playout(), name=f"playout-{self.call_id}"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._closed:
            return
        error = task.exception()
        if error is not None:
            log.error(
                "bridge task failed",
                extra={"call_id": self.call_id, "task": task.get_name(), "error": repr(error)},
            )
            self._on_session_failed(type(error).__name__)

    async def dtmf(self, digit: str) -> None:
        await self.session.send_dtmf(CallerDtmf(digit, time.monotonic_ns()))

    async def _pump_caller(self) -> None:
        assert self.port is not None
        rx = self.port.rx
        ready = self._rx_ready
        send = self.session.send_audio
        while True:
            ready.clear()
            while rx:
                pcm, t_ns = rx.popleft()
                await send(CallerAudio(pcm, t_ns))
            await ready.wait()

    async def _pump_agent(self) -> None:
        try:
            async for item in self.session.outputs():
                if isinstance(item, AgentAudio):
                    self._enqueue(item)
                elif isinstance(item, AgentDtmf):
                    self._on_send_dtmf(item.digits)
                elif isinstance(item, ClearPlayout):
                    await self.flush(item.reason)
                elif isinstance(item, SessionEvent):
                    self._session_event(item)
        except SessionError as error:
            log.warning("session failed", extra={"call_id": self.call_id, "error": str(error)})
            self._on_session_failed(str(error))

    def _session_event(self, event: SessionEvent) -> None:
        if event.kind is EventKind.HANGUP_REQUESTED:
            self._on_hangup_requested(str(event.data.get("reason", "agent")))
        elif event.kind is EventKind.AGENT_UTTERANCE_DONE:
            self._mark_done(str(event.data.get("utterance_id", "")))
        self.outlet.emit(
            CallEvent(self.call_id, CallEventKind.AGENT, {"event": event.kind.value, **event.data})
        )

    def _mark_done(self, utterance_id: str) -> None:
        # Pad the utterance's last partial frame so it is heard, not dropped; then the end
        # marker, so that a caller speaking after the whole answer played is not a barge-in.
        if self._partial:
            frame = self._partial.ljust(FRAME_BYTES, b"\0")
            self._partial = b""
            self._pending.append((utterance_id, frame))
        self._pending.append((utterance_id, b""))
        self._pending_ready.set()

    def _enqueue(self, audio: AgentAudio) -> None:
        data = self._partial + audio.pcm
        whole = len(data) - len(data) % FRAME_BYTES
        for offset in range(0, whole, FRAME_BYTES):
            self._pending.append((audio.utterance_id, data[offset : offset + FRAME_BYTES]))
        self._partial = data[whole:]
        self._pending_ready.set()

    async def _pace_playout(self) -> None:
        """Moves agent frames into the port no more than PLAYOUT_AHEAD_FRAMES ahead."""
        port = self.port
        assert port is not None
        pending = self._pending
        ready = self._pending_ready
        while True:
            while pending and port.playout_depth() < PLAYOUT_AHEAD_FRAMES:
                utterance_id, frame = pending.popleft()
                if frame:
                    port.queue_playout(utterance_id, frame)
                else:
                    port.end_utterance(utterance_id)
            ready.clear()
            if not pending:
                await ready.wait()
                continue
            # The port is full: top it up when half has played, or at once when audio
            # arrives (after a flush emptied both queues, a resumed or new reply must not
            # wait out this pause).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), FRAME_MS / 1000 * (PLAYOUT_AHEAD_FRAMES // 2))

    async def flush(self, reason: str) -> PlayoutReport | None:
        """Stops the agent at once and reports how much of its utterance the caller heard."""
        had_pending = bool(self._pending)
        self._pending.clear()
        self._partial = b""
        if self.port is None:
            return None
        utterance_id, played_ms = self.port.flush()
        if utterance_id is None and not had_pending:
            return None  # nothing was playing: not a flush worth recording
        self.flushes += 1
        self.outlet.emit(
            CallEvent(
                self.call_id,
                CallEventKind.PLAYOUT_FLUSHED,
                {"reason": reason, "utterance_id": utterance_id, "played_ms": played_ms},
            )
        )
        if utterance_id is None:
            return None
        report = PlayoutReport(utterance_id, played_ms, interrupted=True)
        await self.session.playout_report(report)
        return report

    async def close(self) -> None:
        """Stops the pumps, then closes the session; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        # The pjsua2 thread must drop the port's last reference: a pjsua2 object destroyed
        # on any other thread aborts the process.
        self.port = None
        try:
            await asyncio.wait_for(self.session.close(), timeout=2.0)
        except (TimeoutError, SessionError) as error:
            log.warning(
                "session close failed", extra={"call_id": self.call_id, "error": repr(error)}
            )
