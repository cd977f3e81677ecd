"""Contact-center figures over a time range, per hour or day bucket, computed in SQL.

The same statements run on PostgreSQL and SQLite: the only dialect-specific pieces are how a
time becomes its bucket's label and how two times become milliseconds (both below). Percentiles
are nearest-rank (the ceil(p·n)-th smallest value), with window functions both databases have.
Buckets are aligned to UTC; a call belongs to the bucket in which it started.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import ColumnElement, case, exists, func, literal, select
from sqlalchemy.orm import Session

from admin.api.schemas import MetricsBucket, MetricsSummary, ModelFigures, QueueFigures
from admin.models import Call, CallMetrics, Escalation, Outcome, TurnMetrics
from escalation.acd import QueuePolicy
from escalation.lifecycle import EscalationState
from escalation.service import DEFAULT_QUEUE

Bucket = Literal["hour", "day"]
MAX_BUCKETS = 2000
_STEP = {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}
_TOTAL = "total"


@dataclass
class _Figures:
    calls: int = 0
    finished: int = 0
    contained: int = 0
    escalated: int = 0
    aht_ms: float | None = None
    asa_ms: float | None = None
    escalation_asa_ms: float | None = None
    by_reason: dict[str, int] = field(default_factory=dict)
    p50: int | None = None
    p95: int | None = None
    barge_ins_per_call: float | None = None


def bucket_starts(start: dt.datetime, end: dt.datetime, bucket: Bucket) -> list[dt.datetime]:
    """The UTC-aligned buckets covering [start, end); raises ValueError for too many."""
    if end <= start:
        raise ValueError("'to' must be after 'from'")
    step = _STEP[bucket]
    first = start.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    if bucket == "day":
        first = first.replace(hour=0)
    count = -(-(end - first) // step)
    if count > MAX_BUCKETS:
        raise ValueError(
            f"the range has {count} {bucket} buckets, more than {MAX_BUCKETS}; "
            "shorten it or use day buckets"
        )
    return [first + i * step for i in range(count)]


def summarize(
    session: Session,
    *,
    start: dt.datetime,
    end: dt.datetime,
    bucket: Bucket,
    service_level_targets: Mapping[str, float] | None = None,
) -> MetricsSummary:
    """`service_level_targets`: each queue's target in seconds (the settings' queues); a queue
    not named there is measured against escalation.acd's default."""
    starts = bucket_starts(start, end, bucket)
    dialect = session.get_bind().dialect.name
    label = _bucket_label(dialect, bucket)
    per_bucket = _figures(session, dialect, label, start, end)
    total = _figures(session, dialect, literal(_TOTAL), start, end).get(_TOTAL, _Figures())
    step = _STEP[bucket]
    return MetricsSummary(
        from_=start,
        to=end,
        bucket=bucket,
        total=_bucket_out(start, end, total),
        buckets=[
            _bucket_out(s, s + step, per_bucket.get(_label_of(s), _Figures())) for s in starts
        ],
        queues=_queues(session, dialect, start, end, service_level_targets or {}),
        models=_models(session, start, end),
    )


def _models(session: Session, start: dt.datetime, end: dt.datetime) -> list[ModelFigures]:
    """Voice-to-voice per model (turns stored before models were recorded: "unknown")."""
    model = func.coalesce(TurnMetrics.model, literal("unknown"))
    in_range = (Call.started_at >= start, Call.started_at < end)
    ranks = {str(name): ranked for name, ranked in _v2v_percentiles(session, model, in_range)}
    rows = session.execute(
        select(
            model,
            func.count(),
            func.avg(TurnMetrics.endpointing_ms),
            func.avg(TurnMetrics.first_audio_ms),
        )
        .join(Call, Call.id == TurnMetrics.call_id)
        .where(*in_range)
        .group_by(model)
        .order_by(model)
    )
    return [
        ModelFigures(
            model=str(name),
            turns=int(turns),
            voice_to_voice_p50_ms=ranks.get(str(name), (None, None))[0],
            voice_to_voice_p95_ms=ranks.get(str(name), (None, None))[1],
            endpointing_ms=_ms(endpointing),
            first_audio_ms=_ms(first_audio),
        )
        for name, turns, endpointing, first_audio in rows
    ]


