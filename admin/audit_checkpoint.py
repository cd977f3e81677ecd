"""Signed checkpoints of the audit chain's head, kept outside the database.

The chain (admin.audit) shows that no entry was changed or inserted, but a chain cut short, or
deleted and written again by someone holding the key, still verifies on its own. A checkpoint
records the chain's head — the last entry's id and MAC, and how many entries there were — signed
with an Ed25519 key derived from the audit key. Checkpoints are appended to a file that does not
live with the database (by default beside the keys, outside the data directory; an operator can
point it at write-once storage). Verifying the chain against them finds:

- a truncated chain: a checkpoint names an entry the chain no longer has;
- a rewritten chain: the entry a checkpoint names has another MAC now;
- a tampered checkpoint file: a line whose signature does not verify, or ids that go backwards.

The public key verifies checkpoints without the secret (`parley audit public-key`): an auditor
records it once, out of band, and checks bundles and checkpoint files with it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from admin import audit
from admin.models import AuditEntry

_SIGNING_CONTEXT = b"parley audit checkpoint signing key v1"
_FORMAT = "parley-audit-checkpoint-1"


def signing_key(audit_key: bytes) -> Ed25519PrivateKey:
    """The checkpoint signing key: derived from the audit key, so it needs no storage of its own
    and is the same in every process that holds the audit key."""
    seed = hmac.new(audit_key, _SIGNING_CONTEXT, hashlib.sha256).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_text(key: Ed25519PublicKey) -> str:
    """The public key as auditors write it down: 'ed25519:' and base64 of its 32 bytes."""
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "ed25519:" + base64.b64encode(raw).decode()


def public_key_from_text(text: str) -> Ed25519PublicKey:
    prefix, _, body = text.strip().partition(":")
    if prefix != "ed25519" or not body:
        raise ValueError("a public key reads 'ed25519:' followed by base64")
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(body, validate=True))
    except ValueError as error:
        raise ValueError(f"not an Ed25519 public key: {error}") from None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The chain's head at `at`: entries 1..`entry_id`, the last one's `mac`."""

    entry_id: int
    mac: str
    at: str
    public_key: str
    signature: str = ""

    def payload(self) -> bytes:
        fields = {
            "format": _FORMAT,
            "entry_id": self.entry_id,
            "mac": self.mac,
            "at": self.at,
            "public_key": self.public_key,
        }
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    def signed_by(self, key: Ed25519PublicKey) -> bool:
        try:
            key.verify(base64.b64decode(self.signature, validate=True), self.payload())
        except (InvalidSignature, ValueError):
            return False
        return True

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> Checkpoint:
        raw = json.loads(line)
        if not isinstance(raw, dict):
            raise ValueError("a checkpoint is a JSON object")
        entry_id, mac = raw.get("entry_id"), raw.get("mac")
        if not isinstance(entry_id, int) or isinstance(entry_id, bool) or entry_id < 0:
            raise ValueError("entry_id must be a whole number")
        texts = [raw.get(name) for name in ("mac", "at", "public_key", "signature")]
        if not all(isinstance(value, str) for value in texts):
            raise ValueError("mac, at, public_key and signature must be strings")
        return cls(entry_id, str(mac), *(str(value) for value in texts[1:]))


def make(session: Session, *, audit_key: bytes, now: dt.datetime | None = None) -> Checkpoint:
    """A signed checkpoint of the chain's head now (entry 0 and the genesis MAC when empty)."""
    last = session.execute(
        select(AuditEntry.id, AuditEntry.mac).order_by(AuditEntry.id.desc()).limit(1)
    ).first()
    key = signing_key(audit_key)
    unsigned = Checkpoint(
        entry_id=last.id if last else 0,
        mac=last.mac if last else audit.GENESIS,
        at=(now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).isoformat(timespec="seconds"),
        public_key=public_key_text(key.public_key()),
    )
    signature = base64.b64encode(key.sign(unsigned.payload())).decode()
    return Checkpoint(**{**asdict(unsigned), "signature": signature})


