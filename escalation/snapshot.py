"""The escalation service's live escalations, kept in a file so that a restarted service picks
up the callers it left on hold.

The service writes the file (atomically) after every transition; on start it reads it back and
asks each call's worker where the call stands (`telephony.commands.Status`). Times are on the
host's monotonic clock, which a process restart does not reset. Pure except `write` and `read`;
a file that cannot be read or parsed, or an entry that is malformed, is skipped with a warning —
it never stops the service.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from escalation.lifecycle import LIVE_STATES, Escalation, EscalationState

log = logging.getLogger(__name__)

__all__ = ["Saved", "dumps", "loads", "read", "write"]

VERSION = 1


@dataclass(frozen=True, slots=True)
class Saved:
    """One live escalation as saved: enough to rebuild it and find its call again."""

    call_id: str
    escalation_id: str
    line: str | None
    worker: int | None
    reason: str
    state: EscalationState
    requested_at: float
    queue: str | None
    supervisor_id: str | None

    def escalation(self) -> Escalation:
        return Escalation(
            call_id=self.call_id,
            reason=self.reason,
            state=self.state,
            requested_at=self.requested_at,
            queue=self.queue,
            supervisor_id=self.supervisor_id,
        )


def dumps(saved: list[Saved]) -> bytes:
    entries = [
        {
            "call_id": s.call_id,
            "escalation_id": s.escalation_id,
            "line": s.line,
            "worker": s.worker,
            "reason": s.reason,
            "state": s.state.value,
            "requested_at": s.requested_at,
            "queue": s.queue,
            "supervisor_id": s.supervisor_id,
        }
        for s in saved
    ]
    return json.dumps({"version": VERSION, "escalations": entries}).encode()


def loads(data: bytes) -> list[Saved]:
    """The live escalations in `data`; malformed entries are skipped (and logged)."""
    try:
        raw = json.loads(data)
    except ValueError as error:
        log.warning("escalation state file unreadable; starting empty", extra={"error": str(error)})
        return []
    if not isinstance(raw, dict) or raw.get("version") != VERSION:
        log.warning("escalation state file of an unknown version; starting empty")
        return []
    entries = raw.get("escalations")
    saved = []
    for entry in entries if isinstance(entries, list) else []:
        try:
            saved.append(_entry(entry))
        except (TypeError, ValueError, KeyError) as error:
            log.warning("escalation state entry skipped", extra={"error": str(error)[:200]})
    return saved


def _entry(entry: Any) -> Saved:
    state = EscalationState(entry["state"])
    if state not in LIVE_STATES:
        raise ValueError(f"{state.value} is not a live state")
    call_id, escalation_id, reason = entry["call_id"], entry["escalation_id"], entry["reason"]
    if not all(isinstance(v, str) and v for v in (call_id, escalation_id, reason)):
        raise ValueError("call_id, escalation_id and reason must be non-empty strings")
    worker, requested_at = entry.get("worker"), entry["requested_at"]
    if worker is not None and (not isinstance(worker, int) or isinstance(worker, bool)):
        raise ValueError("worker must be a number")
    if not isinstance(requested_at, int | float):
        raise ValueError("requested_at must be a number")
    return Saved(
        call_id=call_id,
        escalation_id=escalation_id,
        line=_optional_text(entry.get("line")),
        worker=worker,
        reason=reason,
        state=state,
        requested_at=float(requested_at),
        queue=_optional_text(entry.get("queue")),
        supervisor_id=_optional_text(entry.get("supervisor_id")),
    )


def _optional_text(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError("expected text")
    return value


def write(path: Path, saved: list[Saved]) -> None:
    """Writes the file so that a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".escalations-")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(dumps(saved))
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read(path: Path) -> list[Saved]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as error:
        log.warning("escalation state file unreadable", extra={"error": str(error)})
        return []
    return loads(data)
