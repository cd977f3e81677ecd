"""One escalation's life, from the request for a person to its end, as a state machine.

Pure: no I/O, no clock. The service calls one function per transition with the time it happened
and who did it; each returns a new frozen `Escalation` and the `Transition` it appended to the
escalation's history, which is the audit trail. A transition the current state does not allow
raises `IllegalTransition` and changes nothing.

    requested -> queued -> offered -> accepted -> connected -> ended
                   ^          |
                   +----------+  declined or offer timed out: back to the queue

Fallbacks leave a waiting escalation for `returned_to_ai` (back to the AI with an apology) or
`callback` (the caller left a number); a supervisor hands a connected call back to the AI with
`hand_back`. A caller who hangs up before reaching a person leaves it `abandoned`.
`call_ended` is what call teardown calls unconditionally: it moves any live state to its
terminal state, so no escalation outlives its call in a live state.

Times are seconds on one monotonic clock and must not go backwards.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

SYSTEM = "system"
CALLER = "caller"


def supervisor_actor(supervisor_id: str) -> str:
    """The actor recorded for a supervisor's own action."""
    if not supervisor_id:
        raise ValueError("a supervisor id must not be empty")
    return f"supervisor:{supervisor_id}"


class EscalationState(enum.StrEnum):
    REQUESTED = "requested"  # a trigger fired; not yet in a queue
    QUEUED = "queued"  # waiting for a supervisor
    OFFERED = "offered"  # ringing one supervisor
    ACCEPTED = "accepted"  # the supervisor said yes; their audio leg is being joined
    CONNECTED = "connected"  # the supervisor is on the call
    ENDED = "ended"  # the supervisor finished the call
    RETURNED_TO_AI = "returned_to_ai"  # handed back, or the fallback to the AI
    CALLBACK = "callback"  # fallback: the caller left a callback number
    ABANDONED = "abandoned"  # the caller hung up before reaching a person


LIVE_STATES = frozenset(
    {
        EscalationState.REQUESTED,
        EscalationState.QUEUED,
        EscalationState.OFFERED,
        EscalationState.ACCEPTED,
        EscalationState.CONNECTED,
    }
)
WAITING_STATES = frozenset(
    {EscalationState.REQUESTED, EscalationState.QUEUED, EscalationState.OFFERED}
)


def is_live(state: EscalationState) -> bool:
    """Whether an escalation in `state` still needs something to happen to it."""
    return state in LIVE_STATES


class EscalationEvent(enum.StrEnum):
    """What happened; with the states on either side, a `Transition` reads as an audit entry."""

    REQUEST = "request"
    ENQUEUE = "enqueue"
    OFFER = "offer"
    ACCEPT = "accept"
    DECLINE = "decline"
    OFFER_TIMED_OUT = "offer_timed_out"
    CONNECT = "connect"
    HAND_BACK = "hand_back"
    END = "end"
    TAKE_CALLBACK = "take_callback"
    ABANDON = "abandon"
    CALL_ENDED = "call_ended"


# The states each event may leave. ACCEPTED counts as "not yet reached a person": a caller who
# hangs up while the supervisor's leg is being joined abandoned the wait, and a leg that fails
# to join falls back to the AI.
_SOURCES: dict[EscalationEvent, frozenset[EscalationState]] = {
    EscalationEvent.ENQUEUE: frozenset({EscalationState.REQUESTED}),
    EscalationEvent.OFFER: frozenset({EscalationState.QUEUED}),
    # From REQUESTED: a supervisor stepped into the call on their own (supervisor initiative).
    EscalationEvent.ACCEPT: frozenset({EscalationState.OFFERED, EscalationState.REQUESTED}),
    EscalationEvent.DECLINE: frozenset({EscalationState.OFFERED}),
    EscalationEvent.OFFER_TIMED_OUT: frozenset({EscalationState.OFFERED}),
    EscalationEvent.CONNECT: frozenset({EscalationState.ACCEPTED}),
    EscalationEvent.HAND_BACK: LIVE_STATES,
    EscalationEvent.END: frozenset({EscalationState.CONNECTED}),
    EscalationEvent.TAKE_CALLBACK: WAITING_STATES,
    EscalationEvent.ABANDON: WAITING_STATES | {EscalationState.ACCEPTED},
    EscalationEvent.CALL_ENDED: LIVE_STATES,
}


