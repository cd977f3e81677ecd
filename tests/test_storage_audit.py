"""The audit log's hash chain finds the first entry that was changed or follows a gap."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from admin import audit
from admin.models import AuditEntry, ImmutableRowError

pytest_plugins = ["tests.db_support"]


def _append_five(session: Session, key: bytes) -> list[int]:
    return [
        audit.append(
            session,
            key=key,
            actor="ada",
            action="supervisor.barge",
            target=f"call:{n:032x}",
            details={"mode": "barge", "n": n, "note": "café"},
        ).id
        for n in range(5)
    ]


def _lift_append_only_guard(session: Session) -> None:
    """What someone with write access to the database would do first."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
    else:
        session.execute(text("DROP TRIGGER audit_log_no_update"))
        session.execute(text("DROP TRIGGER audit_log_no_delete"))


def test_an_intact_chain_verifies(session: Session, audit_key: bytes) -> None:
    assert audit.verify(session, key=audit_key) is None  # empty
    ids = _append_five(session, audit_key)
    session.commit()
    assert ids == [1, 2, 3, 4, 5]
    assert audit.verify(session, key=audit_key) is None
    assert audit.verify(session, key=b"another key") == 1


def test_an_edited_entry_is_named(session: Session, audit_key: bytes) -> None:
    _append_five(session, audit_key)
    _lift_append_only_guard(session)
    session.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE id = 3"))
    session.expire_all()
    assert audit.verify(session, key=audit_key) == 3


def test_edited_details_are_named(session: Session, audit_key: bytes) -> None:
    _append_five(session, audit_key)
    _lift_append_only_guard(session)
    session.execute(text("""UPDATE audit_log SET details = '{"mode": "monitor"}' WHERE id = 4"""))
    session.expire_all()
    assert audit.verify(session, key=audit_key) == 4


def test_the_entry_after_a_deleted_one_is_named(session: Session, audit_key: bytes) -> None:
    _append_five(session, audit_key)
    _lift_append_only_guard(session)
    session.execute(text("DELETE FROM audit_log WHERE id = 2"))
    session.expire_all()
    assert audit.verify(session, key=audit_key) == 3


def test_the_database_and_the_orm_refuse_to_change_entries(
    session: Session, audit_key: bytes
) -> None:
    _append_five(session, audit_key)
    for statement in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"):
        with pytest.raises(IntegrityError, match="append-only"), session.begin_nested():
            session.execute(text(statement))
    entry = session.get_one(AuditEntry, 1)
    with pytest.raises(ImmutableRowError, match="append-only"), session.begin_nested():
        entry.actor = "mallory"
        session.flush()
    with pytest.raises(ImmutableRowError, match="append-only"), session.begin_nested():
        session.delete(entry)
        session.flush()


def test_details_must_be_json(session: Session, audit_key: bytes) -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        audit.append(
            session, key=audit_key, actor="ada", action="x", target="y", details={"v": float("nan")}
        )
    with pytest.raises(TypeError, match="not JSON serializable"):
        audit.append(
            session, key=audit_key, actor="ada", action="x", target="y", details={"v": object()}
        )
