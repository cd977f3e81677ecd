"""API keys for systems: issue (the key is shown once), list, revoke. Admins only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy import select

from admin import accounts
from admin.api.deps import ApiKeysManager, Context, DbSession
from admin.api.errors import ERROR_RESPONSES, ApiError, ErrorDetail, not_found
from admin.api.schemas import ApiKeyIn, ApiKeyOut, IssuedApiKey
from admin.models import ApiKey, User

router = APIRouter(prefix="/api-keys", tags=["api keys"], responses=ERROR_RESPONSES)

KeyId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("", response_model=list[ApiKeyOut])
def list_keys(_principal: ApiKeysManager, session: DbSession) -> list[ApiKeyOut]:
    keys = session.scalars(select(ApiKey).join(User).order_by(ApiKey.created_at, ApiKey.id))
    return [_out(key) for key in keys]


@router.post("", response_model=IssuedApiKey, status_code=201)
def issue_key(
    principal: ApiKeysManager, context: Context, session: DbSession, body: ApiKeyIn
) -> IssuedApiKey:
    """A new key for a user (yourself by default). Keep it: it is not shown again."""
    user = session.get(User, body.user_id or principal.user_id)
    if user is None:
        detail = ErrorDetail(loc=["body", "user_id"], message="no such user", type="value_error")
        raise ApiError(422, "the request is not valid; see details", details=[detail])
    api_key, key = accounts.issue_key(
        session, user=user, name=body.name, actor=principal.actor, audit_key=context.keys.audit_hmac
    )
    session.commit()
    return IssuedApiKey(**_out(api_key).model_dump(), key=key)


@router.post("/{key_id}/revoke", response_model=ApiKeyOut)
def revoke_key(
    principal: ApiKeysManager, context: Context, session: DbSession, key_id: KeyId
) -> ApiKeyOut:
    """Revokes a key at once; revoking it again changes nothing."""
    api_key = session.get(ApiKey, key_id)
    if api_key is None:
        raise not_found(f"API key {key_id}")
    accounts.revoke_key(
        session, api_key=api_key, actor=principal.actor, audit_key=context.keys.audit_hmac
    )
    session.commit()
    return _out(api_key)


def _out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        user_id=key.user_id,
        username=key.user.username,
        name=key.name,
        prefix=key.prefix,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        revoked_at=key.revoked_at,
    )
