"""A worker's reset ends its live calls as `worker_lost`, and nobody else's."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.call_events import insert_new_events
from admin.models import Call, CallLeg, Outcome
from admin.projection import Projection
from admin.worker_loss import WORKER_LOST, HostStampedSpool, reset_event
from telephony.events import CallEvent, CallEventKind, read_events
from tests.ingest_support import AUDIT_KEY, NUMBER_KEY

pytest_plugins = ["tests.db_support"]

T0 = time.time() - 60


def _store(session: Session, events: list[CallEvent]) -> list[str]:
    new = insert_new_events(session, events)
    return Projection(number_key=NUMBER_KEY, audit_key=AUDIT_KEY).apply(session, new)


def _call(worker: int, host: str, *, at_s: float = 0.0, ended: bool = False) -> list[CallEvent]:
    call_id = uuid.uuid4().hex
    mono = time.monotonic_ns()
    data: dict[str, Any] = {"from": "<sip:anonymous@x>", "to": "100", "worker": worker}
    events = [
        CallEvent(call_id, CallEventKind.STARTED, {**data, "host": host}, mono, T0 + at_s),
        CallEvent(call_id, CallEventKind.ANSWERED, {"codec": "PCMU"}, mono + 10**7, T0 + at_s),
        CallEvent(call_id, CallEventKind.MEDIA_STATS, {}, mono + 5 * 10**9, T0 + at_s + 5),
    ]
    if ended:
        ended_event = CallEvent(
            call_id, CallEventKind.ENDED, {"reason": "hangup"}, mono + 6 * 10**9, T0 + at_s + 6
        )
        events.append(ended_event)
    return events


def _reset(worker: int, host: str, at_s: float) -> CallEvent:
    event = reset_event(worker=worker, host=host, cause="exited")
    return CallEvent(
        event.call_id, event.kind, event.data, time.monotonic_ns(), T0 + at_s, event.event_id
    )


def _when(session: Session, call_id: str) -> tuple[str | None, dt.datetime | None]:
    call = session.get_one(Call, call_id)
    return call.end_reason, call.ended_at


def test_a_reset_ends_the_live_calls_of_that_worker_on_that_host(session: Session) -> None:
    victim = _call(1, "a")
    elsewhere = _call(1, "b")
    sibling = _call(2, "a")
    finished = _call(1, "a", ended=True)
    _store(session, victim + elsewhere + sibling + finished)

    assert _store(session, [_reset(1, "a", at_s=30)]) == [victim[0].call_id]

    call = session.get_one(Call, victim[0].call_id)
    assert call.end_reason == WORKER_LOST
    # Ended where the last thing was heard of it, not when the loss was noticed.
    assert call.ended_at == dt.datetime.fromtimestamp(T0 + 5, dt.UTC)
    assert call.outcome is Outcome.ABANDONED  # answered, but nobody spoke
    legs = session.scalars(select(CallLeg).where(CallLeg.call_id == call.id)).all()
    assert {leg.end_reason for leg in legs} == {WORKER_LOST}
    assert _when(session, elsewhere[0].call_id) == (None, None)
    assert _when(session, sibling[0].call_id) == (None, None)
    assert _when(session, finished[0].call_id)[0] == "hangup"
    assert _store(session, [_reset(1, "a", at_s=40)]) == []  # nothing left to end


def test_calls_after_the_reset_in_the_same_batch_belong_to_the_new_worker(
    session: Session,
) -> None:
    old = _call(0, "a")
    new = _call(0, "a", at_s=20)
    assert _store(session, [*old, _reset(0, "a", at_s=10), *new]) == [old[0].call_id]
    assert _when(session, old[0].call_id)[0] == WORKER_LOST
    assert _when(session, new[0].call_id) == (None, None)


def test_the_worker_stamps_its_host_on_the_calls_it_starts(tmp_path: Path) -> None:
    spool = tmp_path / "worker-3.jsonl"
    outlet = HostStampedSpool(spool, host="media-7", segment_bytes=2**20)
    [started, answered, *_] = _call(3, "ignored")
    outlet.emit(CallEvent(started.call_id, CallEventKind.STARTED, {"worker": 3}))
    outlet.emit(answered)
    outlet.close()
    [first, second] = read_events(outlet.path)
    assert first.data == {"worker": 3, "host": "media-7"}
    assert second.data == answered.data
