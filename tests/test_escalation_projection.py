"""call.escalation events become escalations with their transitions, on both backends: a full
timeline, replays, a call that ends while its escalation waits, and a callback number that is
never stored in clear."""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin import audit
from admin.call_events import insert_new_events
from admin.models import (
    AuditEntry,
    Base,
    Call,
    Escalation,
    EscalationReason,
    EscalationTransition,
    Line,
    Outcome,
)
from admin.phone_numbers import number_hash
from admin.projection import Projection
from escalation.lifecycle import EscalationState
from telephony.events import CallEvent, CallEventKind
from tests.ingest_support import AUDIT_KEY, CALLER, NUMBER_KEY, scripted_call

pytest_plugins = ["tests.db_support"]

CALLBACK = "+15557654321"
PROJECTION = Projection(number_key=NUMBER_KEY, audit_key=AUDIT_KEY)


def _store(session: Session, events: list[CallEvent]) -> list[str]:
    new = insert_new_events(session, PROJECTION.scrub(session, events))
    return PROJECTION.apply(session, new)


class _Call:
    """A call's events on one clock: `at(ms, kind, data)` is `ms` after the call started."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex
        self.ref = uuid.uuid4().hex
        self.mono, self.wall = time.monotonic_ns(), time.time()

    def at(self, ms: int, kind: CallEventKind, data: dict[str, Any]) -> CallEvent:
        return CallEvent(self.id, kind, data, self.mono + ms * 1_000_000, self.wall + ms / 1000)

    def start(self) -> list[CallEvent]:
        started = {"from": f"<sip:{CALLER}@10.0.0.9>", "to": "100", "line": "main"}
        return [self.at(0, CallEventKind.STARTED, started), self.at(40, CallEventKind.ANSWERED, {})]

    def step(self, ms: int, event: str, before: str | None, after: str, **data: Any) -> CallEvent:
        fields = {"escalation_id": self.ref, "event": event, "from": before, "to": after}
        fields |= {"actor": "system", "reason": "caller_request", "queue": "billing"}
        return self.at(ms, CallEventKind.ESCALATION, fields | data)

    def ended(self, ms: int) -> CallEvent:
        return self.at(ms, CallEventKind.ENDED, {"reason": "hangup"})


def _escalation(session: Session, ref: str) -> Escalation:
    return session.scalars(select(Escalation).where(Escalation.ref == ref)).one()


def _steps(session: Session, escalation: Escalation) -> list[tuple[Any, ...]]:
    rows = session.scalars(
        select(EscalationTransition)
        .where(EscalationTransition.escalation_id == escalation.id)
        .order_by(EscalationTransition.seq)
    )
    return [(t.seq, t.event, t.from_state, t.to_state, t.actor, t.detail) for t in rows]


def _audited(session: Session, call_id: str) -> list[tuple[str, str]]:
    rows = session.scalars(
        select(AuditEntry).where(AuditEntry.target == f"call:{call_id}").order_by(AuditEntry.id)
    )
    return [(entry.actor, entry.action) for entry in rows]


FIRST = {"text": "A call from the billing queue, waiting 1 second.", "reason": "caller_request"}
SECOND = {"text": "A call from the billing queue, waiting 9 seconds.", "mood": "calm"}


def test_a_full_timeline_is_kept_step_by_step_and_audited(session: Session) -> None:
    session.add(Line(name="main", agent_profile="embedded", queue="general"))
    call = _Call()
    events = [
        *call.start(),
        call.step(1000, "request", None, "requested", actor="caller"),
        call.step(1010, "enqueue", "requested", "queued"),
        call.step(1020, "offer", "queued", "offered", supervisor="alice", summary=FIRST),
        call.step(9000, "decline", "offered", "queued", actor="supervisor:alice"),
        call.step(9010, "offer", "queued", "offered", supervisor="bob", summary=SECOND),
        call.step(12000, "accept", "offered", "accepted", actor="supervisor:bob", supervisor="bob"),
        call.step(12500, "connect", "accepted", "connected", supervisor="bob"),
        call.step(60000, "end", "connected", "ended", actor="supervisor:bob", supervisor="bob"),
        call.ended(60100),
    ]
    assert _store(session, events) == [call.id]

    escalation = _escalation(session, call.ref)
    assert (escalation.state, escalation.reason, escalation.queue, escalation.supervisor) == (
        EscalationState.ENDED,
        EscalationReason.CALLER_REQUEST,
        "billing",
        "bob",
    )
    # The warm-handoff summary of the latest offer, as the supervisor heard it.
    assert escalation.summary == SECOND["text"]
    started = session.get_one(Call, call.id).started_at
    assert [
        round((t - started).total_seconds() * 1000)
        for t in (
            escalation.requested_at,
            escalation.offered_at,
            escalation.connected_at,
            escalation.ended_at,
        )
        if t is not None
    ] == [1000, 1020, 12500, 60000]
    assert [(s[0], s[1], s[3], s[4]) for s in _steps(session, escalation)] == [
        (1, "request", "requested", "caller"),
        (2, "enqueue", "queued", "system"),
        (3, "offer", "offered", "system"),
        (4, "decline", "queued", "supervisor:alice"),
        (5, "offer", "offered", "system"),
        (6, "accept", "accepted", "supervisor:bob"),
        (7, "connect", "connected", "system"),
        (8, "end", "ended", "supervisor:bob"),
    ]
    audited = _audited(session, call.id)
    assert [action for _actor, action in audited] == [
        "escalation.request",
        "escalation.enqueue",
        "escalation.offer",
        "escalation.decline",
        "escalation.offer",
        "escalation.accept",
        "escalation.connect",
        "escalation.end",
    ]
    assert audited[3] == ("supervisor:alice", "escalation.decline")
    assert audit.verify(session, key=AUDIT_KEY) is None
    assert session.get_one(Call, call.id).outcome is Outcome.ESCALATED


def test_a_replayed_event_changes_nothing(session: Session) -> None:
    call = _Call()
    request = call.step(1000, "request", None, "requested")
    enqueue = call.step(1010, "enqueue", "requested", "queued")
    _store(session, [*call.start(), request, enqueue])
    _store(session, [request, enqueue])  # the whole batch again
    _store(session, [enqueue, call.step(2000, "offer", "queued", "offered")])  # one again
    escalation = _escalation(session, call.ref)
    assert [s[1] for s in _steps(session, escalation)] == ["request", "enqueue", "offer"]
    assert escalation.state is EscalationState.OFFERED
    assert len(_audited(session, call.id)) == 3


def test_a_call_that_ends_while_queued_leaves_its_escalation_abandoned(session: Session) -> None:
    call = _Call()
    _store(
        session,
        [
            *call.start(),
            call.step(1000, "request", None, "requested"),
            call.step(1010, "enqueue", "requested", "queued"),
        ],
    )
    _store(session, [call.ended(30000)])
    escalation = _escalation(session, call.ref)
    assert escalation.state is EscalationState.ABANDONED
    assert escalation.ended_at == session.get_one(Call, call.id).ended_at
    assert _steps(session, escalation)[-1] == (
        3,
        "call_ended",
        "queued",
        "abandoned",
        "system",
        "call ended",
    )
    assert _audited(session, call.id)[-1] == ("system", "escalation.call_ended")
    # The service's own record of the same teardown, arriving later, is not a second one.
    _store(session, [call.step(30005, "call_ended", "queued", "abandoned")])
    assert len(_steps(session, escalation)) == 3


def test_a_connected_escalation_ends_with_its_call(session: Session) -> None:
    call = _Call()
    steps = [("request", None, "requested"), ("enqueue", "requested", "queued")]
    steps += [("offer", "queued", "offered"), ("accept", "offered", "accepted")]
    steps += [("connect", "accepted", "connected")]
    events = [call.step(1000 + i, *step) for i, step in enumerate(steps)]
    _store(session, [*call.start(), *events, call.ended(50000)])
    escalation = _escalation(session, call.ref)
    assert escalation.state is EscalationState.ENDED
    assert _steps(session, escalation)[-1][1:4] == ("call_ended", "connected", "ended")


def test_an_agent_handoff_no_longer_stays_queued_after_the_call(session: Session) -> None:
    session.add(Line(name="main", agent_profile="embedded", queue="support"))
    events = scripted_call()  # asks for a person, then hangs up
    _store(session, events)
    [escalation] = session.scalars(
        select(Escalation).where(Escalation.call_id == events[0].call_id)
    )
    assert escalation.state is EscalationState.ABANDONED
    assert [s[1] for s in _steps(session, escalation)] == ["request", "call_ended"]


def test_the_service_report_of_an_agent_handoff_is_the_same_escalation(session: Session) -> None:
    call = _Call()
    handoff = call.at(900, CallEventKind.AGENT, {"event": "handoff_requested", "reason": "dtmf_0"})
    _store(session, [*call.start(), handoff, call.step(1000, "request", None, "requested")])
    [escalation] = session.scalars(select(Escalation).where(Escalation.call_id == call.id))
    assert escalation.ref == call.ref
    assert escalation.reason is EscalationReason.CALLER_REQUEST  # the service's word


def test_a_transition_before_its_request_creates_the_escalation(session: Session) -> None:
    call = _Call()
    offer = call.step(2000, "offer", "queued", "offered", reason=None)
    request = call.step(1000, "request", None, "requested")
    _store(session, call.start())
    _store(session, [offer])
    assert _escalation(session, call.ref).reason is None
    _store(session, [request])  # late: recorded, but the state stays the later one's
    escalation = _escalation(session, call.ref)
    assert (escalation.state, escalation.reason) == (
        EscalationState.OFFERED,
        EscalationReason.CALLER_REQUEST,
    )
    started = session.get_one(Call, call.id).started_at
    assert round((escalation.requested_at - started).total_seconds() * 1000) == 1000


def test_the_model_failure_transfer_is_an_escalation_that_ends_with_the_call(
    session: Session,
) -> None:
    call = _Call()
    transferred = call.at(5000, CallEventKind.TRANSFERRED, {"reason": "session_failed"})
    _store(session, [*call.start(), transferred, call.ended(9000)])
    [escalation] = session.scalars(select(Escalation).where(Escalation.call_id == call.id))
    assert escalation.reason is EscalationReason.MODEL_FAILURE
    assert [s[1:4] for s in _steps(session, escalation)] == [
        ("request", None, "requested"),
        ("connect", "requested", "connected"),
        ("call_ended", "connected", "ended"),
    ]


def test_a_callback_number_is_never_stored_in_clear(session: Session) -> None:
    call = _Call()
    _store(
        session,
        [
            *call.start(),
            call.step(1000, "request", None, "requested"),
            call.step(1010, "enqueue", "requested", "queued"),
            call.step(40000, "take_callback", "queued", "callback", callback_number=CALLBACK[2:]),
            call.ended(41000),
        ],
    )
    escalation = _escalation(session, call.ref)
    assert escalation.state is EscalationState.CALLBACK
    assert escalation.callback_number_hash == number_hash(CALLBACK[2:], key=NUMBER_KEY)
    assert escalation.callback_number_masked is not None
    assert "4321" in escalation.callback_number_masked
    session.flush()
    dump = "\n".join(
        repr(row)
        for table in Base.metadata.sorted_tables
        for row in session.execute(table.select())
    )
    assert call.ref in dump  # the dump does hold this call's rows
    for clear in (CALLBACK, CALLBACK[2:], "5557654"):
        assert clear not in dump
