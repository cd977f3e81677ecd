"""The secret keys Parley generates for itself when none are configured.

They live in one JSON file readable only by its owner. The file is written completely before
it appears under its name, so processes that start together all read the same keys.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

_NAMES = ("audit_hmac_key", "number_hash_key")


@dataclass(frozen=True, slots=True)
class Keys:
    audit_hmac: bytes
    number_hash: bytes

    def __repr__(self) -> str:
        return "Keys(<hidden>)"


def load_keys(
    path: Path, *, audit_hmac_key: str | None = None, number_hash_key: str | None = None
) -> Keys:
    """The configured keys; any left unset come from `path`, created on first use."""
    if audit_hmac_key is None or number_hash_key is None:
        stored = _read_or_create(path)
        audit_hmac_key = audit_hmac_key or stored["audit_hmac_key"]
        number_hash_key = number_hash_key or stored["number_hash_key"]
    return Keys(audit_hmac=audit_hmac_key.encode(), number_hash=number_hash_key.encode())


def _read_or_create(path: Path) -> dict[str, str]:
    if not path.exists():
        _create(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PermissionError(
            f"{path} holds secret keys but others may read it (mode {mode:o}); "
            f"run: chmod 600 {path}"
        )
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        return {name: str(stored[name]) for name in _NAMES}
    except (ValueError, KeyError) as error:
        raise ValueError(
            f"{path} is not a Parley key file ({error}); restore it from a backup, or set "
            "security.audit_hmac_key and security.number_hash_key"
        ) from None


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    content = json.dumps({name: secrets.token_urlsafe(32) for name in _NAMES}, indent=1)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".keys-")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temp, path)  # fails if another process created the file first; theirs wins
        except FileExistsError:
            pass
    finally:
        os.unlink(temp)