class IllegalTransition(ValueError):
    """The escalation's state does not allow this transition; nothing was changed."""

    def __init__(
        self, event: EscalationEvent, state: EscalationState, call_id: str, why: str = ""
    ) -> None:
        allowed = ", ".join(sorted(_SOURCES.get(event, ()))) or "nothing"
        message = why or (
            f"cannot {event} the escalation of call {call_id}: it is {state}, "
            f"and {event} needs it to be one of: {allowed}"
        )
        super().__init__(message)
        self.event = event
        self.state = state
        self.call_id = call_id


@dataclass(frozen=True, slots=True)
class Transition:
    """One audited step: what happened, between which states, by whom, when.

    `detail` is audit text and never carries personal data (no callback number, no notes).
    """

    event: EscalationEvent
    from_state: EscalationState | None  # None for the request that created the escalation
    to_state: EscalationState
    actor: str  # "system", "caller" or "supervisor:<id>"
    at: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Escalation:
    call_id: str
    reason: str  # the trigger that asked for a person
    state: EscalationState
    requested_at: float
    queue: str | None = None
    supervisor_id: str | None = None  # offered to, or on the call with
    notes: str | None = dataclasses.field(default=None, repr=False)  # the human's hand-back notes
    callback_number: str | None = dataclasses.field(default=None, repr=False)
    history: tuple[Transition, ...] = ()

    @property
    def updated_at(self) -> float:
        return self.history[-1].at if self.history else self.requested_at


# --- transitions ---------------------------------------------------------------------------


def request(
    call_id: str, *, reason: str, at: float, actor: str = SYSTEM
) -> tuple[Escalation, Transition]:
    """A trigger asked for a person (`actor` is "caller" when the caller asked)."""
    if not call_id:
        raise ValueError("an escalation needs the call's id")
    if not reason:
        raise ValueError("an escalation needs a reason (the trigger that fired)")
    step = Transition(EscalationEvent.REQUEST, None, EscalationState.REQUESTED, actor, at, reason)
    escalation = Escalation(
        call_id=call_id,
        reason=reason,
        state=EscalationState.REQUESTED,
        requested_at=at,
        history=(step,),
    )
    return escalation, step


def enqueue(escalation: Escalation, *, queue: str, at: float) -> tuple[Escalation, Transition]:
    if not queue:
        raise ValueError("enqueue needs the queue's name")
    return _move(
        escalation,
        EscalationEvent.ENQUEUE,
        EscalationState.QUEUED,
        at=at,
        actor=SYSTEM,
        detail=f"queue {queue}",
        queue=queue,
    )


def offer(
    escalation: Escalation, *, supervisor_id: str, at: float
) -> tuple[Escalation, Transition]:
    actor = supervisor_actor(supervisor_id)  # validates the id
    return _move(
        escalation,
        EscalationEvent.OFFER,
        EscalationState.OFFERED,
        at=at,
        actor=SYSTEM,
        detail=f"offered to {actor}",
        supervisor_id=supervisor_id,
    )


def accept(
    escalation: Escalation, *, supervisor_id: str, at: float
) -> tuple[Escalation, Transition]:
    _check_offered_to(escalation, EscalationEvent.ACCEPT, supervisor_id)
    return _move(
        escalation,
        EscalationEvent.ACCEPT,
        EscalationState.ACCEPTED,
        at=at,
        actor=supervisor_actor(supervisor_id),
    )


def decline(
    escalation: Escalation, *, supervisor_id: str, at: float
) -> tuple[Escalation, Transition]:
    """The supervisor said no; the escalation goes back to its queue for the next one."""
    _check_offered_to(escalation, EscalationEvent.DECLINE, supervisor_id)
    return _move(
        escalation,
        EscalationEvent.DECLINE,
        EscalationState.QUEUED,
        at=at,
        actor=supervisor_actor(supervisor_id),
        detail="declined",
        supervisor_id=None,
    )


def offer_timed_out(escalation: Escalation, *, at: float) -> tuple[Escalation, Transition]:
    """Nobody answered the offer in time; back to the queue for the next supervisor."""
    return _move(
        escalation,
        EscalationEvent.OFFER_TIMED_OUT,
        EscalationState.QUEUED,
        at=at,
        actor=SYSTEM,
        detail=f"no answer from supervisor:{escalation.supervisor_id}",
        supervisor_id=None,
    )


