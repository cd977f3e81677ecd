"""Legal holds and erasure: place and release holds (admins, auditors), erase a caller by
number (admins). Each is audited; an erasure a hold blocks is refused (409) and audited too."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select

from admin import erasure
from admin.api.deps import CallerEraser, Context, DbSession, HoldsManager
from admin.api.errors import ERROR_RESPONSES, ApiError, ErrorDetail, not_found
from admin.api.schemas import Input
from admin.models import Call, ErasureReceipt, LegalHold

router = APIRouter(tags=["compliance"], responses=ERROR_RESPONSES)


class HoldIn(Input):
    call_id: str | None = Field(None, pattern=r"^[0-9a-f]{32}$")
    caller_number: str | None = Field(None, min_length=3, max_length=40)
    reason: str = Field(min_length=3, max_length=500)

    @model_validator(mode="after")
    def _one_subject(self) -> HoldIn:
        if (self.call_id is None) == (self.caller_number is None):
            raise ValueError("name either call_id or caller_number")
        return self


class HoldOut(BaseModel):
    id: int
    call_id: str | None
    caller_masked: str | None
    reason: str
    created_by: str
    created_at: dt.datetime
    released_by: str | None
    released_at: dt.datetime | None
    active: bool


class ErasureIn(Input):
    caller_number: str = Field(min_length=3, max_length=40, description="as people write it")
    region: str = Field("US", pattern=r"^[A-Za-z]{2}$", description="for a national number")


class ReceiptOut(BaseModel):
    id: str
    subject_hash: str
    requested_by: str
    erased_at: dt.datetime
    calls: int
    removed: dict[str, object]


@router.get("/legal-holds", response_model=list[HoldOut])
def list_holds(_principal: HoldsManager, session: DbSession) -> list[HoldOut]:
    """Every hold, newest first; `active` until released."""
    holds = session.scalars(select(LegalHold).order_by(LegalHold.id.desc()))
    return [_hold(hold) for hold in holds]


@router.post("/legal-holds", response_model=HoldOut, status_code=201)
def place_hold(
    principal: HoldsManager, context: Context, session: DbSession, body: HoldIn
) -> HoldOut:
    """Keeps a call, or every call of a caller (present and future), from purge and erasure."""
    if body.call_id is not None and session.get(Call, body.call_id) is None:
        raise not_found(f"call {body.call_id}")
    try:
        hold = erasure.place_hold(
            session,
            reason=body.reason,
            actor=principal.actor,
            audit_key=context.keys.audit_hmac,
            call_id=body.call_id,
            caller_number=body.caller_number,
            number_key=context.keys.number_hash,
        )
    except ValueError as error:
        raise _invalid("caller_number", str(error)) from None
    session.commit()
    return _hold(hold)


@router.post("/legal-holds/{hold_id}/release", response_model=HoldOut)
def release_hold(
    principal: HoldsManager,
    context: Context,
    session: DbSession,
    hold_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
) -> HoldOut:
    try:
        hold = erasure.release_hold(
            session, hold_id=hold_id, actor=principal.actor, audit_key=context.keys.audit_hmac
        )
    except KeyError:
        raise not_found(f"legal hold {hold_id}") from None
    except ValueError as error:
        raise ApiError(409, str(error)) from None
    session.commit()
    return _hold(hold)


@router.post("/erasures", response_model=ReceiptOut, status_code=201)
def erase(
    principal: CallerEraser, context: Context, session: DbSession, body: ErasureIn
) -> ReceiptOut:
    """Erases a caller: every call of their number, what was recorded about them, their
    recording files, quarantined lines and the exports that hold them. Leaves a receipt and an
    audit entry. 409 while a legal hold covers them."""
    if context.data_files is None:
        raise ApiError(503, "this API process does not know where the data files are")
    try:
        receipt = erasure.erase_caller(
            session,
            number=body.caller_number,
            actor=principal.actor,
            number_key=context.keys.number_hash,
            audit_key=context.keys.audit_hmac,
            files=context.data_files,
            region=body.region.upper(),
        )
    except erasure.HeldError as error:
        session.commit()  # the refusal's audit entry
        raise ApiError(409, str(error)) from None
    except ValueError as error:
        raise _invalid("caller_number", str(error)) from None
    session.commit()
    erasure.scrub_freed_space(session.get_bind().engine)
    return ReceiptOut.model_validate(erasure.receipt_as_dict(receipt))


@router.get("/erasures", response_model=list[ReceiptOut])
def list_receipts(_principal: CallerEraser, session: DbSession) -> list[ReceiptOut]:
    receipts = session.scalars(select(ErasureReceipt).order_by(ErasureReceipt.erased_at.desc()))
    return [ReceiptOut.model_validate(erasure.receipt_as_dict(r)) for r in receipts]


def _hold(hold: LegalHold) -> HoldOut:
    return HoldOut(
        id=hold.id,
        call_id=hold.call_id,
        caller_masked=hold.caller_masked,
        reason=hold.reason,
        created_by=hold.created_by,
        created_at=hold.created_at,
        released_by=hold.released_by,
        released_at=hold.released_at,
        active=hold.released_at is None,
    )


def _invalid(field: str, message: str) -> ApiError:
    detail = ErrorDetail(loc=["body", field], message=message, type="value_error")
    return ApiError(422, "the request is not valid; see details", details=[detail])
