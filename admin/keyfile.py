"""The secret keys Parley generates for itself when none are configured.

They live in one JSON file readable only by its owner. The file is written completely before
it appears under its name, so processes that start together all read the same keys. A file from
before a key existed gets that key added on first use (under a lock, so every process agrees).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_NAMES = ("audit_hmac_key", "number_hash_key", "jwt_signing_key", "recording_key")
_FIRST_NAMES = ("audit_hmac_key", "number_hash_key")  # every Parley key file has these


@dataclass(frozen=True, slots=True)
class Keys:
    audit_hmac: bytes
    number_hash: bytes
    jwt_signing: bytes
    recording: bytes

    def __repr__(self) -> str:
        return "Keys(<hidden>)"


def load_keys(
    path: Path,
    *,
    audit_hmac_key: str | None = None,
    number_hash_key: str | None = None,
    jwt_signing_key: str | None = None,
    recording_key: str | None = None,
) -> Keys:
    """The configured keys; any left unset come from `path`, created on first use."""
    configured = {
        "audit_hmac_key": audit_hmac_key,
        "number_hash_key": number_hash_key,
        "jwt_signing_key": jwt_signing_key,
        "recording_key": recording_key,
    }
    if None in configured.values():
        stored = _read_or_create(path)
        configured = {name: value or stored[name] for name, value in configured.items()}
    keys = {name: str(value).encode() for name, value in configured.items()}
    return Keys(
        audit_hmac=keys["audit_hmac_key"],
        number_hash=keys["number_hash_key"],
        jwt_signing=keys["jwt_signing_key"],
        recording=keys["recording_key"],
    )


def keys_home() -> Path:
    """The folder keys files go in by default: $PARLEY_KEYS_DIR, else the user's configuration
    folder ($XDG_CONFIG_HOME or ~/.config) / parley."""
    configured = os.environ.get("PARLEY_KEYS_DIR")
    if configured:
        return Path(configured).expanduser()
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "parley"


def move_legacy_keys(legacy: Path, path: Path) -> bool:
    """Moves a keys file an earlier Parley kept beside the database to `path`; True when it
    did. Another process moving it at the same time wins; its move counts."""
    if path.exists() or not legacy.is_file():
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.link(legacy, path)
    except FileExistsError:
        return False
    except FileNotFoundError:
        return False  # moved by the other process
    except OSError:
        # another filesystem: copy completely, then appear under the name
        _write(path, _read(legacy), replace=False)
    legacy.unlink(missing_ok=True)
    log.warning(
        "the keys file moved away from the database",
        extra={"from": str(legacy), "to": str(path)},
    )
    return True


def _read_or_create(path: Path) -> dict[str, str]:
    if not path.exists():
        _write(path, {name: secrets.token_urlsafe(32) for name in _NAMES}, replace=False)
    stored = _read(path)
    if any(name not in stored for name in _NAMES):
        stored = _add_missing(path)
    return stored


def _read(path: Path) -> dict[str, str]:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PermissionError(
            f"{path} holds secret keys but others may read it (mode {mode:o}); "
            f"run: chmod 600 {path}"
        )
    try:
        stored: object = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        stored = None
    if not isinstance(stored, dict) or any(name not in stored for name in _FIRST_NAMES):
        raise ValueError(
            f"{path} is not a Parley key file; restore it from a backup, or set the keys under "
            "security in the settings"
        )
    return {name: str(stored[name]) for name in _NAMES if name in stored}


def _add_missing(path: Path) -> dict[str, str]:
    """Adds the keys a file from an older Parley lacks; the existing ones never change."""
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)  # the first process adds them, the others read them
        stored = _read(path)
        missing = [name for name in _NAMES if name not in stored]
        if missing:
            stored |= {name: secrets.token_urlsafe(32) for name in missing}
            _write(path, stored, replace=True)
        return stored
    finally:
        os.close(folder)  # releases the lock


def _write(path: Path, keys: dict[str, str], *, replace: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    content = json.dumps(keys, indent=1)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".keys-")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(temp, path)
            return
        try:
            os.link(temp, path)  # fails if another process created the file first; theirs wins
        except FileExistsError:
            pass
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
