"""The audit log: an append-only chain where each entry's MAC covers the one before it.

mac = HMAC-SHA256(key, prev_mac + canonical JSON of the entry), with the key from
`security.audit_hmac_key`. Changing, inserting or deleting a row breaks the chain at that
point, and nobody without the key can forge a replacement. (Deleting the newest entries
leaves a shorter chain that still verifies; keeping the latest MAC elsewhere catches that.)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from admin.models import AuditEntry, utcnow

GENESIS = "0" * 64  # the prev_mac of the first entry


def append(
    session: Session,
    *,
    key: bytes,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Adds an entry at the end of the chain, in the session's transaction.

    On PostgreSQL concurrent appenders wait for each other; elsewhere the unique prev_mac makes
    a concurrent append fail (IntegrityError) instead of forking the chain.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE"))
    last = session.execute(
        select(AuditEntry.id, AuditEntry.mac).order_by(AuditEntry.id.desc()).limit(1)
    ).first()
    entry = AuditEntry(
        id=last.id + 1 if last else 1,
        at=utcnow(),
        actor=actor,
        action=action,
        target=target,
        # Stored as it will read back, so the MAC is computed over exactly what is kept.
        details=json.loads(json.dumps(dict(details or {}), allow_nan=False)),
        prev_mac=last.mac if last else GENESIS,
    )
    entry.mac = _mac(key, entry)
    session.add(entry)
    session.flush()
    return entry


def verify(session: Session, *, key: bytes) -> int | None:
    """The id of the first entry that does not fit the chain, or None when all of it does."""
    expected_prev = GENESIS
    entries = session.scalars(
        select(AuditEntry).order_by(AuditEntry.id).execution_options(yield_per=500)
    )
    for entry in entries:
        if entry.prev_mac != expected_prev or not hmac.compare_digest(entry.mac, _mac(key, entry)):
            return entry.id
        expected_prev = entry.mac
    return None


def mac_of(key: bytes, entry: AuditEntry) -> str:
    """The MAC `entry` must carry (for checking a copy of the chain, an evidence bundle's)."""
    return _mac(key, entry)


def _mac(key: bytes, entry: AuditEntry) -> str:
    return hmac.new(key, entry.prev_mac.encode() + _canonical(entry), hashlib.sha256).hexdigest()


def _canonical(entry: AuditEntry) -> bytes:
    fields = {
        "id": entry.id,
        "at": entry.at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "details": entry.details,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
