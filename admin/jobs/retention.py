"""The retention purge: calls older than their line's retention are deleted, in batches.

A call is expired when it started more than `retention_days` ago (its line's, from
`jobs.lines`, else `jobs.retention_days`; a line marked `keep_forever` is never purged).
Its events, transcript, legs, escalations and metrics are deleted with it. A call on which a
disclosure was played is evidence of what the caller was told (the schema refuses to delete
it): it is anonymised instead. Everything personal goes (caller hash and mask, transcript,
events, legs, escalations); the call row with its times and outcome, its metrics and the
disclosure plays stay.

Parts of a call can go sooner than the call (`jobs.lines.<line>.recordings_days`,
`transcripts_days`, `events_days`, `metrics_days`): a recording's file goes with its row. Calls
under a legal hold (admin.erasure) are skipped by all of it.

Outside the calls: events whose call was never stored (orphans) go after the default
retention, as do quarantined spool lines; export files after `jobs.export_retention_days`.

Each batch is one transaction that also appends an audit entry naming the calls it purged, so
the audit log says exactly what went, and a purge cut short loses nothing it has not recorded.
The audit log itself is never purged.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, not_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from admin import audit
from admin.erasure import Files, drop_lines, held, remove_files
from admin.jobs.config import JobsSettings
from admin.models import (
    Call,
    CallEventRecord,
    CallLeg,
    CallMetrics,
    DisclosurePlay,
    Escalation,
    Line,
    Recording,
    TranscriptSegment,
    TurnMetrics,
)

log = logging.getLogger("parley.jobs")

ACTOR = "jobs:retention"
ACTION = "calls.purged"
PART_ACTION = "calls.parts_purged"
OUTSIDE_ACTION = "retention.purged"  # orphan events, quarantined lines, export files
# What of a call can go before the call, and the tables it is in.
PARTS: dict[str, tuple[type[Any], ...]] = {
    "recordings": (Recording,),
    "transcripts": (TranscriptSegment,),
    "events": (CallEventRecord,),
    "metrics": (TurnMetrics, CallMetrics),
}


@dataclass(frozen=True, slots=True)
class Scope:
    """The calls of one line (None: calls with no line) and when they expire."""

    line_id: int | None
    line_name: str | None
    retention_days: int
    cutoff: dt.datetime


@dataclass(slots=True)
class PurgeReport:
    deleted: int = 0
    anonymised: int = 0
    by_line: dict[str, int] = field(default_factory=dict)
    parts: dict[str, int] = field(default_factory=dict)  # calls whose part went, by part
    outside: dict[str, int] = field(default_factory=dict)  # orphans, lines, files

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "deleted": self.deleted,
            "anonymised": self.anonymised,
            "by_line": self.by_line,
        }
        if self.parts:
            found["parts"] = self.parts
        if self.outside:
            found["outside"] = self.outside
        return found


def scopes(lines: Sequence[tuple[int, str]], jobs: JobsSettings, now: dt.datetime) -> list[Scope]:
    """One scope per line whose calls expire, plus one for calls with no line."""
    found: list[Scope] = []
    for line_id, name in [*lines, (None, None)]:
        days = jobs.retention_for(name)
        if days is not None:
            found.append(Scope(line_id, name, days, now - dt.timedelta(days=days)))
    return found


def purge_expired(
    sessions: sessionmaker[Session],
    *,
    jobs: JobsSettings,
    audit_key: bytes,
    now: dt.datetime,
    files: Files | None = None,
) -> PurgeReport:
    with sessions() as session:
        lines = [(row.id, row.name) for row in session.execute(select(Line.id, Line.name))]
    report = PurgeReport()
    for scope in scopes(lines, jobs, now):
        while True:
            with sessions() as session, session.begin():
                ids = session.scalars(
                    select(Call.id)
                    .where(_expired(scope))
                    .order_by(Call.started_at, Call.id)
                    .limit(jobs.purge_batch)
                    # Two purges at once (PostgreSQL) take different calls, never the same twice.
                    .with_for_update(skip_locked=True)
                ).all()
                if not ids:
                    break
                deleted, anonymised = _purge_batch(session, ids, files)
                audit.append(
                    session,
                    key=audit_key,
                    actor=ACTOR,
                    action=ACTION,
                    target=f"line:{scope.line_name}" if scope.line_name else "line:(none)",
                    details={
                        "retention_days": scope.retention_days,
                        "cutoff": scope.cutoff.isoformat(),
                        "deleted": deleted,
                        "anonymised": anonymised,
                    },
                )
            report.deleted += len(deleted)
            report.anonymised += len(anonymised)
            key = scope.line_name or "(none)"
            report.by_line[key] = report.by_line.get(key, 0) + len(ids)
            log.info(
                "purged expired calls",
                extra={"line": key, "deleted": len(deleted), "anonymised": len(anonymised)},
            )
    # Then the parts of the calls that stay (whole calls went first, and are counted there).
    _purge_parts(sessions, lines, jobs=jobs, audit_key=audit_key, now=now, files=files, into=report)
    _purge_outside(sessions, jobs=jobs, audit_key=audit_key, now=now, files=files, into=report)
    return report


def _purge_parts(
    sessions: sessionmaker[Session],
    lines: Sequence[tuple[int, str]],
    *,
    jobs: JobsSettings,
    audit_key: bytes,
    now: dt.datetime,
    files: Files | None,
    into: PurgeReport,
) -> None:
    """Parts of calls whose line keeps them for less time than the call."""
    for line_id, name in lines:
        for part, tables in PARTS.items():
            days = jobs.part_retention_for(name, part)
            if days is None:
                continue
            cutoff = now - dt.timedelta(days=days)
            with sessions() as session, session.begin():
                has_part = or_(*[exists().where(t.call_id == Call.id) for t in tables])
                ids = list(
                    session.scalars(
                        select(Call.id).where(
                            Call.line_id == line_id,
                            Call.started_at < cutoff,
                            not_(held()),
                            has_part,
                        )
                    )
                )
                if not ids:
                    continue
                if part == "recordings" and files is not None:
                    names = session.scalars(
                        select(Recording.file).where(Recording.call_id.in_(ids))
                    )
                    remove_files(files.recordings, names)
                for table in tables:
                    session.execute(delete(table).where(table.call_id.in_(ids)))
                audit.append(
                    session,
                    key=audit_key,
                    actor=ACTOR,
                    action=PART_ACTION,
                    target=f"line:{name}",
                    details={"part": part, "retention_days": days, "calls": ids},
                )
            into.parts[part] = into.parts.get(part, 0) + len(ids)


def _purge_outside(
    sessions: sessionmaker[Session],
    *,
    jobs: JobsSettings,
    audit_key: bytes,
    now: dt.datetime,
    files: Files | None,
    into: PurgeReport,
) -> None:
    """Orphan events and quarantined lines after the default retention; export files after
    theirs. One audit entry says how much of each went."""
    cutoff = now - dt.timedelta(days=jobs.retention_days)
    found: dict[str, int] = {}
    with sessions() as session, session.begin():
        orphan = and_(
            CallEventRecord.occurred_at < cutoff,
            not_(exists().where(Call.id == CallEventRecord.call_id)),
        )
        result = session.execute(delete(CallEventRecord).where(orphan))
        found["orphan_events"] = int(result.rowcount or 0)  # type: ignore[attr-defined]
        if files is not None:
            found["quarantined_lines"] = _drop_old_lines(files.quarantine, cutoff)
            export_cutoff = now - dt.timedelta(days=jobs.export_retention_days)
            found["export_files"] = _drop_old_files(files.exports, export_cutoff)
        if any(found.values()):
            audit.append(
                session,
                key=audit_key,
                actor=ACTOR,
                action=OUTSIDE_ACTION,
                target="retention:outside-calls",
                details={
                    **found,
                    "cutoff": cutoff.isoformat(),
                    "export_retention_days": jobs.export_retention_days,
                },
            )
    into.outside = {key: value for key, value in found.items() if value}


def _drop_old_lines(path: Path, cutoff: dt.datetime) -> int:
    """Quarantined lines written before `cutoff` (each carries its time, `t`)."""

    def old(line: str) -> bool:
        try:
            written = float(json.loads(line).get("t", 0))
        except (ValueError, AttributeError, TypeError):
            written = 0.0  # unreadable: as old as can be
        return written < cutoff.timestamp()

    return drop_lines(path, old)


def _drop_old_files(folder: Path, cutoff: dt.datetime) -> int:
    if not folder.is_dir():
        return 0
    dropped = 0
    for path in folder.iterdir():
        if path.is_file() and path.stat().st_mtime < cutoff.timestamp():
            path.unlink(missing_ok=True)
            dropped += 1
    return dropped


def _expired(scope: Scope) -> ColumnElement[bool]:
    line = Call.line_id.is_(None) if scope.line_id is None else Call.line_id == scope.line_id
    return and_(line, Call.started_at < scope.cutoff, not_(_anonymised()), not_(held()))


def _anonymised() -> ColumnElement[bool]:
    """A call the purge already reduced to its evidence: nothing personal is left on it."""
    has = [
        exists().where(table.call_id == Call.id)
        for table in (TranscriptSegment, CallEventRecord, CallLeg, Escalation)
    ]
    return and_(
        exists().where(DisclosurePlay.call_id == Call.id),
        Call.caller_hash.is_(None),
        not_(or_(*has)),
    )


def _purge_batch(
    session: Session, ids: Sequence[str], files: Files | None
) -> tuple[list[str], list[str]]:
    """Deletes the calls without disclosure plays, anonymises those with; returns both lists.
    Their recordings go in both cases, files too."""
    with_plays = set(
        session.scalars(select(DisclosurePlay.call_id).where(DisclosurePlay.call_id.in_(ids)))
    )
    deleted = [call_id for call_id in ids if call_id not in with_plays]
    anonymised = [call_id for call_id in ids if call_id in with_plays]
    if files is not None:
        remove_files(
            files.recordings,
            session.scalars(select(Recording.file).where(Recording.call_id.in_(ids))),
        )
    for table in (CallEventRecord, TranscriptSegment, CallLeg, Escalation, Recording):
        session.execute(delete(table).where(table.call_id.in_(ids)))
    for metrics in (TurnMetrics, CallMetrics):
        session.execute(delete(metrics).where(metrics.call_id.in_(deleted)))
    session.execute(delete(Call).where(Call.id.in_(deleted)))
    session.execute(
        update(Call).where(Call.id.in_(anonymised)).values(caller_hash=None, caller_masked=None)
    )
    return deleted, anonymised
