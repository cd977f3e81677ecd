"""Calls and what happens on them: events stored once, numbers never in clear, bad rows refused."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from admin import phone_numbers
from admin.call_events import store_events
from admin.models import (
    Base,
    Call,
    CallEventRecord,
    Outcome,
    Redaction,
    Speaker,
    TranscriptSegment,
    TurnMetrics,
)
from telephony.events import CallEvent, CallEventKind
from tests.api_data import interrupted_transcript

pytest_plugins = ["tests.db_support"]

T0 = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
CALLER = "+1 (555) 123-4567"


def _call(**fields: object) -> Call:
    values: dict[str, object] = {"id": uuid.uuid4().hex, "to_number": "100", "started_at": T0}
    return Call(**(values | fields))


def _event_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(CallEventRecord)) or 0


def test_an_event_id_is_stored_once(session: Session) -> None:
    call_id = uuid.uuid4().hex
    started = CallEvent(call_id, CallEventKind.STARTED, {"line": "main"})
    ended = CallEvent(call_id, CallEventKind.ENDED, {"reason": "caller_hangup"})
    assert store_events(session, [started]) == 1
    assert store_events(session, [started, ended, ended]) == 1  # a replayed spool
    assert _event_count(session) == 2
    session.expire_all()
    stored = session.scalars(
        select(CallEventRecord).where(CallEventRecord.event_id == ended.event_id)
    ).one()
    assert (stored.call_id, stored.kind, stored.data) == (
        call_id,
        "call.ended",
        {"reason": "caller_hangup"},
    )
    assert stored.occurred_at == dt.datetime.fromtimestamp(ended.t_wall, dt.UTC)


def test_an_event_with_a_malformed_id_is_refused_with_the_batch(session: Session) -> None:
    good = CallEvent(uuid.uuid4().hex, CallEventKind.STARTED)
    bad = dataclasses.replace(good, event_id="not-a-uuid")
    with pytest.raises(ValueError, match=r"'not-a-uuid' \(call.started\): the id must be 32"):
        store_events(session, [good, bad])
    assert _event_count(session) == 0


def test_caller_numbers_are_stored_hashed_and_masked(session: Session, number_key: bytes) -> None:
    call = _call(
        caller_hash=phone_numbers.number_hash(CALLER, key=number_key),
        caller_masked=phone_numbers.mask(CALLER),
    )
    session.add_all([call, _call()])
    session.commit()

    wanted = phone_numbers.number_hash("+15551234567", key=number_key)  # written another way
    found = session.scalars(select(Call).where(Call.caller_hash == wanted)).all()
    assert [c.id for c in found] == [call.id]
    assert found[0].caller_masked == "+1******4567"

    row = session.execute(text("SELECT * FROM calls WHERE id = :id"), {"id": call.id}).one()
    stored = " ".join(str(value) for value in row)
    for clear in ("5551234567", "555123", "1234567", "123-4567"):
        assert clear not in stored


def test_a_transcript_keeps_what_the_caller_heard(session: Session) -> None:
    call = _call()
    call.segments = interrupted_transcript()
    session.add(call)
    session.commit()
    session.expire_all()
    segments = session.get_one(Call, call.id).segments
    assert [(s.speaker, s.heard_text, s.heard_ms) for s in segments] == [
        (Speaker.CALLER, None, None),
        (Speaker.AGENT, "We open at nine", 800),
    ]
    assert segments[0].redaction is Redaction.NONE


SEGMENT: dict[str, object] = {"speaker": Speaker.AGENT, "text": "x", "start_ms": 0, "end_ms": 100}


@pytest.mark.parametrize(
    ("model", "fields", "constraint"),
    [
        (TranscriptSegment, SEGMENT | {"start_ms": 500}, "end_after_start"),
        (TranscriptSegment, SEGMENT | {"start_ms": -5}, "start_ms_not_negative"),
        (TranscriptSegment, SEGMENT | {"heard_ms": 50}, "heard_if_interrupted"),
        (TranscriptSegment, SEGMENT | {"interrupted": True, "heard_ms": 150}, "heard_within"),
        (TurnMetrics, {"turn_index": 0, "asr_ms": -1}, "asr_ms_not_negative"),
        (TurnMetrics, {"turn_index": 0, "voice_to_voice_ms": -40}, "voice_to_voice_ms_not_neg"),
    ],
)
def test_impossible_timings_are_refused(
    session: Session, model: type[Base], fields: dict[str, object], constraint: str
) -> None:
    call = _call()
    session.add(call)
    session.flush()
    session.add(model(call_id=call.id, **fields))
    with pytest.raises(IntegrityError, match=constraint):
        session.flush()


def test_a_call_cannot_end_before_it_started_or_have_an_outcome_before_it_ends(
    session: Session,
) -> None:
    with pytest.raises(IntegrityError, match="ck_calls_ended_order"), session.begin_nested():
        session.add(_call(ended_at=T0 - dt.timedelta(seconds=1)))
        session.flush()
    with pytest.raises(IntegrityError, match="ck_calls_outcome_after_end"), session.begin_nested():
        session.add(_call(outcome=Outcome.CONTAINED))
        session.flush()


def test_an_unknown_outcome_is_refused_by_the_orm_and_the_database(session: Session) -> None:
    unknown = "'resolved' is not among the defined enum values"
    with pytest.raises(StatementError, match=unknown), session.begin_nested():
        session.add(_call(ended_at=T0, outcome="resolved"))
        session.flush()
    with pytest.raises(IntegrityError, match="ck_calls_outcome"), session.begin_nested():
        session.execute(
            text(
                "INSERT INTO calls (id, to_number, started_at, ended_at, outcome) "
                "VALUES (:id, '100', :t, :t, 'resolved')"
            ),
            {"id": uuid.uuid4().hex, "t": T0},
        )


def test_naive_timestamps_are_refused(session: Session) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        session.add(_call(started_at=dt.datetime(2026, 3, 1, 9, 30)))
        session.flush()
