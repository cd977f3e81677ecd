"""An escalation's state machine, on timelines: every transition, the illegal ones, teardown."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from escalation.lifecycle import (
    CALLER,
    SYSTEM,
    Escalation,
    EscalationEvent,
    EscalationState,
    IllegalTransition,
    Transition,
    abandon,
    accept,
    call_ended,
    connect,
    decline,
    end,
    enqueue,
    hand_back,
    is_live,
    offer,
    offer_timed_out,
    request,
    supervisor_actor,
    take_callback,
)

S = EscalationState
Step = Callable[[Escalation, float], tuple[Escalation, Transition | None]]

# One way to drive each transition, at a given time, for the table-driven tests.
STEPS: dict[EscalationEvent, Step] = {
    EscalationEvent.ENQUEUE: lambda e, t: enqueue(e, queue="billing", at=t),
    EscalationEvent.OFFER: lambda e, t: offer(e, supervisor_id="ann", at=t),
    EscalationEvent.ACCEPT: lambda e, t: accept(e, supervisor_id="ann", at=t),
    EscalationEvent.DECLINE: lambda e, t: decline(e, supervisor_id="ann", at=t),
    EscalationEvent.OFFER_TIMED_OUT: lambda e, t: offer_timed_out(e, at=t),
    EscalationEvent.CONNECT: lambda e, t: connect(e, at=t),
    EscalationEvent.HAND_BACK: lambda e, t: hand_back(e, at=t),
    EscalationEvent.END: lambda e, t: end(e, at=t),
    EscalationEvent.TAKE_CALLBACK: lambda e, t: take_callback(e, number="+15550100", at=t),
    EscalationEvent.ABANDON: lambda e, t: abandon(e, at=t),
}

# The path into each state, one event a second from t=0.
PATHS: dict[EscalationState, tuple[EscalationEvent, ...]] = {
    S.REQUESTED: (),
    S.QUEUED: (EscalationEvent.ENQUEUE,),
    S.OFFERED: (EscalationEvent.ENQUEUE, EscalationEvent.OFFER),
    S.ACCEPTED: (EscalationEvent.ENQUEUE, EscalationEvent.OFFER, EscalationEvent.ACCEPT),
    S.CONNECTED: (
        EscalationEvent.ENQUEUE,
        EscalationEvent.OFFER,
        EscalationEvent.ACCEPT,
        EscalationEvent.CONNECT,
    ),
    S.ENDED: (
        EscalationEvent.ENQUEUE,
        EscalationEvent.OFFER,
        EscalationEvent.ACCEPT,
        EscalationEvent.CONNECT,
        EscalationEvent.END,
    ),
    S.RETURNED_TO_AI: (EscalationEvent.ENQUEUE, EscalationEvent.HAND_BACK),
    S.CALLBACK: (EscalationEvent.ENQUEUE, EscalationEvent.TAKE_CALLBACK),
    S.ABANDONED: (EscalationEvent.ENQUEUE, EscalationEvent.ABANDON),
}

# Which events each state allows, spelled out independently of the module's own table.
LEGAL: dict[EscalationState, set[EscalationEvent]] = {
    S.REQUESTED: {
        EscalationEvent.ENQUEUE,
        EscalationEvent.ACCEPT,  # a supervisor stepping in on their own
        EscalationEvent.HAND_BACK,
        EscalationEvent.TAKE_CALLBACK,
        EscalationEvent.ABANDON,
    },
    S.QUEUED: {
        EscalationEvent.OFFER,
        EscalationEvent.HAND_BACK,
        EscalationEvent.TAKE_CALLBACK,
        EscalationEvent.ABANDON,
    },
    S.OFFERED: {
        EscalationEvent.ACCEPT,
        EscalationEvent.DECLINE,
        EscalationEvent.OFFER_TIMED_OUT,
        EscalationEvent.HAND_BACK,
        EscalationEvent.TAKE_CALLBACK,
        EscalationEvent.ABANDON,
    },
    S.ACCEPTED: {EscalationEvent.CONNECT, EscalationEvent.HAND_BACK, EscalationEvent.ABANDON},
    S.CONNECTED: {EscalationEvent.HAND_BACK, EscalationEvent.END},
    S.ENDED: set(),
    S.RETURNED_TO_AI: set(),
    S.CALLBACK: set(),
    S.ABANDONED: set(),
}


def reach(state: EscalationState) -> Escalation:
    escalation, _ = request("call-1", reason="caller_asked", at=0.0, actor=CALLER)
    for t, event in enumerate(PATHS[state], start=1):
        escalation, _ = STEPS[event](escalation, float(t))
    assert escalation.state is state
    return escalation


def test_the_whole_way_to_a_supervisor_and_back_is_audited() -> None:
    escalation, first = request("call-1", reason="caller_asked", at=10.0, actor=CALLER)
    escalation, _ = enqueue(escalation, queue="billing", at=10.1)
    escalation, _ = offer(escalation, supervisor_id="ann", at=10.2)
    escalation, _ = accept(escalation, supervisor_id="ann", at=14.0)
    escalation, _ = connect(escalation, at=14.3)
    escalation, last = end(escalation, at=200.0)

    assert escalation.state is S.ENDED
    assert (escalation.queue, escalation.supervisor_id) == ("billing", "ann")
    assert escalation.history[0] is first
    assert escalation.history[-1] is last
    assert [(t.from_state, t.to_state, t.actor, t.at) for t in escalation.history] == [
        (None, S.REQUESTED, "caller", 10.0),
        (S.REQUESTED, S.QUEUED, "system", 10.1),
        (S.QUEUED, S.OFFERED, "system", 10.2),
        (S.OFFERED, S.ACCEPTED, "supervisor:ann", 14.0),
        (S.ACCEPTED, S.CONNECTED, "system", 14.3),
        (S.CONNECTED, S.ENDED, "supervisor:ann", 200.0),
    ]
    assert first.detail == "caller_asked"
    assert escalation.history[2].detail == "offered to supervisor:ann"
    assert escalation.updated_at == 200.0


def test_a_transition_returns_a_new_value_and_leaves_the_old_one_alone() -> None:
    queued = reach(S.QUEUED)
    offered, step = offer(queued, supervisor_id="ann", at=5.0)
    assert queued.state is S.QUEUED and queued.supervisor_id is None
    assert len(offered.history) == len(queued.history) + 1
    assert step.event is EscalationEvent.OFFER
    with pytest.raises(dataclasses.FrozenInstanceError):
        offered.state = S.QUEUED  # type: ignore[misc]


def test_a_declined_offer_goes_back_to_the_queue_for_the_next_supervisor() -> None:
    escalation, step = decline(reach(S.OFFERED), supervisor_id="ann", at=5.0)
    assert escalation.state is S.QUEUED
    assert escalation.supervisor_id is None
    assert (step.event, step.actor, step.detail) == (
        EscalationEvent.DECLINE,
        "supervisor:ann",
        "declined",
    )
    escalation, _ = offer(escalation, supervisor_id="bob", at=6.0)
    escalation, _ = accept(escalation, supervisor_id="bob", at=7.0)
    assert (escalation.state, escalation.supervisor_id) == (S.ACCEPTED, "bob")


def test_an_offer_that_times_out_goes_back_to_the_queue() -> None:
    escalation, step = offer_timed_out(reach(S.OFFERED), at=17.0)
    assert (escalation.state, escalation.supervisor_id) == (S.QUEUED, None)
    assert (step.event, step.actor, step.at) == (EscalationEvent.OFFER_TIMED_OUT, SYSTEM, 17.0)
    assert step.detail == "no answer from supervisor:ann"


def test_only_the_supervisor_offered_to_may_accept_or_decline() -> None:
    offered = reach(S.OFFERED)
    with pytest.raises(IllegalTransition, match="offered to supervisor:ann"):
        accept(offered, supervisor_id="bob", at=5.0)
    with pytest.raises(IllegalTransition, match="offered to supervisor:ann"):
        decline(offered, supervisor_id="bob", at=5.0)


def test_a_supervisor_hands_back_with_notes_kept_off_the_audit_text() -> None:
    notes = "caller's card ends 4242; refund approved"
    escalation, step = hand_back(
        reach(S.CONNECTED), at=90.0, actor=supervisor_actor("ann"), notes=notes
    )
    assert escalation.state is S.RETURNED_TO_AI
    assert escalation.notes == notes
    assert (step.actor, step.detail) == ("supervisor:ann", "handed back")
    assert "4242" not in repr(escalation)


def test_the_ai_fallback_from_the_queue_says_so() -> None:
    escalation, step = hand_back(reach(S.QUEUED), at=120.0)
    assert escalation.state is S.RETURNED_TO_AI
    assert (step.actor, step.detail) == (SYSTEM, "fallback: back to the AI with an apology")


def test_a_callback_keeps_the_number_but_not_in_the_audit_text_or_repr() -> None:
    escalation, step = take_callback(reach(S.QUEUED), number=" +15550100 ", at=130.0)
    assert escalation.state is S.CALLBACK
    assert escalation.callback_number == "+15550100"
    assert (step.actor, step.detail) == (CALLER, "callback number taken")
    assert "5550100" not in repr(escalation)
    assert "5550100" not in repr(step)
    with pytest.raises(ValueError, match="number"):
        take_callback(reach(S.QUEUED), number="  ", at=130.0)


@pytest.mark.parametrize("state", [S.REQUESTED, S.QUEUED, S.OFFERED, S.ACCEPTED])
def test_the_caller_hanging_up_before_reaching_a_person_abandons(state: EscalationState) -> None:
    escalation, step = abandon(reach(state), at=50.0)
    assert escalation.state is S.ABANDONED
    assert (step.from_state, step.actor, step.detail) == (state, CALLER, f"hung up while {state}")


@pytest.mark.parametrize(
    ("state", "terminal"),
    [
        (S.REQUESTED, S.ABANDONED),
        (S.QUEUED, S.ABANDONED),
        (S.OFFERED, S.ABANDONED),
        (S.ACCEPTED, S.ABANDONED),
        (S.CONNECTED, S.ENDED),
    ],
)
def test_call_ended_takes_every_live_state_to_its_terminal_state(
    state: EscalationState, terminal: EscalationState
) -> None:
    escalation, step = call_ended(reach(state), at=99.0)
    assert escalation.state is terminal
    assert not is_live(escalation.state)
    assert step is not None
    assert (step.event, step.from_state, step.to_state) == (
        EscalationEvent.CALL_ENDED,
        state,
        terminal,
    )


@pytest.mark.parametrize("state", [S.ENDED, S.RETURNED_TO_AI, S.CALLBACK, S.ABANDONED])
def test_call_ended_leaves_a_finished_escalation_as_it_was(state: EscalationState) -> None:
    finished = reach(state)
    escalation, step = call_ended(finished, at=99.0)
    assert escalation is finished
    assert step is None


def test_every_state_is_live_or_terminal() -> None:
    assert {state for state in S if is_live(state)} == {
        S.REQUESTED,
        S.QUEUED,
        S.OFFERED,
        S.ACCEPTED,
        S.CONNECTED,
    }


ILLEGAL = [(state, event) for state in S for event in STEPS if event not in LEGAL[state]]
ALLOWED = [(state, event) for state in S for event in STEPS if event in LEGAL[state]]


@pytest.mark.parametrize(("state", "event"), ILLEGAL)
def test_an_illegal_transition_raises_and_names_the_state(
    state: EscalationState, event: EscalationEvent
) -> None:
    escalation = reach(state)
    with pytest.raises(IllegalTransition) as raised:
        STEPS[event](escalation, 99.0)
    assert raised.value.state is state
    assert raised.value.event is event
    assert f"cannot {event} the escalation of call call-1: it is {state}" in str(raised.value)
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize(("state", "event"), ALLOWED)
def test_every_legal_transition_is_allowed(state: EscalationState, event: EscalationEvent) -> None:
    escalation, step = STEPS[event](reach(state), 99.0)
    assert step is not None
    assert (step.from_state, step.to_state) == (state, escalation.state)


def test_time_must_not_go_backwards() -> None:
    queued = reach(S.QUEUED)  # enqueued at t=1
    with pytest.raises(ValueError, match="time must not go backwards"):
        offer(queued, supervisor_id="ann", at=0.5)


def test_a_request_needs_a_call_and_a_reason() -> None:
    with pytest.raises(ValueError, match="call's id"):
        request("", reason="dtmf_0", at=0.0)
    with pytest.raises(ValueError, match="reason"):
        request("call-1", reason="", at=0.0)
    with pytest.raises(ValueError, match="supervisor id"):
        offer(reach(S.QUEUED), supervisor_id="", at=5.0)
