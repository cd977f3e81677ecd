"""Database and key settings, and the caller-number helpers (no database needed)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from admin import phone_numbers
from admin.keyfile import load_keys
from admin.settings import Settings


def test_the_database_defaults_to_sqlite_in_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PARLEY_CONFIG", raising=False)
    monkeypatch.delenv("PARLEY_DATABASE__URL", raising=False)
    assert Settings(data_dir=tmp_path).database_url() == f"sqlite:///{tmp_path}/parley.db"
    monkeypatch.setenv("PARLEY_DATABASE__URL", "postgresql://parley:pw@db.internal/parley")
    assert Settings().database_url() == "postgresql+psycopg://parley:pw@db.internal/parley"
    monkeypatch.setenv("PARLEY_DATABASE__URL", "mysql://db/parley")
    with pytest.raises(ValidationError, match="'mysql' is not supported"):
        Settings()


def test_keys_are_generated_once_into_an_owner_only_file(tmp_path: Path) -> None:
    path = tmp_path / "var" / "keys.json"
    first = load_keys(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keys(path) == first
    assert first.audit_hmac != first.number_hash and len(first.audit_hmac) >= 32
    assert "audit" not in repr(first) and first.audit_hmac.decode() not in repr(first)
    assert [p.name for p in path.parent.iterdir()] == ["keys.json"]  # no temporary file left


def test_configured_keys_win_and_leave_no_file(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        security={
            "audit_hmac_key": "a" * 32,
            "number_hash_key": "n" * 32,
            "jwt_signing_key": "j" * 32,
        },
    )
    keys = settings.keys()
    assert (keys.audit_hmac, keys.number_hash, keys.jwt_signing) == (
        b"a" * 32,
        b"n" * 32,
        b"j" * 32,
    )
    assert not (tmp_path / "keys.json").exists()
    assert "a" * 32 not in settings.model_dump_json()
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(security={"audit_hmac_key": "short"})


def test_a_key_file_from_before_the_token_key_gets_it_added(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text('{"audit_hmac_key": "a-old", "number_hash_key": "n-old"}')
    path.chmod(0o600)
    keys = load_keys(path)
    assert (keys.audit_hmac, keys.number_hash) == (b"a-old", b"n-old")  # kept as they were
    assert len(keys.jwt_signing) >= 32
    assert load_keys(path) == keys
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"]


def test_a_file_that_is_not_a_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    for content in ("[1, 2]", "{not json", '{"number_hash_key": "n"}'):
        path.write_text(content)
        path.chmod(0o600)
        with pytest.raises(ValueError, match="is not a Parley key file"):
            load_keys(path)


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    load_keys(path)
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_keys(path)


def test_numbers_hash_the_same_however_written() -> None:
    key = b"k" * 32
    assert phone_numbers.number_hash("+1 555-123.4567", key=key) == phone_numbers.number_hash(
        "+15551234567", key=key
    )
    assert phone_numbers.number_hash("+15551234567", key=key) != phone_numbers.number_hash(
        "+15551234567", key=b"j" * 32
    )


@pytest.mark.parametrize(
    ("number", "masked"),
    [("+15551234567", "+1******4567"), ("020 7946 0958", "0******0958"), ("100", "*00")],
)
def test_masks_show_only_the_ends(number: str, masked: str) -> None:
    assert phone_numbers.mask(number) == masked


@pytest.mark.parametrize("raw", ["anonymous", "", "+", "sip:alice@example.com", "1" * 21])
def test_what_is_not_a_number_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="not a phone number"):
        phone_numbers.normalize(raw)


def test_parley_config_hides_secrets(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PARLEY_DATA_DIR": str(tmp_path),
        "PARLEY_DATABASE__URL": "postgresql://parley:hunter2-db@db.internal/parley",
        "PARLEY_SECURITY__AUDIT_HMAC_KEY": "audit-" + "k" * 40,
    }
    env.pop("PARLEY_CONFIG", None)
    shown = subprocess.run(
        [sys.executable, "-m", "admin.cli", "config"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "db.internal" in shown
    assert "hunter2-db" not in shown and "audit-kkk" not in shown