def append(path: Path, checkpoint: Checkpoint) -> bool:
    """Adds a checkpoint at the end of the file (created 0600), on disk before it returns;
    False when the file's last checkpoint already has this head (nothing was appended)."""
    if _last_line(path).startswith("{"):
        try:
            last = Checkpoint.from_json(_last_line(path))
        except ValueError:
            last = None
        if last is not None and (last.entry_id, last.mac) == (checkpoint.entry_id, checkpoint.mac):
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (checkpoint.to_json() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def _last_line(path: Path) -> str:
    try:
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - 4096))
            tail = file.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    lines = [line for line in tail.splitlines() if line.strip()]
    return lines[-1] if lines else ""


@dataclass(frozen=True, slots=True)
class CheckpointFile:
    checkpoints: tuple[Checkpoint, ...]
    problems: tuple[str, ...]  # lines that are no checkpoint, or not signed by the key


def read(path: Path, *, public_key: Ed25519PublicKey) -> CheckpointFile:
    """The checkpoints in `path` that are signed by `public_key`, and what is wrong with the
    rest. A missing file has none and no problem (no checkpoint was written yet)."""
    if not path.exists():
        return CheckpointFile((), ())
    found: list[Checkpoint] = []
    problems: list[str] = []
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                checkpoint = Checkpoint.from_json(line)
            except ValueError as error:
                problems.append(f"{path.name} line {number} is not a checkpoint: {error}")
                continue
            if not checkpoint.signed_by(public_key):
                problems.append(f"{path.name} line {number} is not signed by the audit key")
                continue
            if found and checkpoint.entry_id < found[-1].entry_id:
                problems.append(
                    f"{path.name} line {number} goes back to entry {checkpoint.entry_id} after "
                    f"{found[-1].entry_id}: the file was edited"
                )
                continue
            found.append(checkpoint)
    return CheckpointFile(tuple(found), tuple(problems))


@dataclass(frozen=True, slots=True)
class Verification:
    """The chain checked entry by entry and against the checkpoints."""

    entries: int
    first_bad_id: int | None  # the first entry that does not fit the chain
    checkpoints: int  # signed checkpoints compared
    problems: tuple[str, ...]  # everything found wrong, for people

    @property
    def ok(self) -> bool:
        return self.first_bad_id is None and not self.problems


def verify(session: Session, *, audit_key: bytes, checkpoint_file: Path | None) -> Verification:
    """Walks the chain (admin.audit.verify) and holds it against every checkpoint written."""
    first_bad = audit.verify(session, key=audit_key)
    entries = session.scalar(select(func.count()).select_from(AuditEntry)) or 0
    problems: list[str] = []
    if first_bad is not None:
        problems.append(
            f"entry {first_bad} does not fit the chain: it, or the entry before it, was "
            "changed, inserted or deleted"
        )
    compared: Sequence[Checkpoint] = ()
    if checkpoint_file is not None:
        public_key = signing_key(audit_key).public_key()
        written = read(checkpoint_file, public_key=public_key)
        problems += written.problems
        compared = written.checkpoints
        problems += _against(session, compared)
    return Verification(entries, first_bad, len(compared), tuple(problems))


def _against(session: Session, checkpoints: Sequence[Checkpoint]) -> list[str]:
    """Problems with the chain against its latest checkpoint. The earlier ones need no check of
    their own: each entry's MAC covers the one before it, so a chain that still holds the
    latest checkpoint's entry, and verifies, holds every earlier one too."""
    if not checkpoints or checkpoints[-1].entry_id == 0:
        return []
    latest = checkpoints[-1]
    last = session.scalar(select(func.max(AuditEntry.id))) or 0
    if latest.entry_id > last:
        return [
            f"the chain ends at entry {last}, but the checkpoint of {latest.at} saw entry "
            f"{latest.entry_id}: entries were deleted from the end"
        ]
    mac = session.scalar(select(AuditEntry.mac).where(AuditEntry.id == latest.entry_id))
    if mac != latest.mac:
        return [
            f"entry {latest.entry_id} is not the one the checkpoint of {latest.at} saw: the "
            "chain was rewritten"
        ]
    return []
