"""Reading calls: the filtered, sorted, keyset-paged list and one call in full.

Paging is by keyset (the last row's sort value and id), so a page never repeats or skips a call
that was already stored when the first page was read, however many calls arrive meanwhile.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, exists, or_, select
from sqlalchemy.orm import Session

from admin import display_text
from admin.api import cursor, escalation_queries, event_redaction
from admin.api.cursor import BadCursor, Position
from admin.api.schemas import (
    CallDetail,
    CallMetricsOut,
    CallSummary,
    DisclosurePlayOut,
    EventOut,
    LegOut,
    RecordingOut,
    SegmentOut,
    TurnMetricsOut,
)
from admin.models import (
    Call,
    CallEventRecord,
    CallLeg,
    CallMetrics,
    Disclosure,
    DisclosurePlay,
    DisclosureVersion,
    Escalation,
    Line,
    Outcome,
    Recording,
    TranscriptSegment,
    TurnMetrics,
)

Sort = Literal["-started_at", "started_at", "-duration", "duration"]
EVENTS_SHOWN = 5000  # per call detail; media stats every few seconds add up on long calls
_NO_DURATION = -1  # live calls and calls without metrics sort as the shortest

_escalated = exists().where(Escalation.call_id == Call.id)
_duration = Call.duration_sort_ms  # the metrics' duration, or _NO_DURATION; indexed


@dataclass(frozen=True, slots=True)
class CallFilters:
    started_from: dt.datetime | None = None  # inclusive
    started_to: dt.datetime | None = None  # exclusive
    line_id: int | None = None
    outcome: Outcome | None = None
    escalated: bool | None = None
    caller_hashes: tuple[str, ...] | None = None  # phone_numbers.number_hashes of the number

    def digest(self) -> str:
        return cursor.query_digest(
            started_from=self.started_from,
            started_to=self.started_to,
            line_id=self.line_id,
            outcome=self.outcome,
            escalated=self.escalated,
            caller_hash=",".join(self.caller_hashes) if self.caller_hashes else None,
        )

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.started_from is not None:
            found.append(Call.started_at >= self.started_from)
        if self.started_to is not None:
            found.append(Call.started_at < self.started_to)
        if self.line_id is not None:
            found.append(Call.line_id == self.line_id)
        if self.outcome is not None:
            found.append(Call.outcome == self.outcome)
        if self.escalated is not None:
            found.append(_escalated if self.escalated else ~_escalated)
        if self.caller_hashes is not None:
            found.append(Call.caller_hash.in_(self.caller_hashes))
        return found


def supervisor_scope() -> ColumnElement[bool]:
    """The calls a supervisor sees: live ones, and any that was ever escalated."""
    return or_(Call.ended_at.is_(None), Call.outcome == Outcome.ESCALATED, _escalated)


@dataclass(frozen=True, slots=True)
class CallListing:
    items: list[CallSummary]
    next_cursor: str | None


def list_calls(
    session: Session,
    *,
    filters: CallFilters,
    sort: Sort,
    limit: int,
    page_cursor: str | None,
    scope: ColumnElement[bool] | None,
) -> CallListing:
    """One page of calls; raises BadCursor for a cursor of another query."""
    descending = sort.startswith("-")
    key: Any = _duration if sort.endswith("duration") else Call.started_at
    query = _summary_query().where(*filters.conditions())
    if scope is not None:
        query = query.where(scope)
    digest = filters.digest()
    if page_cursor is not None:
        after = cursor.decode(page_cursor, sort=sort, digest=digest)
        query = query.where(_after(key, _cursor_value(sort, after), str(after.id), descending))
    order = [key.desc(), Call.id.desc()] if descending else [key.asc(), Call.id.asc()]
    rows = session.execute(query.order_by(*order).limit(limit + 1)).all()
    items = [_summary(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        value: str | int = (
            last.started_at.isoformat()
            if key is Call.started_at
            else rows[limit - 1].Call.duration_sort_ms
        )
        next_cursor = cursor.encode(Position(value, last.id), sort=sort, digest=digest)
    return CallListing(items, next_cursor)


def get_call(
    session: Session, call_id: str, *, scope: ColumnElement[bool] | None
) -> CallDetail | None:
    """The call with everything recorded about it, or None if it is not there (or not in scope)."""
    query = _summary_query().where(Call.id == call_id)
    if scope is not None:
        query = query.where(scope)
    row = session.execute(query).first()
    if row is None:
        return None
    summary = _summary(row)
    return CallDetail(
        **summary.model_dump(),
        legs=[
            LegOut.model_validate(leg)
            for leg in session.scalars(
                select(CallLeg).where(CallLeg.call_id == call_id).order_by(CallLeg.started_at)
            )
        ],
        transcript=[
            SegmentOut.model_validate(segment)
            for segment in session.scalars(
                select(TranscriptSegment)
                .where(TranscriptSegment.call_id == call_id)
                .order_by(TranscriptSegment.start_ms, TranscriptSegment.id)
            )
        ],
        disclosure_plays=_plays(session, call_id),
        escalations=escalation_queries.of_call(session, call_id),
        events=[
            event_out(event)
            for event in session.scalars(
                select(CallEventRecord)
                .where(CallEventRecord.call_id == call_id)
                .order_by(CallEventRecord.occurred_at, CallEventRecord.t_mono_ns)
                .limit(EVENTS_SHOWN)
            )
        ],
        turn_metrics=[
            TurnMetricsOut.model_validate(turn)
            for turn in session.scalars(
                select(TurnMetrics)
                .where(TurnMetrics.call_id == call_id)
                .order_by(TurnMetrics.turn_index)
            )
        ],
        metrics=_metrics(session, call_id),
        recording=_recording(session, call_id),
        redaction_policy=session.scalar(select(Call.redaction_policy).where(Call.id == call_id)),
    )


def _recording(session: Session, call_id: str) -> RecordingOut | None:
    found = session.scalar(select(Recording).where(Recording.call_id == call_id))
    return RecordingOut.model_validate(found) if found is not None else None


def event_out(event: CallEventRecord) -> EventOut:
    data = event_redaction.redact(event.data)
    return EventOut(
        event_id=event.event_id,
        call_id=event.call_id,
        kind=event.kind,
        occurred_at=event.occurred_at,
        received_at=event.received_at,
        data=data if isinstance(data, dict) else {"value": data},
    )


def _summary_query() -> Any:
    return (
        select(
            Call,
            Line.name.label("line_name"),
            CallMetrics.duration_ms,
            _escalated.label("escalated"),
        )
        .outerjoin(Line, Line.id == Call.line_id)
        .outerjoin(CallMetrics, CallMetrics.call_id == Call.id)
    )


def _summary(row: Any) -> CallSummary:
    call: Call = row.Call
    return CallSummary(
        id=call.id,
        line_id=call.line_id,
        line=row.line_name,
        caller=call.caller_masked,
        # Written cleaned (admin.projection); cleaned again for rows stored before that.
        to_number=display_text.clean(call.to_number),
        started_at=call.started_at,
        answered_at=call.answered_at,
        ended_at=call.ended_at,
        end_reason=display_text.clean(call.end_reason) if call.end_reason else None,
        outcome=call.outcome,
        escalated=bool(row.escalated),
        duration_ms=row.duration_ms,
    )


def _cursor_value(sort: Sort, after: Position) -> Any:
    if sort.endswith("duration"):
        if not isinstance(after.value, int):
            raise BadCursor("the cursor is not one this API gave out; start again without it")
        return after.value
    try:
        value = dt.datetime.fromisoformat(str(after.value))
    except ValueError:
        raise BadCursor("the cursor is not one this API gave out; start again without it") from None
    if value.tzinfo is None:
        raise BadCursor("the cursor is not one this API gave out; start again without it")
    return value


def _after(key: Any, value: Any, row_id: str, descending: bool) -> ColumnElement[bool]:
    if descending:
        return or_(key < value, and_(key == value, Call.id < row_id))
    return or_(key > value, and_(key == value, Call.id > row_id))


def _plays(session: Session, call_id: str) -> list[DisclosurePlayOut]:
    rows = session.execute(
        select(DisclosurePlay, DisclosureVersion, Disclosure.name)
        .join(DisclosureVersion, DisclosureVersion.id == DisclosurePlay.version_id)
        .join(Disclosure, Disclosure.id == DisclosureVersion.disclosure_id)
        .where(DisclosurePlay.call_id == call_id)
        .order_by(DisclosurePlay.started_at)
    ).all()
    return [
        DisclosurePlayOut(
            id=play.id,
            disclosure=name,
            version=version.version,
            version_id=version.id,
            jurisdiction=version.jurisdiction,
            audio_sha256=version.audio_sha256,
            text=version.text,
            started_at=play.started_at,
            ended_at=play.ended_at,
            interrupted=play.interrupted,
            consent=play.consent,
            consent_method=play.consent_method,
            circumstances=play.circumstances,
        )
        for play, version, name in rows
    ]


def _metrics(session: Session, call_id: str) -> CallMetricsOut | None:
    metrics = session.get(CallMetrics, call_id)
    return CallMetricsOut.model_validate(metrics) if metrics is not None else None
