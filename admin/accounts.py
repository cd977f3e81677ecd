"""People and systems that use Parley: users, their roles and API keys, every change audited.

Shared by the API and the CLI (which is how the first admin gets in). The caller commits.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from admin import audit, credentials
from admin.models import ApiKey, Role, User, utcnow


class AccountConflict(ValueError):
    """The change would clash with what is stored (a taken name, the last admin)."""


def create_user(
    session: Session,
    *,
    username: str,
    role: Role,
    password: str | None,
    actor: str,
    audit_key: bytes,
) -> User:
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise AccountConflict(f"a user named {username!r} exists already")
    user = User(
        username=username,
        role=role,
        password_hash=credentials.hash_password(password) if password else None,
    )
    session.add(user)
    session.flush()
    audit.append(
        session,
        key=audit_key,
        actor=actor,
        action="user.create",
        target=f"user:{user.id}",
        details={"username": username, "role": role.value},
    )
    return user


def update_user(
    session: Session,
    *,
    user: User,
    actor: str,
    audit_key: bytes,
    role: Role | None = None,
    active: bool | None = None,
    password: str | None = None,
) -> User:
    """Changes what is given; refuses to leave Parley without an active admin."""
    changes: dict[str, object] = {}
    if role is not None and role != user.role:
        changes["role"] = role.value
    if active is not None and active != user.active:
        changes["active"] = active
    loses_admin = user.role is Role.ADMIN and user.active and ("role" in changes or not active)
    if loses_admin and _active_admins(session) <= 1:
        raise AccountConflict("this is the last active admin; make another admin first")
    if role is not None:
        user.role = role
    if active is not None:
        user.active = active
    if password is not None:
        user.password_hash = credentials.hash_password(password)
        changes["password"] = "changed"  # never the password itself
    if changes:
        audit.append(
            session,
            key=audit_key,
            actor=actor,
            action="user.update",
            target=f"user:{user.id}",
            details=changes,
        )
    return user


def issue_key(
    session: Session, *, user: User, name: str, actor: str, audit_key: bytes
) -> tuple[ApiKey, str]:
    """A new key for `user`: the row and the key in clear (shown once, never stored)."""
    key = credentials.issue_api_key(session, user=user, name=name)
    row = session.scalars(select(ApiKey).where(ApiKey.key_hash == credentials.api_key_hash(key)))
    api_key = row.one()
    audit.append(
        session,
        key=audit_key,
        actor=actor,
        action="api_key.create",
        target=f"api_key:{api_key.id}",
        details={"user": f"user:{user.id}", "name": name, "prefix": api_key.prefix},
    )
    return api_key, key


def revoke_key(session: Session, *, api_key: ApiKey, actor: str, audit_key: bytes) -> bool:
    """Revokes the key; False (and nothing audited) if it was revoked already."""
    if api_key.revoked_at is not None:
        return False
    api_key.revoked_at = utcnow()
    audit.append(
        session,
        key=audit_key,
        actor=actor,
        action="api_key.revoke",
        target=f"api_key:{api_key.id}",
        details={"prefix": api_key.prefix},
    )
    return True


def _active_admins(session: Session) -> int:
    query = select(func.count()).where(User.role == Role.ADMIN, User.active.is_(True))
    return session.scalar(query) or 0
