"""Calls: the filtered, paged list and one call with its transcript, plays, events and metrics."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi import Path as PathParam
from sqlalchemy import ColumnElement, select

from admin import phone_numbers
from admin.api import audit_trail, call_queries
from admin.api.auth import Principal
from admin.api.call_queries import CallFilters, Sort
from admin.api.cursor import BadCursor
from admin.api.deps import CallReader, Context, DbSession
from admin.api.errors import ERROR_RESPONSES, ApiError, ErrorDetail, not_found
from admin.api.roles import Permission
from admin.api.schemas import CallDetail, CallPage, Id, Timestamp
from admin.models import Outcome, Recording, RecordingState
from telephony.recording import RecordingError, decrypt, wav_bytes

router = APIRouter(prefix="/calls", tags=["calls"], responses=ERROR_RESPONSES)

CallId = Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$", description="the call's UUID hex")]


@router.get("", response_model=CallPage)
def list_calls(
    *,
    principal: CallReader,
    context: Context,
    session: DbSession,
    started_from: Annotated[
        Timestamp | None, Query(alias="from", description="started at or after (ISO 8601)")
    ] = None,
    started_to: Annotated[Timestamp | None, Query(alias="to", description="started before")] = None,
    line_id: Id | None = None,
    outcome: Outcome | None = None,
    escalated: Annotated[bool | None, Query(description="had an escalation")] = None,
    caller: Annotated[
        str | None,
        Query(max_length=64, description="the caller's number, any format; matched by hash"),
    ] = None,
    sort: Sort = "-started_at",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> CallPage:
    """Calls, newest first by default. Supervisors see live and escalated calls only."""
    filters = CallFilters(
        started_from=started_from,
        started_to=started_to,
        line_id=line_id,
        outcome=outcome,
        escalated=escalated,
        caller_hashes=_caller_hashes(caller, context.keys.number_hash) if caller else None,
    )
    try:
        page = call_queries.list_calls(
            session,
            filters=filters,
            sort=sort,
            limit=limit,
            page_cursor=cursor,
            scope=_scope(principal),
        )
    except BadCursor as error:
        raise ApiError(400, str(error), code="bad_cursor") from None
    return CallPage(items=page.items, next_cursor=page.next_cursor)


@router.get("/{call_id}", response_model=CallDetail)
def get_call(
    principal: CallReader, context: Context, session: DbSession, call_id: CallId
) -> CallDetail:
    """One call in full: legs, transcript (with what the caller heard of interrupted speech),
    disclosure plays, escalations, events (caller numbers masked), turn and call metrics, the
    recording's hashes and pauses. Every opening is audited (`call.read`)."""
    found = call_queries.get_call(session, call_id, scope=_scope(principal))
    if found is None:
        raise not_found(f"call {call_id}")
    audit_trail.record(session, context, principal, action="call.read", target=f"call:{call_id}")
    session.commit()
    return found


@router.get(
    "/{call_id}/recording",
    response_class=Response,
    responses={200: {"content": {"audio/wav": {}}, "description": "the recording, decrypted"}},
)
def get_recording(
    principal: CallReader, context: Context, session: DbSession, call_id: CallId
) -> Response:
    """The call's recording as a stereo WAV (caller left; agent, prompts or supervisor right),
    decrypted here and checked against its stored hash. Every listening is audited
    (`recording.read`); a recording that fails its check is refused (409)."""
    if call_queries.get_call(session, call_id, scope=_scope(principal)) is None:
        raise not_found(f"call {call_id}")
    found = session.scalar(select(Recording).where(Recording.call_id == call_id))
    if found is None or found.state is not RecordingState.FINISHED or context.recordings is None:
        raise not_found(f"a finished recording of call {call_id}")
    try:
        audio = decrypt(
            context.recordings.folder / Path(found.file).name, key=context.recordings.key
        )
    except FileNotFoundError:
        raise not_found(f"the recording file of call {call_id}") from None
    except RecordingError as error:
        raise ApiError(409, f"the recording does not verify: {error}") from None
    if hashlib.sha256(audio.pcm).hexdigest() != found.pcm_sha256:
        raise ApiError(409, "the recording does not match its stored SHA-256")
    audit_trail.record(
        session,
        context,
        principal,
        action="recording.read",
        target=f"call:{call_id}",
        details={"pcm_sha256": found.pcm_sha256},
    )
    session.commit()
    return Response(
        wav_bytes(audio),
        media_type="audio/wav",
        headers={"Content-Disposition": f'attachment; filename="{call_id}.wav"'},
    )


def _scope(principal: Principal) -> ColumnElement[bool] | None:
    if principal.may(Permission.READ_ALL_CALLS):
        return None
    return call_queries.supervisor_scope()


def _caller_hashes(caller: str, key: bytes) -> tuple[str, ...]:
    try:
        return tuple(phone_numbers.number_hashes(caller, key=key))
    except ValueError as error:
        detail = ErrorDetail(loc=["query", "caller"], message=str(error), type="value_error")
        raise ApiError(422, "the request is not valid; see details", details=[detail]) from None
