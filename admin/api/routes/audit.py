"""The audit log: read it newest first, and verify its hash chain."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import Field, StringConstraints, model_validator
from sqlalchemy import select

from admin import audit_checkpoint
from admin.api import cursor
from admin.api.cursor import BadCursor, Position
from admin.api.deps import AuditReader, Context, DbSession
from admin.api.errors import ERROR_RESPONSES, ApiError
from admin.api.schemas import AuditEntryOut, AuditPage, AuditVerification, Input, Timestamp
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
    """Walks the whole chain and holds it against the signed checkpoints: ok, or the id of the
    first entry that was changed, inserted or follows a deleted one, and every problem found
    (a chain cut short from the end, or rewritten, shows against the checkpoints)."""
    result = audit_checkpoint.verify(
        session, audit_key=context.keys.audit_hmac, checkpoint_file=context.checkpoint_file
    )
    return AuditVerification(
        ok=result.ok,
        entries=result.entries,
        first_bad_id=result.first_bad_id,
        checkpoints=result.checkpoints,
        problems=list(result.problems),
    )


class EvidenceIn(Input):
    call_ids: list[Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]] | None = Field(
        None, max_length=1000
    )
    start: Timestamp | None = Field(None, alias="from", description="calls started at or after")
    end: Timestamp | None = Field(None, alias="to", description="... and before")

    @model_validator(mode="after")
    def _one_scope(self) -> EvidenceIn:
        if (self.call_ids is None) == (self.start is None or self.end is None):
            raise ValueError("give call_ids, or both from and to")
        return self


@router.post(
    "/evidence",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}, "description": "the bundle"}},
)
def evidence_bundle(
    principal: AuditReader, context: Context, session: DbSession, body: EvidenceIn
) -> Response:
    """An evidence bundle of some calls (docs/compliance.md): JSON and CSV of each call's
    disclosures, consent, transcript, events, recording hashes and pauses, supervisor actions,
    the audit chain from the first entry about them to a signed checkpoint, and an HTML report.
    Check it offline with `parley audit verify-bundle`. The export is audited."""
    # Imported here, not at the top: importing the bundle builder (and with it
    # admin.api.call_queries) ahead of the other routes made the media workers' late frames
    # in the 20-call edge test go from 0 to 30-70 of 4,500 (cause not found; see issue 12).
    from admin import evidence

    if context.data_files is None:
        raise ApiError(503, "this API process does not know where exports go")
    scope: dict[str, object]
    if body.call_ids is not None:
        call_ids, scope = body.call_ids, {"calls": body.call_ids}
    else:
        assert body.start is not None and body.end is not None
        call_ids = evidence.calls_between(session, body.start, body.end)
        scope = {"from": body.start.isoformat(), "to": body.end.isoformat()}
    made = evidence.export(
        session,
        call_ids=call_ids,
        scope=scope,
        folder=context.data_files.exports,
        actor=principal.actor,
        audit_key=context.keys.audit_hmac,
        checkpoint_file=context.checkpoint_file,
    )
    return Response(
        made.path.read_bytes(),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{made.path.name}"'},
    )
