"""The audit log: read it newest first, and verify its hash chain."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from admin import audit
from admin.api import cursor
from admin.api.cursor import BadCursor, Position
from admin.api.deps import AuditReader, Context, DbSession
from admin.api.errors import ERROR_RESPONSES, ApiError
from admin.api.schemas import AuditEntryOut, AuditPage, AuditVerification
from admin.models import AuditEntry

router = APIRouter(prefix="/audit", tags=["audit"], responses=ERROR_RESPONSES)

_SORT = "-id"


@router.get("", response_model=AuditPage)
def list_entries(
    _principal: AuditReader,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    page_cursor: Annotated[str | None, Query(alias="cursor", max_length=512)] = None,
    target: Annotated[
        str | None,
        Query(max_length=200, description="only entries about this target, e.g. call:<id>"),
    ] = None,
) -> AuditPage:
    digest = cursor.query_digest(target=target)
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit + 1)
    if target is not None:
        query = query.where(AuditEntry.target == target)
    if page_cursor is not None:
        try:
            after = cursor.decode(page_cursor, sort=_SORT, digest=digest)
        except BadCursor as error:
            raise ApiError(400, str(error), code="bad_cursor") from None
        if not isinstance(after.id, int):
            raise ApiError(400, "the cursor is not one this API gave out", code="bad_cursor")
        query = query.where(AuditEntry.id < after.id)
    entries = session.scalars(query).all()
    items = [AuditEntryOut.model_validate(entry) for entry in entries[:limit]]
    next_cursor = None
    if len(entries) > limit:
        next_cursor = cursor.encode(Position(None, items[-1].id), sort=_SORT, digest=digest)
    return AuditPage(items=items, next_cursor=next_cursor)


@router.get("/verify", response_model=AuditVerification)
def verify(_principal: AuditReader, context: Context, session: DbSession) -> AuditVerification:
    """Walks the whole chain: ok, or the id of the first entry that was changed, inserted or
    follows a deleted one."""
    first_bad = audit.verify(session, key=context.keys.audit_hmac)
    entries = session.scalar(select(func.count()).select_from(AuditEntry)) or 0
    return AuditVerification(ok=first_bad is None, entries=entries, first_bad_id=first_bad)
