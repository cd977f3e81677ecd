"""Post-call metrics: one `call_metrics` row per call, from the call, its turn metrics and its
events. Upserted, and only rewritten when a value changes, so a rerun leaves the same row.

Where the numbers come from:

- duration: `ended_at - started_at` (the whole call, ringing included);
- turns: the call's `turn_metrics` rows, or where the engine stored none, its `end_of_turn`
  agent events;
- barge-ins: the agent's `barge_in` events less those that turned out to be back-channels
  (`backchannel_ignored`: the agent paused, then went on); a model that reports neither is
  counted by the playout flushes the bridge made for a barge-in;
- back-channels: the caller's back-channels that the agent talked through;
- voice-to-voice p50/p95: nearest-rank percentiles of the turns' `voice_to_voice_ms`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from admin.jobs.calls import load_call
from admin.jobs.errors import JobInputError
from admin.models import Call, CallEventRecord, CallMetrics, TurnMetrics, utcnow
from telephony.events import CallEventKind


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the metrics are computed from, already read from the database."""

    started_at: dt.datetime
    ended_at: dt.datetime
    turn_rows: int
    voice_to_voice_ms: tuple[int, ...]
    agent_events: Counter[str]  # agent event name -> how many
    flush_reasons: Counter[str]  # playout flush reason -> how many


@dataclass(frozen=True, slots=True)
class Metrics:
    duration_ms: int
    turns: int
    barge_ins: int
    backchannels: int
    voice_to_voice_p50_ms: int | None
    voice_to_voice_p95_ms: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compute(facts: CallFacts) -> Metrics:
    events = facts.agent_events
    if events["barge_in"]:
        barge_ins = max(0, events["barge_in"] - events["backchannel_ignored"])
    else:
        barge_ins = facts.flush_reasons["barge_in"]
    latencies = sorted(facts.voice_to_voice_ms)
    return Metrics(
        duration_ms=max(0, round((facts.ended_at - facts.started_at).total_seconds() * 1000)),
        turns=facts.turn_rows or events["end_of_turn"],
        barge_ins=barge_ins,
        backchannels=events["backchannel_ignored"],
        voice_to_voice_p50_ms=percentile(latencies, 50),
        voice_to_voice_p95_ms=percentile(latencies, 95),
    )


def percentile(ordered: Sequence[int], q: float) -> int | None:
    """The nearest-rank percentile of sorted values: always one of them, None for none."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def read_facts(session: Session, call: Call) -> CallFacts:
    if call.ended_at is None:
        raise JobInputError(f"call {call.id} has not ended; metrics are computed after hangup")
    latencies = session.scalars(
        select(TurnMetrics.voice_to_voice_ms).where(
            TurnMetrics.call_id == call.id, TurnMetrics.voice_to_voice_ms.is_not(None)
        )
    ).all()
    turn_rows = session.scalar(
        select(func.count()).select_from(TurnMetrics).where(TurnMetrics.call_id == call.id)
    )
    agent_events: Counter[str] = Counter()
    flush_reasons: Counter[str] = Counter()
    events = session.execute(
        select(CallEventRecord.kind, CallEventRecord.data)
        .where(
            CallEventRecord.call_id == call.id,
            CallEventRecord.kind.in_(
                [CallEventKind.AGENT.value, CallEventKind.PLAYOUT_FLUSHED.value]
            ),
        )
        .execution_options(yield_per=1000)
    )
    for kind, data in events:
        if not isinstance(data, dict):
            continue  # stored by someone else in a shape we do not know: not countable
        if kind == CallEventKind.AGENT.value:
            agent_events[str(data.get("event"))] += 1
        else:
            flush_reasons[str(data.get("reason"))] += 1
    return CallFacts(
        started_at=call.started_at,
        ended_at=call.ended_at,
        turn_rows=turn_rows or 0,
        voice_to_voice_ms=tuple(value for value in latencies if value is not None),
        agent_events=agent_events,
        flush_reasons=flush_reasons,
    )


def rollup_call(session: Session, *, call_id: str) -> Metrics:
    """Computes and stores the call's metrics; running it again gives the same row."""
    call = load_call(session, call_id)
    metrics = compute(read_facts(session, call))
    values = {"call_id": call.id, **metrics.as_dict(), "computed_at": utcnow()}
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(CallMetrics).values(values)
    measured = [name for name in values if name not in ("call_id", "computed_at")]
    table = CallMetrics.__table__
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.call_id],
        set_={name: statement.excluded[name] for name in [*measured, "computed_at"]},
        # Only when something changed: a rerun keeps the row, computed_at included.
        where=or_(*(table.c[name].is_distinct_from(statement.excluded[name]) for name in measured)),
    )
    session.execute(statement)
    if call.duration_sort_ms != metrics.duration_ms:
        call.duration_sort_ms = metrics.duration_ms  # what /calls sorts by (an index scan)
    return metrics


def calls_missing_metrics(session: Session, *, ended_before: dt.datetime, limit: int) -> list[str]:
    """Ended calls that have no metrics yet (their post-call job was lost: the broker was down,
    the worker crashed), oldest first. Calls that ended after `ended_before` are left to the
    job their hangup queued."""
    query = (
        select(Call.id)
        .outerjoin(CallMetrics, CallMetrics.call_id == Call.id)
        .where(
            Call.ended_at.is_not(None),
            Call.ended_at < ended_before,
            CallMetrics.call_id.is_(None),
        )
        .order_by(Call.ended_at, Call.id)
        .limit(limit)
    )
    return list(session.scalars(query))