def _queues(
    session: Session,
    dialect: str,
    start: dt.datetime,
    end: dt.datetime,
    targets: Mapping[str, float],
) -> list[QueueFigures]:
    """Service level and abandonment per queue. The rows are escalations, which are few
    beside calls: they are counted here rather than in SQL, each against its queue's target."""
    rows = session.execute(
        select(
            Escalation.queue,
            Escalation.state,
            _ms_between(dialect, Escalation.requested_at, Escalation.connected_at),
        )
        .join(Call, Call.id == Escalation.call_id)
        .where(Call.started_at >= start, Call.started_at < end)
    )
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # all, con, aband, in SL
    default_target = QueuePolicy(DEFAULT_QUEUE).service_level_target_s
    for queue, state, wait_ms in rows:
        name = queue or DEFAULT_QUEUE
        found = counts[name]
        found[0] += 1
        if wait_ms is not None:
            found[1] += 1
            if float(wait_ms) <= 1000 * targets.get(name, default_target):
                found[3] += 1
        elif state is EscalationState.ABANDONED:
            found[2] += 1
    return [
        QueueFigures(
            name=name,
            escalations=total,
            connected=connected,
            abandoned=abandoned,
            service_level_target_s=targets.get(name, default_target),
            service_level=round(within / (connected + abandoned), 4)
            if connected + abandoned
            else None,
            abandonment_rate=round(abandoned / total, 4) if total else None,
        )
        for name, (total, connected, abandoned, within) in sorted(counts.items())
    ]


def _label_of(start: dt.datetime) -> str:
    return start.strftime("%Y-%m-%dT%H:00:00")


def _bucket_label(dialect: str, bucket: Bucket) -> Any:
    """A function of a timestamp column giving its bucket's label, as _label_of writes it."""
    if dialect == "postgresql":
        pg_format = 'YYYY-MM-DD"T"HH24:00:00' if bucket == "hour" else 'YYYY-MM-DD"T"00:00:00'
        return lambda column: func.to_char(func.timezone("UTC", column), pg_format)
    sqlite_format = "%Y-%m-%dT%H:00:00" if bucket == "hour" else "%Y-%m-%dT00:00:00"
    return lambda column: func.strftime(sqlite_format, column)


def _ms_between(dialect: str, start: Any, end: Any) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return (func.extract("epoch", end) - func.extract("epoch", start)) * 1000
    return (func.julianday(end) - func.julianday(start)) * 86_400_000


