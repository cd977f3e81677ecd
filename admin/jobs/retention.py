"""The retention purge: calls older than their line's retention are deleted, in batches.

A call is expired when it started more than `retention_days` ago (its line's, from
`jobs.lines`, else `jobs.retention_days`; a line marked `keep_forever` is never purged).
Its events, transcript, legs, escalations and metrics are deleted with it. A call on which a
disclosure was played is evidence of what the caller was told (the schema refuses to delete
it): it is anonymised instead. Everything personal goes (caller hash and mask, transcript,
events, legs, escalations); the call row with its times and outcome, its metrics and the
disclosure plays stay.

Each batch is one transaction that also appends an audit entry naming the calls it purged, so
the audit log says exactly what went, and a purge cut short loses nothing it has not recorded.
The audit log itself is never purged.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, not_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from admin import audit
from admin.jobs.config import JobsSettings
from admin.models import (
    Call,
    CallEventRecord,
    CallLeg,
    CallMetrics,
    DisclosurePlay,
    Escalation,
    Line,
    TranscriptSegment,
    TurnMetrics,
)

log = logging.getLogger("parley.jobs")

ACTOR = "jobs:retention"
ACTION = "calls.purged"


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

    def as_dict(self) -> dict[str, Any]:
        return {"deleted": self.deleted, "anonymised": self.anonymised, "by_line": self.by_line}


def scopes(lines: Sequence[tuple[int, str]], jobs: JobsSettings, now: dt.datetime) -> list[Scope]:
    """One scope per line whose calls expire, plus one for calls with no line."""
    found: list[Scope] = []
    for line_id, name in [*lines, (None, None)]:
        days = jobs.retention_for(name)
        if days is not None:
            found.append(Scope(line_id, name, days, now - dt.timedelta(days=days)))
    return found


def purge_expired(
    sessions: sessionmaker[Session], *, jobs: JobsSettings, audit_key: bytes, now: dt.datetime
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
                deleted, anonymised = _purge_batch(session, ids)
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
    return report


def _expired(scope: Scope) -> ColumnElement[bool]:
    line = Call.line_id.is_(None) if scope.line_id is None else Call.line_id == scope.line_id
    return and_(line, Call.started_at < scope.cutoff, not_(_anonymised()))


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


def _purge_batch(session: Session, ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """Deletes the calls without disclosure plays, anonymises those with; returns both lists."""
    with_plays = set(
        session.scalars(select(DisclosurePlay.call_id).where(DisclosurePlay.call_id.in_(ids)))
    )
    deleted = [call_id for call_id in ids if call_id not in with_plays]
    anonymised = [call_id for call_id in ids if call_id in with_plays]
    for table in (CallEventRecord, TranscriptSegment, CallLeg, Escalation):
        session.execute(delete(table).where(table.call_id.in_(ids)))
    for metrics in (TurnMetrics, CallMetrics):
        session.execute(delete(metrics).where(metrics.call_id.in_(deleted)))
    session.execute(delete(Call).where(Call.id.in_(deleted)))
    session.execute(
        update(Call).where(Call.id.in_(anonymised)).values(caller_hash=None, caller_masked=None)
    )
    return deleted, anonymised
