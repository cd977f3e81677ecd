"""What a live call event tells the escalation service: a trigger observation, or a key of a
callback number being typed.

Pure: no I/O, no clock. The service (`escalation.service`) asks `observation_for` what an event
means for the trigger detector while the call is with the agent, and feeds the keys the caller
types while waiting to a `CallbackEntry`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from escalation.triggers import (
    RESPONDER_HANDOFFS,
    CallerDigit,
    CallerUtterance,
    ModelFailure,
    Observation,
    ResponderTurn,
)
from telephony.events import CallEvent, CallEventKind

log = logging.getLogger(__name__)

# The agent's session events that matter here (agent.session.EventKind values).
_CALLER_TRANSCRIPT = "caller_transcript"
_HANDOFF_REQUESTED = "handoff_requested"
_REPLY = "reply"

# A number shorter than this is a stray key ("0" for "still here"), not a callback number.
MIN_CALLBACK_DIGITS = 3
MAX_CALLBACK_DIGITS = 20  # E.164 is at most 15 digits; room for an extension
END_KEY = "#"
CLEAR_KEY = "*"


def observation_for(event: CallEvent) -> Observation | None:
    """The trigger observation `event` carries, or None when it carries none.

    Raises ValueError for an event of a kind that matters whose data is malformed (a digit that
    is not a key, a transcript that is not text); the service logs it and goes on.
    """
    data = event.data
    if event.kind is CallEventKind.DTMF:
        digit = data.get("digit")
        if not isinstance(digit, str):
            raise ValueError("call.dtmf without a digit")
        return CallerDigit(digit)
    if event.kind is CallEventKind.SESSION_FAILED:
        return ModelFailure("session_failed")
    if event.kind is not CallEventKind.AGENT:
        return None
    what = data.get("event")
    if what == _HANDOFF_REQUESTED:
        reason = data.get("reason")
        if not isinstance(reason, str) or reason not in RESPONDER_HANDOFFS:
            # The caller has been told a person is coming: an unknown reason still asks.
            log.warning(
                "agent handoff with an unknown reason; taken as the caller's request",
                extra={"call_id": event.call_id, "reason": str(reason)[:40]},
            )
            reason = "caller_asked"
        return ResponderTurn(understood=True, confidence=1.0, handoff_reason=reason)
    if what == _REPLY:
        understood, confidence = data.get("understood"), data.get("confidence")
        if (
            not isinstance(understood, bool)
            or not isinstance(confidence, int | float)
            or not math.isfinite(confidence)
        ):
            raise ValueError("agent reply without understood and a finite confidence")
        return ResponderTurn(understood=understood, confidence=min(1.0, max(0.0, confidence)))
    if what == _CALLER_TRANSCRIPT:
        if data.get("final", True) is False:
            return None
        text = data.get("text")
        if not isinstance(text, str):
            raise ValueError("caller_transcript without text")
        level = data.get("level_dbfs")
        usable = isinstance(level, int | float) and math.isfinite(level) and level <= 0
        if not text.strip():
            return None
        return CallerUtterance(text, float(level) if usable else None)  # type: ignore[arg-type]
    return None


@dataclass(frozen=True, slots=True)
class CallbackEntry:
    """The keys of a callback number typed so far; `number` once '#' ended a usable one.

    '*' starts again. Keys other than digits are ignored. A number too short when '#' is
    pressed is dropped (a stray key), and typing goes on from nothing.
    """

    digits: str = ""
    number: str | None = None

    def key(self, key: str) -> CallbackEntry:
        if self.number is not None:
            return self  # complete: later keys change nothing
        if key == CLEAR_KEY:
            return CallbackEntry()
        if key == END_KEY:
            if len(self.digits) >= MIN_CALLBACK_DIGITS:
                return CallbackEntry(self.digits, self.digits)
            return CallbackEntry()
        if key.isdigit() and len(key) == 1 and len(self.digits) < MAX_CALLBACK_DIGITS:
            return CallbackEntry(self.digits + key)
        return self

    def __repr__(self) -> str:  # never the number itself, even in a traceback
        return f"CallbackEntry(digits={len(self.digits)}, complete={self.number is not None})"
