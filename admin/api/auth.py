"""Who is calling: a person with a bearer token, or a system with an API key.

Both resolve to an active user; a revoked key, an expired or forged token and a deactivated
user are all "not authenticated" (401), without saying which.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin import credentials
from admin.api import tokens
from admin.api.errors import ApiError, not_authenticated
from admin.api.roles import Permission, allows
from admin.keyfile import Keys
from admin.models import ApiKey, Role, User

# A real scrypt hash to check against when the user does not exist, so that a wrong username
# takes as long as a wrong password.
_DUMMY_HASH = credentials.hash_password("no user has this password")


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    username: str
    role: Role
    via: str  # "token" or "api_key:<prefix>"

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"user:{self.username}"

    def may(self, permission: Permission) -> bool:
        return allows(self.role, permission)


def authenticate(
    session: Session, *, keys: Keys, bearer: str | None, api_key: str | None
) -> Principal:
    """The caller behind the credentials; raises a 401 ApiError when there is none."""
    if api_key:
        return _by_api_key(session, api_key)
    if bearer:
        return _by_token(session, keys, bearer)
    raise not_authenticated("send a bearer token (POST /auth/token) or an X-API-Key header")


def require(principal: Principal, permission: Permission) -> Principal:
    if not principal.may(permission):
        raise ApiError(403, f"the {principal.role.value} role may not do this ({permission.value})")
    return principal


def recheck(session: Session, principal: Principal, permission: Permission) -> None:
    """For a connection that outlives its login (a WebSocket): raises 401 once the user is
    deactivated or gone, 403 once their role lost `permission`."""
    user = session.get(User, principal.user_id)
    if user is None or not user.active:
        raise ApiError(401, "the user is no longer active")
    if not allows(user.role, permission):
        raise ApiError(403, f"the {user.role.value} role may no longer do this ({permission})")


def check_password(session: Session, *, username: str, password: str) -> User | None:
    """The active user with this username and password, or None."""
    user = session.scalar(select(User).where(User.username == username))
    stored = user.password_hash if user is not None and user.password_hash else _DUMMY_HASH
    matches = credentials.verify_password(password, stored)
    if user is None or user.password_hash is None or not user.active or not matches:
        return None
    return user


def issue_token(user: User, *, keys: Keys, minutes: int) -> tokens.IssuedToken:
    return tokens.issue(user.id, key=keys.jwt_signing, minutes=minutes, now=dt.datetime.now(dt.UTC))


def _by_api_key(session: Session, key: str) -> Principal:
    user = credentials.user_for_api_key(session, key)
    if user is None:
        raise not_authenticated("the API key is unknown or revoked, or its user is inactive")
    prefix = session.scalar(
        select(ApiKey.prefix).where(ApiKey.key_hash == credentials.api_key_hash(key))
    )
    session.commit()  # keeps last_used_at
    return Principal(user.id, user.username, user.role, f"api_key:{prefix}")


def _by_token(session: Session, keys: Keys, token: str) -> Principal:
    try:
        user_id = tokens.user_id(token, key=keys.jwt_signing)
    except tokens.InvalidToken:
        raise not_authenticated("the token is invalid or expired; log in again") from None
    user = session.get(User, user_id) if 0 < user_id < 2**31 else None
    if user is None or not user.active:
        raise not_authenticated("the token's user no longer exists or is inactive")
    return Principal(user.id, user.username, user.role, "token")
