"""Legal holds, and erasing a caller (GDPR art. 17) from everything Parley keeps.

A legal hold names a call, or a caller by the keyed hash of their number (every call of theirs,
those still to come included). While it is active neither the retention purge nor erasure
touches what it covers. Holds are created and released, never deleted; both are audited.

Erasure takes a number as people write it, puts it in E.164 first (the line's country for a
national number) and finds the caller's calls by hash, also under the forms numbers were
stored in before E.164 (`phone_numbers.number_hashes`). It removes every trace — the calls and
everything recorded about them (events, transcript, legs, escalations, metrics, disclosure
plays, recording rows), the recording files, the quarantined spool lines of those calls, and
the export files that hold any of them — and the callback number the caller left on other
calls. What is left is a receipt (when, who asked, what went, the number's keyed hash) and an
audit entry. A caller under a legal hold is not erased: `HeldError` names the holds.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import ColumnElement, Engine, delete, exists, or_, select, update
from sqlalchemy.orm import Session

from admin import audit, phone_numbers
from admin.models import (
    Call,
    CallEventRecord,
    CallLeg,
    CallMetrics,
    DisclosurePlay,
    ErasureReceipt,
    Escalation,
    LegalHold,
    Recording,
    TranscriptSegment,
    TurnMetrics,
    utcnow,
)
from admin.spool import write_atomically
from agent.pii import DEFAULT_REGION

log = logging.getLogger(__name__)

HOLD_PLACED = "legal_hold.placed"
HOLD_RELEASED = "legal_hold.released"
ERASED = "caller.erased"
ERASURE_REFUSED = "caller.erasure_refused"


class HeldError(Exception):
    """What was asked is under a legal hold."""

    def __init__(self, holds: Sequence[int]) -> None:
        super().__init__(
            f"under legal hold {', '.join(f'#{h}' for h in holds)}: release the hold first"
        )
        self.holds = list(holds)


@dataclass(frozen=True, slots=True)
class Files:
    """The files outside the database that hold call data."""

    recordings: Path  # the recordings folder
    quarantine: Path  # the ingester's rejected.jsonl
    exports: Path  # the export folder


def held() -> ColumnElement[bool]:
    """True for a call an active hold covers (by its id, or its caller's hash)."""
    active = LegalHold.released_at.is_(None)
    return exists().where(
        active,
        or_(
            LegalHold.call_id == Call.id,
            (LegalHold.caller_hash.is_not(None)) & (LegalHold.caller_hash == Call.caller_hash),
        ),
    )


def place_hold(
    session: Session,
    *,
    reason: str,
    actor: str,
    audit_key: bytes,
    call_id: str | None = None,
    caller_number: str | None = None,
    number_key: bytes | None = None,
) -> LegalHold:
    """Places a hold on a call, or on every call of a caller's number (audited)."""
    if (call_id is None) == (caller_number is None):
        raise ValueError("a hold names either a call or a caller's number")
    caller_hash = caller_masked = None
    if caller_number is not None:
        assert number_key is not None
        caller_hash = phone_numbers.number_hash(caller_number, key=number_key)
        caller_masked = phone_numbers.mask(phone_numbers.e164(caller_number))
    hold = LegalHold(
        call_id=call_id,
        caller_hash=caller_hash,
        caller_masked=caller_masked,
        reason=reason,
        created_by=actor,
        created_at=utcnow(),
    )
    session.add(hold)
    session.flush()
    audit.append(
        session,
        key=audit_key,
        actor=actor,
        action=HOLD_PLACED,
        target=f"legal_hold:{hold.id}",
        details={
            "call_id": call_id,
            "caller_masked": caller_masked,
            "reason": reason,
        },
    )
    return hold


def release_hold(session: Session, *, hold_id: int, actor: str, audit_key: bytes) -> LegalHold:
    """Releases an active hold (audited); KeyError if there is none with that id, ValueError
    if it was released already."""
    hold = session.get(LegalHold, hold_id)
    if hold is None:
        raise KeyError(hold_id)
    if hold.released_at is not None:
        raise ValueError(f"legal hold #{hold_id} was released at {hold.released_at.isoformat()}")
    hold.released_at = utcnow()
    hold.released_by = actor
    audit.append(
        session,
        key=audit_key,
        actor=actor,
        action=HOLD_RELEASED,
        target=f"legal_hold:{hold.id}",
        details={"call_id": hold.call_id, "caller_masked": hold.caller_masked},
    )
    session.flush()
    return hold


def erase_caller(
    session: Session,
    *,
    number: str,
    actor: str,
    number_key: bytes,
    audit_key: bytes,
    files: Files,
    region: str = DEFAULT_REGION,
) -> ErasureReceipt:
    """Erases the caller with `number`; raises HeldError (audited) under a legal hold, and
    ValueError for a number that is none."""
    hashes = phone_numbers.number_hashes(number, key=number_key, region=region)
    subject = phone_numbers.number_hash(number, key=number_key, region=region)
    call_ids = list(session.scalars(select(Call.id).where(Call.caller_hash.in_(hashes))))
    holds = list(
        session.scalars(
            select(LegalHold.id).where(
                LegalHold.released_at.is_(None),
                or_(LegalHold.caller_hash.in_(hashes), LegalHold.call_id.in_(call_ids)),
            )
        )
    )
    if holds:
        audit.append(
            session,
            key=audit_key,
            actor=actor,
            action=ERASURE_REFUSED,
            target=f"subject:{subject[:16]}",
            details={"holds": holds, "calls": len(call_ids)},
        )
        raise HeldError(holds)
    removed: dict[str, object] = {}
    recordings = list(
        session.scalars(select(Recording.file).where(Recording.call_id.in_(call_ids)))
    )
    for table in (
        CallEventRecord,
        TranscriptSegment,
        CallLeg,
        Escalation,
        TurnMetrics,
        CallMetrics,
        DisclosurePlay,
        Recording,
    ):
        result = session.execute(delete(table).where(table.call_id.in_(call_ids)))
        removed[str(table.__tablename__)] = result.rowcount  # type: ignore[attr-defined]
    result = session.execute(delete(Call).where(Call.id.in_(call_ids)))
    removed["calls"] = result.rowcount  # type: ignore[attr-defined]
    # Holds that once covered the caller (all released, or erasure was refused above): the
    # audit log keeps their placing and release.
    result = session.execute(
        delete(LegalHold).where(
            or_(LegalHold.caller_hash.in_(hashes), LegalHold.call_id.in_(call_ids))
        )
    )
    removed["released_holds"] = result.rowcount  # type: ignore[attr-defined]
    # A callback number this caller left on someone else's call (a shared phone, say).
    cleared = session.execute(
        update(Escalation)
        .where(Escalation.callback_number_hash.in_(hashes))
        .values(callback_number_hash=None, callback_number_masked=None)
    )
    removed["callback_numbers"] = cleared.rowcount  # type: ignore[attr-defined]
    removed["recording_files"] = remove_files(files.recordings, recordings)
    removed["quarantined_lines"] = _drop_quarantined(files.quarantine, call_ids)
    removed["export_files"] = _remove_exports(files.exports, call_ids)
    receipt = ErasureReceipt(
        id=uuid.uuid4().hex,
        subject_hash=subject,
        requested_by=actor,
        erased_at=utcnow(),
        calls=len(call_ids),
        removed=removed,
    )
    session.add(receipt)
    audit.append(
        session,
        key=audit_key,
        actor=actor,
        action=ERASED,
        target=f"erasure:{receipt.id}",
        details={"calls": len(call_ids), "removed": removed},
    )
    session.flush()
    return receipt


_ERASED_TABLES = (
    "call_events",
    "transcript_segments",
    "call_legs",
    "escalations",
    "escalation_transitions",
    "turn_metrics",
    "call_metrics",
    "disclosure_plays",
    "recordings",
    "calls",
)


def remove_files(folder: Path, names: Iterable[str]) -> int:
    """Deletes the files `names` (their base names only) from `folder`; how many there were."""
    gone = 0
    for name in names:
        try:
            (folder / Path(name).name).unlink()
            gone += 1
        except FileNotFoundError:
            pass
    return gone


def drop_lines(path: Path, drop: Callable[[str], bool]) -> int:
    """Rewrites `path` (atomically) without the lines `drop` picks; how many went."""
    if not path.is_file():
        return 0
    kept: list[str] = []
    dropped = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if drop(line):
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        write_atomically(path, "".join(f"{line}\n" for line in kept))
    return dropped


def _drop_quarantined(path: Path, call_ids: Sequence[str]) -> int:
    """The quarantined lines of these calls go."""
    if not call_ids:
        return 0
    return drop_lines(path, lambda line: any(call_id in line for call_id in call_ids))


def _remove_exports(folder: Path, call_ids: Sequence[str]) -> list[str]:
    """Deletes every export file that holds one of these calls; the names of those deleted."""
    if not call_ids or not folder.is_dir():
        return []
    gone: list[str] = []
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        content = path.read_bytes()
        if any(call_id.encode() in content for call_id in call_ids):
            path.unlink()
            gone.append(path.name)
    return gone


def receipt_as_dict(receipt: ErasureReceipt) -> dict[str, object]:
    return {
        "id": receipt.id,
        "subject_hash": receipt.subject_hash,
        "requested_by": receipt.requested_by,
        "erased_at": receipt.erased_at.isoformat(),
        "calls": receipt.calls,
        "removed": json.loads(json.dumps(receipt.removed)),
    }


def scrub_freed_space(engine: Engine) -> None:
    """After an erasure has committed: on SQLite (which overwrites deleted rows, secure_delete)
    the write-ahead log that still holds the old pages is checkpointed and truncated; on
    PostgreSQL the tables are vacuumed, so the dead rows' space is reclaimed."""
    if engine.dialect.name == "sqlite":
        raw = engine.raw_connection()  # outside any transaction: a checkpoint cannot be in one
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            cursor.close()
        finally:
            raw.close()
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in _ERASED_TABLES:
            connection.exec_driver_sql(f"VACUUM {table}")
