"""Users: create, list, change role or password, deactivate. Admins only."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from admin import accounts
from admin.accounts import AccountConflict
from admin.api.deps import Context, DbSession, UsersManager
from admin.api.errors import ERROR_RESPONSES, conflict
from admin.api.path_rows import RowId, find_or_404
from admin.api.schemas import UserIn, UserOut, UserPatch
from admin.models import User

router = APIRouter(prefix="/users", tags=["users"], responses=ERROR_RESPONSES)


@router.get("", response_model=list[UserOut])
def list_users(_principal: UsersManager, session: DbSession) -> list[UserOut]:
    return [_out(user) for user in session.scalars(select(User).order_by(User.username))]


@router.post("", response_model=UserOut, status_code=201)
def create_user(
    principal: UsersManager, context: Context, session: DbSession, body: UserIn
) -> UserOut:
    try:
        user = accounts.create_user(
            session,
            username=body.username,
            role=body.role,
            password=body.password,
            actor=principal.actor,
            audit_key=context.keys.audit_hmac,
        )
    except AccountConflict as error:
        raise conflict(str(error)) from None
    session.commit()
    return _out(user)


@router.patch("/{user_id}", response_model=UserOut)
def update_user(
    principal: UsersManager, context: Context, session: DbSession, user_id: RowId, body: UserPatch
) -> UserOut:
    """Changes a user's role, password or whether they may log in. You cannot demote or
    deactivate yourself (ask another admin), nor leave Parley without an active admin."""
    user = find_or_404(session, User, user_id, what="user")
    if user.id == principal.user_id and (
        body.role not in (None, user.role) or body.active is False
    ):
        raise conflict("you cannot demote or deactivate yourself; ask another admin")
    try:
        accounts.update_user(
            session,
            user=user,
            role=body.role,
            active=body.active,
            password=body.password,
            actor=principal.actor,
            audit_key=context.keys.audit_hmac,
        )
    except AccountConflict as error:
        raise conflict(str(error)) from None
    session.commit()
    return _out(user)


def _out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        username=user.username,
        role=user.role,
        active=user.active,
        has_password=user.password_hash is not None,
        created_at=user.created_at,
    )
