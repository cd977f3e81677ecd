"""The no-server mode that `make run` uses: no Redis, a SQLite database, kombu's filesystem
broker and a SQLite result store, with a real worker process (and its schedule) running jobs."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from admin import schema
from admin.db import create_engine
from admin.jobs.enqueue import EXPORT, PURGE, after_call, send
from admin.models import AuditEntry, Call, CallMetrics, Redaction, TranscriptSegment
from tests.jobs_support import JobsWorker, add_call, add_segment, job_settings, running_worker


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobsWorker]:
    folder = tmp_path_factory.mktemp("jobs-embedded")
    url = f"sqlite:///{folder / 'parley.db'}"
    schema.upgrade(url)
    config = job_settings(folder, url, jobs={"beat": True})
    assert "redis_url" not in config
    with running_worker(config, folder) as worker:
        yield worker


def test_post_call_jobs_run_without_any_server(worker: JobsWorker) -> None:
    engine = create_engine(worker.settings.database_url())
    try:
        with Session(engine) as session, session.begin():
            call = add_call(session, seconds=12.5)
            add_segment(session, call, "my card is 4111 1111 1111 1111")
            call_id = call.id
        for task_id in after_call(call_id, app=worker.app):
            result = worker.wait(worker.app.AsyncResult(task_id))
            assert result.successful(), f"{result.result!r}\n{worker.log()[-3000:]}"
        with Session(engine) as session:
            metrics = session.get(CallMetrics, call_id)
            assert metrics is not None
            assert metrics.duration_ms == 12500
            [segment] = session.query(TranscriptSegment).filter_by(call_id=call_id).all()
            assert (segment.text, segment.redaction) == ("my card is [card]", Redaction.REDACTED)
    finally:
        engine.dispose()
    queue = Path(worker.settings.data_dir) / "jobs" / "queue"
    assert queue.is_dir()
    assert not list(queue.iterdir())  # every message file was taken and removed


def test_export_progress_and_result_are_stored_without_redis(worker: JobsWorker) -> None:
    result = worker.wait(send(worker.app, EXPORT, "2024-03-01T00:00:00Z", "2024-03-02T00:00:00Z"))
    assert result.successful(), worker.log()[-3000:]
    exported: Any = result.result
    assert exported["rows"] >= 1
    assert Path(exported["path"]).is_file()


def test_the_schedule_runs_inside_the_worker(worker: JobsWorker) -> None:
    deadline = time.monotonic() + 15
    while "beat: Starting" not in worker.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "beat: Starting" in worker.log(), worker.log()[-3000:]
    assert (Path(worker.settings.data_dir) / "jobs").is_dir()


def test_the_purge_runs_on_sqlite(worker: JobsWorker) -> None:
    engine = create_engine(worker.settings.database_url())
    try:
        with Session(engine) as session, session.begin():
            old = add_call(session, started_at=dt.datetime(1900, 1, 1, tzinfo=dt.UTC))
            add_segment(session, old, "call me at 415 555 0123")
            old_id = old.id
        result = worker.wait(send(worker.app, PURGE))
        assert result.successful(), worker.log()[-3000:]
        assert result.result == {"deleted": 1, "anonymised": 0, "by_line": {"(none)": 1}}
        with Session(engine) as session:
            assert session.get(Call, old_id) is None
            entry = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
            assert entry is not None
            assert entry.details["deleted"] == [old_id]
    finally:
        engine.dispose()
