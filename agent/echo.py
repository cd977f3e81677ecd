"""The echo test session: plays the caller's own audio back, for trying the phone path.

It is not a voice model. Lines use it until the embedded engine is configured, and the
telephony tests use it to check two-way audio, DTMF and barge-in flushes end to end:

- every caller frame comes back `delay_ms` later (paced by the caller's own frames);
- DTMF `#` clears the agent's playout at once, as a barge-in would;
- DTMF `*` asks the call to hang up;
- any other digit is sent back to the caller as DTMF.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator

from agent.session import (
    FRAME_MS,
    AgentAudio,
    AgentDtmf,
    CallerAudio,
    CallerDtmf,
    ClearPlayout,
    EventKind,
    PlayoutReport,
    SessionEvent,
    SessionOutput,
)

_CLOSED = object()


class EchoSession:
    """Returns the caller's audio after a fixed delay; see the module docstring for the digits."""

    def __init__(self, *, delay_ms: int = 0) -> None:
        self._delay_frames = max(0, delay_ms // FRAME_MS)
        self._pending: collections.deque[bytes] = collections.deque()
        self._out: asyncio.Queue[SessionOutput | object] = asyncio.Queue()
        self._utterance = 0
        self.reports: list[PlayoutReport] = []

    def _utterance_id(self) -> str:
        return f"echo-{self._utterance}"

    async def start(self) -> None:
        await self._out.put(
            SessionEvent(EventKind.AGENT_UTTERANCE_STARTED, {"utterance_id": self._utterance_id()})
        )

    async def send_audio(self, frame: CallerAudio) -> None:
        self._pending.append(frame.pcm)
        if len(self._pending) > self._delay_frames:
            pcm = self._pending.popleft()
            self._out.put_nowait(AgentAudio(self._utterance_id(), pcm))

    async def send_dtmf(self, digit: CallerDtmf) -> None:
        if digit.digit == "#":
            self._pending.clear()
            self._out.put_nowait(ClearPlayout(reason="dtmf"))
            self._utterance += 1
        elif digit.digit == "*":
            self._out.put_nowait(SessionEvent(EventKind.HANGUP_REQUESTED, {"reason": "dtmf"}))
        else:
            self._out.put_nowait(AgentDtmf(digit.digit))

    async def send_instruction(self, text: str) -> None:
        return None

    async def resume(self, note: str | None) -> None:
        return None

    async def playout_report(self, report: PlayoutReport) -> None:
        self.reports.append(report)

    async def outputs(self) -> AsyncIterator[SessionOutput]:
        while True:
            item = await self._out.get()
            if item is _CLOSED:
                return
            assert isinstance(item, AgentAudio | AgentDtmf | ClearPlayout | SessionEvent)
            yield item

    async def close(self) -> None:
        self._out.put_nowait(_CLOSED)
