"""Parley's Celery tasks: thin wrappers that own a session, retry transient errors, and call
the job modules (rollup, redaction, export, retention), which know nothing of Celery.

Every task takes ids and plain values, never ORM objects; each run opens its own session and
closes it whatever happens. A transient database error (connection refused or lost, a lock
timeout, a serialization failure) is retried with exponential backoff; a `JobInputError` is
never retried.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from celery import Celery, Task
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from admin import audit
from admin import audit_checkpoint as checkpoints
from admin.db import create_engine, session_factory
from admin.jobs import export, redaction, retention, rollup
from admin.jobs.errors import JobInputError
from admin.settings import Settings

log = logging.getLogger("parley.jobs")

T = TypeVar("T")

# A call that ended less than this ago is left to the job its hangup queued.
HEAL_GRACE = dt.timedelta(seconds=60)
HEAL_BATCH = 500


class JobContext:
    """What the tasks of one worker process share: the settings and, made on first use (after
    the worker forks its children), the database engine."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None

    @property
    def sessions(self) -> sessionmaker[Session]:
        if self._sessions is None:
            self._engine = create_engine(self.settings.database_url())
            self._sessions = session_factory(self._engine)
        return self._sessions

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed at the end, rolled back on error, always closed."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def export_dir(self) -> Path:
        return self.settings.export_dir()


def is_transient(error: BaseException) -> bool:
    """Errors that may go away by themselves: the database was unreachable, busy or locked."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, OperationalError | InterfaceError | PoolTimeoutError)


def backoff_s(settings: Settings, retries: int) -> float:
    """The wait before retry number `retries + 1`: doubling, capped, with jitter so that jobs
    that failed together do not all come back at once."""
    jobs = settings.jobs
    ceiling = min(jobs.retry_backoff_max_s, jobs.retry_backoff_s * 2.0**retries)
    return ceiling * random.uniform(0.5, 1.0)


def _attempt(task: Task[Any, Any], context: JobContext, work: Callable[[], T]) -> T:
    try:
        return work()
    except JobInputError:
        raise
    except Exception as error:
        if not is_transient(error):
            raise
        countdown = backoff_s(context.settings, task.request.retries)
        log.warning(
            "job hit a transient database error; retrying",
            extra={
                "task": task.name,
                "task_id": task.request.id,
                "retry": task.request.retries + 1,
                "countdown_s": round(countdown, 2),
                "error": type(error).__name__,
            },
        )
        raise task.retry(
            exc=error, countdown=countdown, max_retries=context.settings.jobs.max_retries
        ) from error


def register_tasks(app: Celery, context: JobContext) -> None:
    """Defines Parley's tasks on `app`; their names are what `admin.jobs.enqueue` sends."""

    @app.task(name="parley.rollup_call", bind=True, throws=(JobInputError,))
    def rollup_call(self: Task[Any, Any], call_id: str) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            with context.session() as session:
                return rollup.rollup_call(session, call_id=call_id).as_dict()

        return _attempt(self, context, work)

    @app.task(name="parley.rollup_missing", bind=True, throws=(JobInputError,))
    def rollup_missing(self: Task[Any, Any]) -> dict[str, Any]:
        """Heals a lost post-call hook: rolls up ended calls that still have no metrics."""

        def work() -> dict[str, Any]:
            ended_before = dt.datetime.now(dt.UTC) - HEAL_GRACE
            with context.session() as session:
                missing = rollup.calls_missing_metrics(
                    session, ended_before=ended_before, limit=HEAL_BATCH
                )
            done = 0
            for call_id in missing:
                with context.session() as session:  # one call's failure spares the others
                    try:
                        rollup.rollup_call(session, call_id=call_id)
                        done += 1
                    except JobInputError as error:
                        log.warning(
                            "cannot roll up a call", extra={"call_id": call_id, "error": str(error)}
                        )
            if done:
                log.info("rolled up calls that had no metrics", extra={"calls": done})
            return {"found": len(missing), "rolled_up": done}

        return _attempt(self, context, work)

    @app.task(name="parley.redact_call", bind=True, throws=(JobInputError,))
    def redact_call(self: Task[Any, Any], call_id: str) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            with context.session() as session:
                report = redaction.redact_call(
                    session, call_id=call_id, policy=context.settings.jobs.redaction_for
                )
                return report.as_dict()

        return _attempt(self, context, work)

    @app.task(name="parley.export_calls", bind=True, throws=(JobInputError,))
    def export_calls(
        self: Task[Any, Any],
        start: str,
        end: str,
        *,
        format: str = "csv",
        transcripts: bool = False,
        line: str | None = None,
        actor: str = "jobs",
    ) -> dict[str, Any]:
        """Writes the export file, then audits it (`calls.exported`: who, what, the file's
        name and SHA-256): an export holds personal data."""
        request = export.parse_request(
            start=start, end=end, format=format, transcripts=transcripts, line=line
        )

        def progress(done: int, total: int, path: Path) -> None:
            meta = {"done": done, "total": total, "path": str(path)}
            self.update_state(state="PROGRESS", meta=meta)

        def work() -> dict[str, Any]:
            with context.session() as session:
                result = export.export_calls(
                    session, request, folder=context.export_dir(), progress=progress
                )
                audit.append(
                    session,
                    key=context.settings.keys().audit_hmac,
                    actor=str(actor)[:120],
                    action="calls.exported",
                    target=f"export:{result.path.name}",
                    details={
                        "from": start,
                        "to": end,
                        "line": line,
                        "format": format,
                        "transcripts": transcripts,
                        "calls": result.rows,
                        "sha256": hashlib.sha256(result.path.read_bytes()).hexdigest(),
                    },
                )
                return result.as_dict()

        return _attempt(self, context, work)

    @app.task(name="parley.audit_checkpoint", bind=True, throws=(JobInputError,))
    def audit_checkpoint(self: Task[Any, Any]) -> dict[str, Any]:
        """Appends a signed checkpoint of the audit chain's head to the checkpoint file (kept
        outside the database), unless the head has not moved since the last one."""

        def work() -> dict[str, Any]:
            settings = context.settings
            with context.session() as session:
                made = checkpoints.make(session, audit_key=settings.keys().audit_hmac)
            file = settings.checkpoint_file()
            written = checkpoints.append(file, made)
            return {"entry_id": made.entry_id, "written": written, "file": str(file)}

        return _attempt(self, context, work)

    @app.task(name="parley.purge_expired", bind=True, throws=(JobInputError,))
    def purge_expired(self: Task[Any, Any]) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            report = retention.purge_expired(
                context.sessions,
                jobs=context.settings.jobs,
                audit_key=context.settings.keys().audit_hmac,
                now=dt.datetime.now(dt.UTC),
                files=context.settings.data_files(),
            )
            return report.as_dict()

        return _attempt(self, context, work)
