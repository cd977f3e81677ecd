"""Logging in (a bearer token for a username and password) and asking who you are."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm

from admin.api import audit_trail, auth
from admin.api.auth import Principal
from admin.api.deps import Context, CurrentPrincipal, DbSession
from admin.api.errors import ERROR_RESPONSES, not_authenticated
from admin.api.schemas import Me, TokenOut

log = logging.getLogger("parley.api")
router = APIRouter(prefix="/auth", tags=["auth"], responses=ERROR_RESPONSES)

_MAX_FIELD = 256


@router.post("/token", response_model=TokenOut)
def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    context: Context,
    session: DbSession,
) -> TokenOut:
    """OAuth2 password flow: a username and password (form fields) for a bearer token."""
    user = None
    if _plausible(form.username) and _plausible(form.password):
        user = auth.check_password(session, username=form.username, password=form.password)
    if user is None:
        log.info("login refused")
        raise not_authenticated("wrong username or password, or the user is inactive")
    issued = auth.issue_token(user, keys=context.keys, minutes=context.token_minutes)
    principal = Principal(user.id, user.username, user.role, "password")
    audit_trail.record(session, context, principal, action="auth.login", target=f"user:{user.id}")
    session.commit()
    return TokenOut(access_token=issued.token, expires_at=issued.expires_at)


@router.get("/me", response_model=Me)
def me(principal: CurrentPrincipal) -> Me:
    """The authenticated caller: any role."""
    return Me(
        id=principal.user_id, username=principal.username, role=principal.role, via=principal.via
    )


def _plausible(value: str) -> bool:
    return 0 < len(value) <= _MAX_FIELD and "\x00" not in value