def _figures(
    session: Session, dialect: str, label: Any, start: dt.datetime, end: dt.datetime
) -> dict[str, _Figures]:
    def bucket_of(column: Any) -> Any:
        return (label(column) if callable(label) else label).label("bucket")

    in_range = (Call.started_at >= start, Call.started_at < end)
    figures: dict[str, _Figures] = defaultdict(_Figures)

    calls = select(
        bucket_of(Call.started_at),
        Call.outcome,
        exists().where(Escalation.call_id == Call.id).label("escalated"),
        _ms_between(dialect, Call.answered_at, Call.ended_at).label("handled_ms"),
        _ms_between(dialect, Call.started_at, Call.answered_at).label("answer_ms"),
    ).where(*in_range)
    c = calls.subquery()
    for row in session.execute(
        select(
            c.c.bucket,
            func.count(),
            func.count(c.c.outcome),
            func.sum(case((c.c.outcome == Outcome.CONTAINED.value, 1), else_=0)),
            func.sum(case((c.c.escalated, 1), else_=0)),
            func.avg(c.c.handled_ms),  # NULL (not answered, not ended) is left out
            func.avg(c.c.answer_ms),
        ).group_by(c.c.bucket)
    ):
        found = figures[row[0]]
        found.calls, found.finished, found.contained, found.escalated = (
            int(row[1]),
            int(row[2]),
            int(row[3] or 0),
            int(row[4] or 0),
        )
        found.aht_ms, found.asa_ms = _ms(row[5]), _ms(row[6])

    escalations = (
        select(
            bucket_of(Call.started_at),
            Escalation.call_id,
            Escalation.reason,
            _ms_between(dialect, Escalation.requested_at, Escalation.connected_at).label("wait"),
        )
        .join(Call, Call.id == Escalation.call_id)
        .where(*in_range)
        .subquery()
    )
    for bucket, reason, count in session.execute(
        select(
            escalations.c.bucket, escalations.c.reason, func.count(escalations.c.call_id.distinct())
        ).group_by(escalations.c.bucket, escalations.c.reason)
    ):
        figures[bucket].by_reason[str(reason)] = int(count)
    for bucket, wait in session.execute(
        select(escalations.c.bucket, func.avg(escalations.c.wait)).group_by(escalations.c.bucket)
    ):
        figures[bucket].escalation_asa_ms = _ms(wait)

    bucket_column = label(Call.started_at) if callable(label) else label
    for bucket, (p50, p95) in _v2v_percentiles(session, bucket_column, in_range):
        figures[bucket].p50, figures[bucket].p95 = p50, p95

    barge_ins = (
        select(bucket_of(Call.started_at), CallMetrics.barge_ins)
        .join(Call, Call.id == CallMetrics.call_id)
        .where(*in_range)
        .subquery()
    )
    for bucket, mean in session.execute(
        select(barge_ins.c.bucket, func.avg(barge_ins.c.barge_ins)).group_by(barge_ins.c.bucket)
    ):
        figures[bucket].barge_ins_per_call = None if mean is None else round(float(mean), 3)
    return dict(figures)


def _v2v_percentiles(
    session: Session, key: Any, where: tuple[ColumnElement[bool], ...]
) -> list[tuple[Any, tuple[int | None, int | None]]]:
    """Voice-to-voice p50 and p95 (nearest rank) of the turns of calls matching `where`, per
    value of `key` (a bucket's label, a model)."""
    value = TurnMetrics.voice_to_voice_ms
    ranked = (
        select(
            key.label("key"),
            value.label("v"),
            func.row_number().over(partition_by=key, order_by=value).label("rn"),
            func.count().over(partition_by=key).label("n"),
        )
        .join(Call, Call.id == TurnMetrics.call_id)
        .where(*where, value.is_not(None))
        .subquery()
    )
    r = ranked.c
    rows = session.execute(
        select(
            r.key,
            func.max(case((r.rn == (r.n + 1) // 2, r.v))),  # ceil(n / 2)
            func.max(case((r.rn == (95 * r.n + 99) // 100, r.v))),  # ceil(0.95 n)
        ).group_by(r.key)
    )
    return [(key_value, (p50, p95)) for key_value, p50, p95 in rows]


def _ms(value: object) -> float | None:
    return None if value is None else round(float(str(value)), 1)


def _bucket_out(start: dt.datetime, end: dt.datetime, found: _Figures) -> MetricsBucket:
    calls = found.calls
    return MetricsBucket(
        start=start,
        end=end,
        calls=calls,
        finished=found.finished,
        containment_rate=round(found.contained / found.finished, 4) if found.finished else None,
        escalation_rate=round(found.escalated / calls, 4) if calls else None,
        escalation_rate_by_reason={
            reason: round(count / calls, 4) for reason, count in sorted(found.by_reason.items())
        }
        if calls
        else {},
        aht_ms=found.aht_ms,
        asa_ms=found.asa_ms,
        escalation_asa_ms=found.escalation_asa_ms,
        voice_to_voice_p50_ms=found.p50,
        voice_to_voice_p95_ms=found.p95,
        barge_ins_per_call=found.barge_ins_per_call,
    )
