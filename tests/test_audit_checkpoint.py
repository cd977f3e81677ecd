"""The audit chain held against signed checkpoints kept outside the database: a chain cut short
from the end, deleted, or rewritten by someone who holds the key is caught; so is an edited
checkpoint file. On both database backends, and through `parley audit`."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import delete, text
from sqlalchemy.orm import Session

from admin import audit, audit_checkpoint
from admin.models import AuditEntry
from tests.support import parley_command

pytest_plugins = ["tests.db_support"]


@contextmanager
def _triggers_off(session: Session) -> Iterator[None]:
    """What someone with the database's files or its superuser can do; the test's transaction
    is rolled back, triggers included."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL session_replication_role = replica"))
    else:
        session.execute(text("DROP TRIGGER audit_log_no_delete"))
    yield


def _entries(session: Session, key: bytes, count: int) -> None:
    for number in range(count):
        audit.append(session, key=key, actor="admin", action="test.entry", target=f"thing:{number}")


def test_a_chain_cut_short_deleted_or_rewritten_is_caught(
    session: Session, audit_key: bytes, tmp_path: Path
) -> None:
    _entries(session, audit_key, 5)
    file = tmp_path / "checkpoints.jsonl"
    made = audit_checkpoint.make(session, audit_key=audit_key)
    assert audit_checkpoint.append(file, made)
    assert not audit_checkpoint.append(file, made)  # the head has not moved: nothing written
    assert oct(file.stat().st_mode & 0o777) == "0o600"

    def verdict() -> audit_checkpoint.Verification:
        return audit_checkpoint.verify(session, audit_key=audit_key, checkpoint_file=file)

    assert verdict().ok and verdict().checkpoints == 1
    _entries(session, audit_key, 2)  # the chain grows past its checkpoint: still fine
    assert verdict().ok

    with _triggers_off(session):
        # Cut off the end, back to before the checkpoint: the chain alone still verifies.
        session.execute(delete(AuditEntry).where(AuditEntry.id > made.entry_id - 2))
        assert audit.verify(session, key=audit_key) is None
        cut = verdict()
        assert not cut.ok and cut.first_bad_id is None
        assert "entries were deleted from the end" in cut.problems[0]
        assert f"saw entry {made.entry_id}" in cut.problems[0]
        # All of it gone.
        session.execute(delete(AuditEntry))
        assert audit.verify(session, key=audit_key) is None
        assert "deleted from the end" in verdict().problems[0]
        # Written again by someone holding the key: a valid chain, but not the one checkpointed.
        _entries(session, audit_key, made.entry_id + 1)
        assert audit.verify(session, key=audit_key) is None
        rewritten = verdict()
        assert not rewritten.ok
        assert rewritten.problems == (
            f"entry {made.entry_id} is not the one the checkpoint of {made.at} saw: the chain "
            "was rewritten",
        )


def test_an_edited_checkpoint_file_is_caught(
    session: Session, audit_key: bytes, tmp_path: Path
) -> None:
    _entries(session, audit_key, 3)
    file = tmp_path / "checkpoints.jsonl"
    made = audit_checkpoint.make(session, audit_key=audit_key)
    audit_checkpoint.append(file, made)
    # Someone moves the checkpoint back to hide entries they will delete: the signature breaks.
    edited = json.loads(file.read_text()) | {"entry_id": 1}
    file.write_text(file.read_text() + json.dumps(edited) + "\n")
    # And one signed with another key.
    other = audit_checkpoint.make(session, audit_key=b"another-key-0123456789-0123456789")
    file.write_text(file.read_text() + other.to_json() + "\n" + "not json\n")
    result = audit_checkpoint.verify(session, audit_key=audit_key, checkpoint_file=file)
    assert not result.ok and result.checkpoints == 1
    assert result.problems == (
        "checkpoints.jsonl line 2 is not signed by the audit key",
        "checkpoints.jsonl line 3 is not signed by the audit key",
        "checkpoints.jsonl line 4 is not a checkpoint: Expecting value: line 1 column 1 (char 0)",
    )


def test_checkpoints_verify_offline_with_the_public_key_alone(
    session: Session, audit_key: bytes
) -> None:
    made = audit_checkpoint.make(session, audit_key=audit_key)
    public = audit_checkpoint.public_key_from_text(made.public_key)
    assert made.signed_by(public)
    assert audit_checkpoint.Checkpoint.from_json(made.to_json()) == made
    forged = audit_checkpoint.Checkpoint(**{**json.loads(made.to_json()), "entry_id": 99})
    assert not forged.signed_by(public)
    other = audit_checkpoint.signing_key(b"x" * 32).public_key()
    assert not made.signed_by(other)


def _parley(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return parley_command(env, *args, stdin="long enough pw\n")


def test_parley_audit_verify_names_what_was_done(tmp_path: Path) -> None:
    data, keys = tmp_path / "var", tmp_path / "keys"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env = clean | {"PARLEY_DATA_DIR": str(data), "PARLEY_KEYS_DIR": str(keys)}
    assert _parley(env, "db", "upgrade").returncode == 0
    for name in ("root", "ann"):  # each account made is an audit entry
        made = _parley(env, "users", "create", name, "--role", "admin")
        assert made.returncode == 0, made.stderr
    # The keys are not beside the database, and neither are the checkpoints.
    assert not (data / "keys.json").exists() and len(list(keys.glob("keys-*.json"))) == 1

    checkpoint = _parley(env, "audit", "checkpoint")
    assert checkpoint.returncode == 0, checkpoint.stderr
    assert "checkpoint: entry 2 at" in checkpoint.stdout
    [file] = keys.glob("audit-checkpoints-*.jsonl")
    verified = _parley(env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "audit log: 2 entries; checkpoints compared: 1" in verified.stdout
    assert "OK: every entry fits the chain" in verified.stdout
    public = _parley(env, "audit", "public-key").stdout.strip()
    assert public == json.loads(file.read_text())["public_key"]

    with sqlite3.connect(data / "parley.db") as database:
        database.execute("DROP TRIGGER audit_log_no_delete")
        database.execute("DELETE FROM audit_log WHERE id = 2")
    cut = _parley(env, "audit", "verify")
    assert cut.returncode == 1
    assert "audit log: 1 entries" in cut.stdout
    assert "FAILED: the chain ends at entry 1, but the checkpoint of" in cut.stdout
    assert "saw entry 2: entries were deleted from the end" in cut.stdout
    with sqlite3.connect(data / "parley.db") as database:
        database.execute("DROP TRIGGER audit_log_no_update")
        database.execute("UPDATE audit_log SET actor = 'mallory' WHERE id = 1")
    changed = _parley(env, "audit", "verify")
    assert changed.returncode == 1
    assert "FAILED: entry 1 does not fit the chain" in changed.stdout
