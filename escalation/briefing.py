"""What a supervisor is told before they join a call, and what a waiting caller is told.

Warm handoff: while a call is with the agent, `CallNotes` keeps what the live events say about
it — the caller's last words, what the agent said, the intent the responder answered, the
facts (slot values) it collected and how often it did not understand. When the call is offered
to a supervisor, `Briefing` puts that together with the reason, the queue, the wait and the
caller's mood; its `spoken()` text is synthesised and played into the supervisor's ear when
they answer, and `as_data()` goes with the offer's `call.escalation` event (and so to the API).

Queue announcements: `announcement()` is what a caller on hold hears at the queue's interval.

Pure: no I/O, no clock. Nothing here logs; the words it keeps are the caller's and stay in
memory for the call's life only.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from escalation.triggers import EscalationReason
from telephony.events import CallEvent, CallEventKind

__all__ = ["Briefing", "CallNotes", "announcement", "mood_of"]

_QUOTED = 2  # the caller's (and the agent's) last utterances quoted in a briefing
_MAX_QUOTE = 160  # characters of one quoted utterance
_MAX_FACTS = 8
_MAX_FACT = 40  # characters of one fact's value
_CARD_LIKE = re.compile(r"\d{9,}")  # long numbers are masked: only their last four are said

_REASONS: Mapping[str, str] = {
    EscalationReason.CALLER_REQUEST: "the caller asked for a person",
    EscalationReason.DTMF_ZERO: "the caller pressed the key for a person",
    EscalationReason.MISUNDERSTANDING: "the agent did not understand the caller",
    EscalationReason.LOW_CONFIDENCE: "the agent was unsure of its answers",
    EscalationReason.FRUSTRATION: "the caller is frustrated",
    EscalationReason.SENSITIVE_TOPIC: "a sensitive topic came up",
    EscalationReason.MODEL_FAILURE: "the voice agent failed",
    EscalationReason.SUPERVISOR_INITIATIVE: "a supervisor asked for this call",
}
KEYPAD_HINT = "Press 1 to listen, 2 to whisper, 3 to barge in, 4 to take over, 5 to hand back."


@dataclass
class CallNotes:
    """What one live call's events have said so far (fed by the escalation service)."""

    caller: deque[str] = field(default_factory=lambda: deque(maxlen=_QUOTED))
    agent: deque[str] = field(default_factory=lambda: deque(maxlen=_QUOTED))
    intent: str | None = None
    facts: dict[str, str] = field(default_factory=dict)
    turns: int = 0  # the responder's answers to the caller
    misses: int = 0  # ... of which it did not understand the caller

    def observe(self, event: CallEvent) -> None:
        """Takes what `event` says about the conversation; ignores anything malformed."""
        if event.kind is not CallEventKind.AGENT:
            return
        data = event.data
        what = data.get("event")
        if what == "caller_transcript" and data.get("final", True) is not False:
            _quote(self.caller, data.get("text"))
        elif what == "agent_transcript":
            _quote(self.agent, data.get("heard_text") or data.get("text"))
        elif what == "reply":
            self._reply(data)

    def _reply(self, data: Mapping[str, object]) -> None:
        self.turns += 1
        if data.get("understood") is False:
            self.misses += 1
        intent = data.get("intent")
        if isinstance(intent, str) and intent:
            self.intent = intent[:_MAX_FACT]
        facts = data.get("facts")
        if isinstance(facts, Mapping):
            for name, value in list(facts.items())[:_MAX_FACTS]:
                if isinstance(name, str) and isinstance(value, str | int):
                    self.facts[name[:_MAX_FACT]] = str(value)[:_MAX_FACT]


def _quote(into: deque[str], text: object) -> None:
    if isinstance(text, str) and text.strip():
        into.append(" ".join(text.split())[:_MAX_QUOTE])


def mood_of(frustration: float, threshold: float) -> str:
    """The caller's mood from the trigger detector's frustration score (in cues)."""
    if frustration >= threshold:
        return "frustrated"
    if frustration >= min(1.0, threshold / 2):
        return "impatient"
    return "calm"


