"""Users, roles and the secrets they hold: only hashes are stored."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from admin import credentials
from admin.models import Role, User, utcnow

pytest_plugins = ["tests.db_support"]


def test_an_api_key_finds_its_user_until_revoked(session: Session) -> None:
    user = User(username="ada", role=Role.SUPERVISOR)
    session.add(user)
    key = credentials.issue_api_key(session, user=user, name="dashboard")
    session.commit()

    assert credentials.user_for_api_key(session, key) is user
    assert user.api_keys[0].last_used_at is not None
    assert credentials.user_for_api_key(session, key + "x") is None
    stored = session.execute(text("SELECT prefix, key_hash FROM api_keys")).one()
    assert key.startswith(f"parley_{stored.prefix}_")
    assert stored.key_hash == credentials.api_key_hash(key) and key not in stored.key_hash

    user.api_keys[0].revoked_at = utcnow()
    assert credentials.user_for_api_key(session, key) is None


def test_an_inactive_users_keys_stop_working(session: Session) -> None:
    user = User(username="bob", role=Role.AUDITOR)
    session.add(user)
    key = credentials.issue_api_key(session, user=user, name="export")
    user.active = False
    assert credentials.user_for_api_key(session, key) is None


def test_roles_are_checked(session: Session) -> None:
    with pytest.raises(IntegrityError, match="ck_users_role"):
        session.execute(
            text(
                "INSERT INTO users (username, role, active, created_at) "
                "VALUES ('eve', 'root', true, '2026-01-01')"
            )
        )


def test_passwords_are_salted_scrypt_hashes() -> None:
    stored = credentials.hash_password("correct horse")
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert stored != credentials.hash_password("correct horse")  # salted
    assert credentials.verify_password("correct horse", stored)
    assert not credentials.verify_password("correct horse!", stored)
    assert not credentials.verify_password("correct horse", "garbage")
