"""Escalations: the filtered, paged list and one escalation with its transitions. Read only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from admin.api import escalation_queries
from admin.api.cursor import BadCursor
from admin.api.deps import CallReader, DbSession
from admin.api.errors import ERROR_RESPONSES, ApiError, not_found
from admin.api.escalation_queries import EscalationFilters
from admin.api.schemas import EscalationDetail, EscalationPage
from escalation.lifecycle import EscalationState

router = APIRouter(prefix="/escalations", tags=["escalations"], responses=ERROR_RESPONSES)

EscalationRef = Annotated[
    str, Path(pattern=r"^[0-9a-f]{32}$", description="the escalation's id (UUID hex)")
]


@router.get("", response_model=EscalationPage)
def list_escalations(
    *,
    principal: CallReader,
    session: DbSession,
    state: EscalationState | None = None,
    queue: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> EscalationPage:
    """Escalations, the most recently requested first; callback numbers masked. Every role
    that reads calls sees them all: each is on an escalated call, which supervisors see too
    (users have no queues of their own yet)."""
    try:
        page = escalation_queries.list_escalations(
            session,
            filters=EscalationFilters(state=state, queue=queue),
            limit=limit,
            page_cursor=cursor,
        )
    except BadCursor as error:
        raise ApiError(400, str(error), code="bad_cursor") from None
    return EscalationPage(items=page.items, next_cursor=page.next_cursor)


@router.get("/{ref}", response_model=EscalationDetail)
def get_escalation(
    principal: CallReader, session: DbSession, ref: EscalationRef
) -> EscalationDetail:
    """One escalation with every transition: event, states, actor, time."""
    found = escalation_queries.get_escalation(session, ref)
    if found is None:
        raise not_found(f"escalation {ref}")
    return found
