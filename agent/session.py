"""The duplex session contract between a phone call and a voice model.

A session is a pair of streams plus control. Caller audio goes in continuously (never gated
while the agent speaks); agent audio and events come out. Frames and events are small frozen
dataclasses created once and never mutated.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

SAMPLE_RATE = 16_000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
FRAME_BYTES = FRAME_SAMPLES * 2  # PCM16 mono


def pcm_ms(pcm: bytes) -> int:
    """Duration of 16 kHz PCM16 mono audio in whole milliseconds."""
    return len(pcm) // 2 * 1000 // SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class CallerAudio:
    """One 20 ms frame of caller audio (16 kHz PCM16 mono)."""

    pcm: bytes
    t_mono_ns: int


@dataclass(frozen=True, slots=True)
class CallerDtmf:
    digit: str
    t_mono_ns: int


@dataclass(frozen=True, slots=True)
class AgentAudio:
    """A chunk of agent speech belonging to one utterance; any length, 16 kHz PCM16 mono."""

    utterance_id: str
    pcm: bytes


@dataclass(frozen=True, slots=True)
class ClearPlayout:
    """Stop the agent at once: drop every queued frame of agent audio (barge-in)."""

    reason: str


@dataclass(frozen=True, slots=True)
class AgentDtmf:
    """Digits the agent sends down the line (RFC 4733), e.g. to navigate a far-end menu."""

    digits: str


class EventKind(enum.StrEnum):
    CALLER_SPEECH_STARTED = "caller_speech_started"
    CALLER_SPEECH_STOPPED = "caller_speech_stopped"
    CALLER_TRANSCRIPT = "caller_transcript"
    AGENT_UTTERANCE_STARTED = "agent_utterance_started"
    AGENT_UTTERANCE_DONE = "agent_utterance_done"
    AGENT_TRANSCRIPT = "agent_transcript"
    # The model cut an utterance where the caller stopped hearing it (data: utterance_id,
    # heard_ms), confirming the worker's truncate.
    AGENT_TRUNCATED = "agent_truncated"
    BARGE_IN = "barge_in"
    BACKCHANNEL_IGNORED = "backchannel_ignored"
    AGENT_BACKCHANNEL = "agent_backchannel"
    END_OF_TURN = "end_of_turn"
    HANDOFF_REQUESTED = "handoff_requested"
    HANGUP_REQUESTED = "hangup_requested"
    # How the responder read the caller (data: item_id, intent, understood, confidence, facts).
    REPLY = "reply"
    # A supervisor's whisper went into what the agent said (data: item_id, text as said).
    INSTRUCTION_APPLIED = "instruction_applied"
    # The agent is back on the call after a supervisor's takeover (data: note, a bool).
    AGENT_RESUMED = "agent_resumed"
    # The call's engine died and another took it over with the conversation (data: from,
    # to, why, move_ms, turns, audio_ms).
    SESSION_MOVED = "session_moved"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """Something the model layer reports about the conversation."""

    kind: EventKind
    data: dict[str, object] = field(default_factory=dict)


SessionOutput = AgentAudio | AgentDtmf | ClearPlayout | SessionEvent


@dataclass(frozen=True, slots=True)
class PlayoutReport:
    """How much of an utterance the caller actually heard (after a flush or at its end)."""

    utterance_id: str
    played_ms: int
    interrupted: bool


class SessionError(RuntimeError):
    """The model behind a session failed; `retryable` says whether reconnecting may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@runtime_checkable
class DuplexSession(Protocol):
    """One live conversation with a duplex model."""

    async def start(self) -> None:
        """Connect and configure; raises SessionError when the model cannot be reached."""

    async def send_audio(self, frame: CallerAudio) -> None:
        """Deliver one caller frame. Called 50 times a second for the whole call."""

    async def send_dtmf(self, digit: CallerDtmf) -> None: ...

    async def send_instruction(self, text: str) -> None:
        """A supervisor's whispered instruction; the caller never hears it, but it shapes what
        the agent says next. An idle agent waits for the caller rather than speak up."""

    async def resume(self, note: str | None) -> None:
        """The supervisor handed the call back. The agent tells the caller at once that it is
        back, says the note (if any) as a fact, and may use the note in later answers."""

    async def playout_report(self, report: PlayoutReport) -> None:
        """Told by the bridge when agent audio was flushed or finished playing."""

    def outputs(self) -> AsyncIterator[SessionOutput]:
        """Agent audio, clear-playout commands and events, in order, until the session ends."""

    async def close(self) -> None: ...