@dataclass(frozen=True, slots=True)
class Briefing:
    """The warm-handoff summary of one call, as offered to one supervisor."""

    reason: str  # an EscalationReason value
    queue: str
    waited_s: float
    mood: str
    intent: str | None = None
    facts: tuple[tuple[str, str], ...] = ()
    caller_said: tuple[str, ...] = ()
    agent_said: tuple[str, ...] = ()
    turns: int = 0
    misses: int = 0

    @classmethod
    def of(
        cls, notes: CallNotes, *, reason: str, queue: str, waited_s: float, mood: str
    ) -> Briefing:
        return cls(
            reason=reason,
            queue=queue,
            waited_s=max(0.0, waited_s),
            mood=mood,
            intent=notes.intent,
            facts=tuple((name, _masked(value)) for name, value in notes.facts.items()),
            caller_said=tuple(notes.caller),
            agent_said=tuple(notes.agent),
            turns=notes.turns,
            misses=notes.misses,
        )

    def spoken(self, *, keypad: bool = True) -> str:
        """The summary as said into the supervisor's ear, ending with the keypad's map."""
        parts = [
            f"A call from the {_words(self.queue)} queue, waiting {_duration(self.waited_s)}.",
            f"Reason: {_REASONS.get(self.reason, _words(self.reason))}.",
            f"The caller seems {self.mood}.",
        ]
        if self.intent:
            parts.append(f"Topic: {_words(self.intent)}.")
        if self.facts:
            said = "; ".join(f"{_words(n)}: {_digits_apart(v)}" for n, v in self.facts)
            parts.append(f"Facts collected: {said}.")
        if self.caller_said:
            parts.append(f"The caller said: {_sentence(self.caller_said[-1])}")
        if self.agent_said:
            parts.append(f"The agent last said: {_sentence(self.agent_said[-1])}")
        if self.misses:
            times = "once" if self.misses == 1 else f"{self.misses} times"
            parts.append(f"The agent did not understand the caller {times}.")
        if keypad:
            parts.append(KEYPAD_HINT)
        return " ".join(parts)

    def as_data(self) -> dict[str, object]:
        """JSON-ready, for the offer's event and the API."""
        return {
            "text": self.spoken(keypad=False),
            "reason": self.reason,
            "queue": self.queue,
            "waited_s": round(self.waited_s, 1),
            "mood": self.mood,
            "intent": self.intent,
            "facts": dict(self.facts),
            "caller_said": list(self.caller_said),
            "agent_said": list(self.agent_said),
            "turns": self.turns,
            "misses": self.misses,
        }


def announcement(position: int, expected_wait_s: float | None) -> str:
    """What a caller waiting for a person hears at the queue's interval."""
    where = "You are next in line." if position <= 1 else f"You are number {position} in line."
    if expected_wait_s is None:
        wait = "Someone will be with you as soon as possible."
    elif expected_wait_s < 60:
        wait = "The expected wait is less than a minute."
    else:
        minutes = round(expected_wait_s / 60)
        wait = f"The expected wait is about {minutes} minute{'s' if minutes != 1 else ''}."
    return f"Thank you for waiting. {where} {wait} Please stay on the line."


def _masked(value: str) -> str:
    return _CARD_LIKE.sub(lambda m: f"ending in {m.group()[-4:]}", value)


def _digits_apart(value: str) -> str:
    """Digits said one by one ("4 5 6 7"), as a person reads an order number."""
    return re.sub(r"\d{2,}", lambda m: " ".join(m.group()), value)


def _words(name: str) -> str:
    return name.replace("_", " ").replace("-", " ").strip()


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "?", "!")) else f"{text}."


def _duration(seconds: float) -> str:
    if seconds < 60:
        whole = max(1, round(seconds))
        return f"{whole} second{'s' if whole != 1 else ''}"
    minutes = round(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
