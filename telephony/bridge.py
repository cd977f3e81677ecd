"""The bridge between one call's media port and its duplex session (asyncio side).

Caller frames flow into the session continuously and are never gated while the agent speaks.
Agent audio goes out through the one playout path (telephony.playout); a ClearPlayout empties
it at once and tells the session how much was heard.

The agent can be detached from the call and re-attached with its conversation intact: while
detached its session stays open but hears nothing (the call's mix no longer sends it the
caller) and whatever it says is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from agent.redaction import RedactionPolicy, withheld
from agent.session import (
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
from telephony.playout import Cause, Playout

log = logging.getLogger(__name__)

HANGUP_PLAYOUT_LIMIT_S = 20.0
"""The longest the call stays up after the agent asked to hang up, for its last words."""


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
        redaction: RedactionPolicy | None = None,
        on_sensitive: Callable[[bool], None] = lambda _collecting: None,
    ) -> None:
        self.call_id = call_id
        # What was said is redacted before any event leaves the worker (agent/redaction.py).
        self.redaction = redaction if redaction is not None else RedactionPolicy()
        self._agent_said = ""  # the agent's last words: the question the caller answers
        # A PCI pause (a card number being given): no word said reaches an event.
        self.pci_paused = False
        self.words_withheld = False  # the caller did not consent, and the line keeps no words
        self.port: MediaPort | None = port
        self.session = session
        self.outlet = outlet
        self._rx_ready = rx_ready
        self._on_hangup_requested = on_hangup_requested
        self._on_session_failed = on_session_failed
        self._on_send_dtmf = on_send_dtmf
        # The agent asks for a card number (True) or is done with it (False): a PCI pause.
        self._on_sensitive = on_sensitive
        self.playout = Playout(port)
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.attached = True
        self.flushes = 0

    async def start(self) -> None:
        await self.session.start()
        self._tasks = [
            asyncio.create_task(self._pump_caller(), name=f"caller-{self.call_id}"),
            asyncio.create_task(self._pump_agent(), name=f"agent-{self.call_id}"),
            asyncio.create_task(self.playout.run(), name=f"playout-{self.call_id}"),
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
                if self.attached:
                    await send(CallerAudio(pcm, t_ns))
            await ready.wait()

    async def _pump_agent(self) -> None:
        try:
            async for item in self.session.outputs():
                if isinstance(item, AgentAudio):
                    if self.attached:
                        self.playout.push(item.utterance_id, item.pcm)
                elif isinstance(item, AgentDtmf):
                    if self.attached:
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
            reason = str(event.data.get("reason", "agent"))
            task = asyncio.create_task(self._hang_up_when_heard(reason), name="agent-hangup")
            task.add_done_callback(self._task_done)
            self._tasks.append(task)
        elif event.kind is EventKind.AGENT_UTTERANCE_DONE:
            self._mark_done(str(event.data.get("utterance_id", "")))
        sensitive = event.data.get("sensitive") if event.kind is EventKind.REPLY else None
        if sensitive is True:
            self._on_sensitive(True)  # paused before this reply's own words go out
        data = {"event": event.kind.value, **event.data}
        if self.pci_paused:
            redacted = withheld(data)
        elif self.words_withheld:
            redacted = withheld(data, "no_consent")
        else:
            redacted = self.redaction.agent_event(data, context=self._agent_said)
        if event.kind is EventKind.AGENT_TRANSCRIPT:
            self._agent_said = str(event.data.get("text", ""))
        self.outlet.emit(CallEvent(self.call_id, CallEventKind.AGENT, redacted))
        if sensitive is False:
            self._on_sensitive(False)  # resumed after it: its facts were collected paused

    async def _hang_up_when_heard(self, reason: str) -> None:
        """The agent's last words (its goodbye, sent with the hang-up request and faster than
        it plays) reach the caller before the call ends; a caller who talks over them cuts
        them short, and a playout that never drains is cut at `HANGUP_PLAYOUT_LIMIT_S`."""
        await self.playout.drained(limit_s=HANGUP_PLAYOUT_LIMIT_S)
        self._on_hangup_requested(reason)

    def _mark_done(self, utterance_id: str) -> None:
        if self.attached:
            self.playout.end(utterance_id)

    async def detach(self) -> None:
        """The agent leaves the call: what it was saying stops, its session stays open."""
        if not self.attached:
            return
        await self.flush("detached", Cause.CONTROL)
        self.attached = False

    async def reattach(self, note: str | None = None) -> None:
        """The agent is back: it hears the caller from now on (nothing said meanwhile), tells
        the caller so, and has the supervisor's note as a plain fact."""
        if self.attached:
            return
        if self.port is not None:
            self.port.rx.clear()
        self.attached = True
        await self.session.resume(note or None)

    async def instruct(self, text: str) -> None:
        await self.session.send_instruction(text)

    async def flush(self, reason: str, cause: Cause = Cause.BARGE_IN) -> PlayoutReport | None:
        """Stops the agent at once and reports how much of its utterance the caller heard."""
        if self.port is None:
            return None
        cut = self.playout.flush(cause)
        if cut is None:
            return None
        utterance_id, played_ms, anything = cut
        if not anything:
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
