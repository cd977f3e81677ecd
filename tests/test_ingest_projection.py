"""Events become records: a scripted call projected on both backends, in any order."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.call_events import insert_new_events
from admin.models import (
    Call,
    CallLeg,
    Escalation,
    EscalationReason,
    LegKind,
    Line,
    Outcome,
    Speaker,
    TranscriptSegment,
    TurnMetrics,
)
from admin.phone_numbers import number_hash
from admin.projection import Projection
from telephony.events import CallEvent, CallEventKind
from tests.ingest_support import AUDIT_KEY, CALLER, NUMBER_KEY, scripted_call

pytest_plugins = ["tests.db_support"]


def _store(session: Session, events: list[CallEvent]) -> list[str]:
    new = insert_new_events(session, events)
    return Projection(number_key=NUMBER_KEY, audit_key=AUDIT_KEY).apply(session, new)


def _segments(session: Session, call_id: str) -> list[TranscriptSegment]:
    query = select(TranscriptSegment).where(TranscriptSegment.call_id == call_id)
    return list(session.scalars(query.order_by(TranscriptSegment.start_ms)))


def test_a_scripted_call_becomes_its_records(session: Session) -> None:
    line = Line(name="main", agent_profile="embedded", queue="support")
    session.add(line)
    session.flush()
    events = scripted_call()
    call_id = events[0].call_id
    assert _store(session, events) == [call_id]

    call = session.get_one(Call, call_id)
    assert (call.to_number, call.line_id, call.end_reason) == ("100", line.id, "hangup")
    assert call.caller_hash == number_hash(CALLER, key=NUMBER_KEY)
    assert call.caller_masked == "+1******4567"
    assert call.answered_at is not None and call.ended_at is not None
    assert call.outcome is Outcome.ESCALATED
    legs = session.scalars(select(CallLeg).where(CallLeg.call_id == call_id)).all()
    assert sorted((leg.kind, leg.codec, leg.end_reason) for leg in legs) == [
        (LegKind.AGENT, None, "hangup"),
        (LegKind.CALLER, "G722", "hangup"),
    ]
    spoken = [
        (s.speaker, s.start_ms, s.end_ms, s.interrupted, s.heard_ms, s.heard_text)
        for s in _segments(session, call_id)
    ]
    assert spoken == [
        (Speaker.AGENT, 100, 1600, False, None, None),
        (Speaker.CALLER, 2000, 3000, False, None, None),
        (Speaker.AGENT, 3710, 4510, True, 800, "Your order shipped"),
        (Speaker.CALLER, 4500, 5000, False, None, None),
    ]
    [turn] = session.scalars(select(TurnMetrics).where(TurnMetrics.call_id == call_id))
    assert (turn.turn_index, turn.endpointing_ms, turn.asr_ms, turn.voice_to_voice_ms) == (
        0,
        500,
        120,
        610,
    )
    assert turn.model == "parley-embedded"
    [escalation] = session.scalars(select(Escalation).where(Escalation.call_id == call_id))
    assert (escalation.reason, escalation.queue) == (EscalationReason.CALLER_REQUEST, "support")

    assert _store(session, events) == []  # a replay changes nothing
    assert len(_segments(session, call_id)) == 4


def test_events_before_their_call_started_wait_for_it(session: Session) -> None:
    events = scripted_call()
    call_id = events[0].call_id
    assert _store(session, events[5:]) == []  # no call row yet: stored, not projected
    assert session.get(Call, call_id) is None
    assert _store(session, events[:5]) == [call_id]
    assert len(_segments(session, call_id)) == 4
    assert session.get_one(Call, call_id).outcome is Outcome.ESCALATED


def test_a_flush_after_the_transcript_still_cuts_the_segment(session: Session) -> None:
    call_id = uuid.uuid4().hex
    events = scripted_call(call_id)[:5]  # greeting fully sent, transcript done
    t = events[-1].t_mono_ns
    flush = CallEvent(
        call_id,
        CallEventKind.PLAYOUT_FLUSHED,
        {"reason": "barge_in", "utterance_id": "u1", "played_ms": 700},
        t + 10_000_000,
        events[-1].t_wall + 0.01,
    )
    _store(session, events)
    _store(session, [flush])
    [greeting] = _segments(session, call_id)
    assert (greeting.interrupted, greeting.heard_ms, greeting.end_ms) == (True, 700, 800)


def _pause_for_a_backchannel(call_id: str, after: CallEvent) -> list[CallEvent]:
    """The greeting paused by an "uh-huh" 700 ms in, then carried on."""
    t, wall = after.t_mono_ns, after.t_wall
    return [
        CallEvent(
            call_id,
            CallEventKind.PLAYOUT_FLUSHED,
            {"reason": "barge_in", "utterance_id": "u1", "played_ms": 700},
            t + 10_000_000,
            wall + 0.01,
        ),
        CallEvent(
            call_id,
            CallEventKind.AGENT,
            {"event": "backchannel_ignored", "text": "uh-huh", "duration_ms": 300, "item_id": "u1"},
            t + 500_000_000,
            wall + 0.5,
        ),
    ]


def test_an_answer_paused_for_a_backchannel_is_not_cut(session: Session) -> None:
    call_id = uuid.uuid4().hex
    events = scripted_call(call_id)[:5]  # greeting fully sent, transcript done
    pause = _pause_for_a_backchannel(call_id, events[-1])
    _store(session, events)
    _store(session, pause[:1])
    [greeting] = _segments(session, call_id)
    assert greeting.interrupted  # as far as anyone knew then
    _store(session, pause[1:])
    session.flush()
    session.expire_all()
    [greeting] = _segments(session, call_id)
    assert (greeting.interrupted, greeting.heard_ms, greeting.end_ms) == (False, None, 1600)


def test_a_backchannel_before_the_transcript_leaves_the_answer_whole(session: Session) -> None:
    call_id = uuid.uuid4().hex
    events = scripted_call(call_id)[:5]
    pause = _pause_for_a_backchannel(call_id, events[-1])
    transcript = events[4]
    late = CallEvent(
        call_id,
        transcript.kind,
        transcript.data,
        pause[-1].t_mono_ns + 1_000_000,
        pause[-1].t_wall + 0.001,
    )
    _store(session, [*events[:4], *pause, late])
    [greeting] = _segments(session, call_id)
    assert (greeting.interrupted, greeting.end_ms) == (False, 1600)


def test_outcomes(session: Session) -> None:
    def ended_call(*middle: tuple[str, dict[str, object]], reason: str) -> Outcome | None:
        base = scripted_call()
        call_id = base[0].call_id
        events = base[:2]
        for offset, (name, data) in enumerate(middle, start=1):
            events.append(
                CallEvent(
                    call_id,
                    CallEventKind.AGENT,
                    {"event": name, **data},
                    base[1].t_mono_ns + offset * 1_000_000,
                    base[1].t_wall,
                )
            )
        events.append(
            CallEvent(
                call_id,
                CallEventKind.ENDED,
                {"reason": reason},
                base[1].t_mono_ns + 99_000_000,
                base[1].t_wall + 1,
            )
        )
        _store(session, events)
        return session.get_one(Call, call_id).outcome

    question: tuple[str, dict[str, object]] = ("caller_transcript", {"text": "opening hours?"})
    answer: tuple[str, dict[str, object]] = (
        "agent_transcript",
        {"utterance_id": "a", "text": "Nine to five."},
    )
    assert ended_call(question, answer, reason="hangup") is Outcome.CONTAINED
    assert ended_call(answer, question, reason="hangup") is Outcome.ABANDONED
    assert ended_call(reason="hangup") is Outcome.ABANDONED
    assert ended_call(question, reason="agent:conversation_complete") is Outcome.CONTAINED
    assert ended_call(question, answer, reason="rtp_timeout") is Outcome.CONTAINED