def connect(escalation: Escalation, *, at: float) -> tuple[Escalation, Transition]:
    """The supervisor's audio leg joined the call."""
    return _move(
        escalation,
        EscalationEvent.CONNECT,
        EscalationState.CONNECTED,
        at=at,
        actor=SYSTEM,
    )


def hand_back(
    escalation: Escalation, *, at: float, actor: str = SYSTEM, notes: str | None = None
) -> tuple[Escalation, Transition]:
    """Back to the AI: a supervisor hands the call back (with notes), or the fallback fires.

    From a waiting state (or an accepted leg that never joined) it is the fallback, "back to
    the AI with an apology"; the detail records which.
    """
    connected = escalation.state is EscalationState.CONNECTED
    return _move(
        escalation,
        EscalationEvent.HAND_BACK,
        EscalationState.RETURNED_TO_AI,
        at=at,
        actor=actor,
        detail="handed back" if connected else "fallback: back to the AI with an apology",
        notes=notes,
    )


def end(
    escalation: Escalation, *, at: float, actor: str | None = None
) -> tuple[Escalation, Transition]:
    """The supervisor finished the call (the default actor is the supervisor on it)."""
    if actor is None:
        actor = supervisor_actor(escalation.supervisor_id) if escalation.supervisor_id else SYSTEM
    return _move(escalation, EscalationEvent.END, EscalationState.ENDED, at=at, actor=actor)


def take_callback(
    escalation: Escalation, *, number: str, at: float, actor: str = CALLER
) -> tuple[Escalation, Transition]:
    """Fallback: the caller left a number to be called back on (kept off the audit text)."""
    if not number.strip():
        raise ValueError("a callback needs the number the caller left")
    return _move(
        escalation,
        EscalationEvent.TAKE_CALLBACK,
        EscalationState.CALLBACK,
        at=at,
        actor=actor,
        detail="callback number taken",
        callback_number=number.strip(),
        supervisor_id=None,
    )


def abandon(escalation: Escalation, *, at: float) -> tuple[Escalation, Transition]:
    """The caller hung up before reaching a person."""
    return _move(
        escalation,
        EscalationEvent.ABANDON,
        EscalationState.ABANDONED,
        at=at,
        actor=CALLER,
        detail=f"hung up while {escalation.state}",
    )


def call_ended(
    escalation: Escalation, *, at: float, actor: str = SYSTEM
) -> tuple[Escalation, Transition | None]:
    """The call is over: any live state goes to its terminal state; a terminal one stays.

    Waiting (or accepted but not yet joined) becomes `abandoned`; connected becomes `ended`.
    Returns no transition when the escalation had already ended, so teardown may always call it.
    """
    if not is_live(escalation.state):
        return escalation, None
    to = (
        EscalationState.ENDED
        if escalation.state is EscalationState.CONNECTED
        else EscalationState.ABANDONED
    )
    return _move(
        escalation,
        EscalationEvent.CALL_ENDED,
        to,
        at=at,
        actor=actor,
        detail=f"call ended while {escalation.state}",
    )


# --- the one place a state changes ---------------------------------------------------------


def _check_offered_to(escalation: Escalation, event: EscalationEvent, supervisor_id: str) -> None:
    if escalation.state is EscalationState.OFFERED and escalation.supervisor_id != supervisor_id:
        raise IllegalTransition(
            event,
            escalation.state,
            escalation.call_id,
            f"cannot {event} the escalation of call {escalation.call_id} as "
            f"supervisor:{supervisor_id}: it is offered to supervisor:{escalation.supervisor_id}",
        )


def _move(
    escalation: Escalation,
    event: EscalationEvent,
    to: EscalationState,
    *,
    at: float,
    actor: str,
    detail: str = "",
    **changes: Any,  # Escalation fields that change with this step
) -> tuple[Escalation, Transition]:
    if escalation.state not in _SOURCES[event]:
        raise IllegalTransition(event, escalation.state, escalation.call_id)
    if at < escalation.updated_at:
        raise ValueError(
            f"cannot {event} the escalation of call {escalation.call_id} at {at}: its last "
            f"transition was at {escalation.updated_at}, and time must not go backwards"
        )
    if not actor:
        raise ValueError(f"{event} needs an actor (system, caller or supervisor:<id>)")
    step = Transition(event, escalation.state, to, actor, at, detail)
    moved = dataclasses.replace(
        escalation, state=to, history=(*escalation.history, step), **changes
    )
    return moved, step
