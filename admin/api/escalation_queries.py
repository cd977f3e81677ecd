"""Reading escalations: the filtered, keyset-paged list (newest request first) and one in full.

Paging is by keyset (the last row's request time and id), like the calls' (admin.api.cursor).
Callback numbers leave only masked; the clear number is never stored (admin.projection).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from admin.api import cursor
from admin.api.cursor import BadCursor, Position
from admin.api.schemas import EscalationDetail, EscalationSummary, TransitionOut
from admin.models import Escalation, EscalationTransition
from escalation.lifecycle import EscalationState

SORT = "-requested_at"  # the one order; named in cursors all the same


@dataclass(frozen=True, slots=True)
class EscalationFilters:
    state: EscalationState | None = None
    queue: str | None = None

    def digest(self) -> str:
        return cursor.query_digest(state=self.state, queue=self.queue)

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.state is not None:
            found.append(Escalation.state == self.state)
        if self.queue is not None:
            found.append(Escalation.queue == self.queue)
        return found


@dataclass(frozen=True, slots=True)
class EscalationListing:
    items: list[EscalationSummary]
    next_cursor: str | None


def list_escalations(
    session: Session,
    *,
    filters: EscalationFilters,
    limit: int,
    page_cursor: str | None,
) -> EscalationListing:
    """One page of escalations; raises BadCursor for a cursor of another query."""
    query = select(Escalation).where(*filters.conditions())
    digest = filters.digest()
    if page_cursor is not None:
        after = cursor.decode(page_cursor, sort=SORT, digest=digest)
        query = query.where(_before(*_position(after)))
    rows = session.scalars(
        query.order_by(Escalation.requested_at.desc(), Escalation.id.desc()).limit(limit + 1)
    ).all()
    items = [EscalationSummary.model_validate(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        position = Position(last.requested_at.isoformat(), last.id)
        next_cursor = cursor.encode(position, sort=SORT, digest=digest)
    return EscalationListing(items, next_cursor)


def get_escalation(session: Session, ref: str) -> EscalationDetail | None:
    """The escalation with its transitions, or None if it is not there."""
    found = session.scalar(select(Escalation).where(Escalation.ref == ref))
    return None if found is None else details(session, [found])[0]


def of_call(session: Session, call_id: str) -> list[EscalationDetail]:
    """The call's escalations, oldest request first, each with its transitions."""
    rows = session.scalars(
        select(Escalation)
        .where(Escalation.call_id == call_id)
        .order_by(Escalation.requested_at, Escalation.id)
    ).all()
    return details(session, rows)


def details(session: Session, escalations: Sequence[Escalation]) -> list[EscalationDetail]:
    by_id: dict[int, list[TransitionOut]] = {e.id: [] for e in escalations}
    if by_id:
        transitions = session.scalars(
            select(EscalationTransition)
            .where(EscalationTransition.escalation_id.in_(by_id))
            .order_by(EscalationTransition.seq)
        )
        for transition in transitions:
            by_id[transition.escalation_id].append(TransitionOut.model_validate(transition))
    return [
        EscalationDetail(
            **EscalationSummary.model_validate(e).model_dump(), transitions=by_id[e.id]
        )
        for e in escalations
    ]


def _position(after: Position) -> tuple[dt.datetime, int]:
    bad = BadCursor("the cursor is not one this API gave out; start again without it")
    if not isinstance(after.id, int):
        raise bad
    try:
        value = dt.datetime.fromisoformat(str(after.value))
    except ValueError:
        raise bad from None
    if value.tzinfo is None:
        raise bad
    return value, after.id


def _before(requested_at: dt.datetime, row_id: int) -> ColumnElement[bool]:
    return or_(
        Escalation.requested_at < requested_at,
        and_(Escalation.requested_at == requested_at, Escalation.id < row_id),
    )
