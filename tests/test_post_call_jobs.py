"""Metrics after each call: the ingester's hook queues them, and the schedule heals a lost hook."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from admin import schema
from admin.db import create_engine
from admin.event_pipeline import post_call_hook
from admin.jobs.celery_app import HEAL_TASK
from admin.jobs.config import JobsSettings
from admin.jobs.enqueue import send
from admin.jobs.rollup import calls_missing_metrics, rollup_call
from admin.models import Call, CallMetrics
from admin.settings import Settings
from tests.jobs_support import JobsWorker, add_call, add_turns, job_settings, running_worker

pytest_plugins = ["tests.db_support"]

NOW = dt.datetime.now(dt.UTC)


def test_ended_calls_without_metrics_are_found(session: Session) -> None:
    long_ago = NOW - dt.timedelta(minutes=10)
    missing = add_call(session, started_at=long_ago, seconds=30)
    rolled = add_call(session, started_at=long_ago, seconds=30)
    live = add_call(session, started_at=long_ago, seconds=None)
    just_ended = add_call(session, started_at=NOW - dt.timedelta(seconds=40), seconds=30)
    rollup_call(session, call_id=rolled.id)
    assert rolled.duration_sort_ms == 30_000  # what /calls sorts by
    found = calls_missing_metrics(session, ended_before=NOW - dt.timedelta(minutes=1), limit=100)
    assert missing.id in found
    assert not {rolled.id, live.id, just_ended.id} & set(found)


def test_the_hook_logs_and_carries_on_when_the_broker_is_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:9/0")  # nothing listens
    hook = post_call_hook(settings)
    with caplog.at_level(logging.WARNING, logger="admin.event_pipeline"):
        hook("a" * 32)  # must not raise: the ingester goes on storing events
    [record] = [r for r in caplog.records if "post-call jobs not queued" in r.getMessage()]
    assert record.__dict__["call_id"] == "a" * 32
    disabled = post_call_hook(Settings(data_dir=tmp_path, jobs=JobsSettings(enabled=False)))
    assert disabled("b" * 32) is None


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[JobsWorker]:
    url = f"sqlite:///{tmp_path / 'parley.db'}"
    schema.upgrade(url)
    with running_worker(job_settings(tmp_path, url), tmp_path) as running:
        yield running


def test_the_schedule_rolls_up_calls_whose_hook_was_lost(worker: JobsWorker) -> None:
    engine = create_engine(worker.settings.database_url())
    try:
        with Session(engine) as session, session.begin():
            call = add_call(session, started_at=NOW - dt.timedelta(minutes=5), seconds=20)
            add_turns(session, call, [380, 420])
            call_id = call.id
        result = worker.wait(send(worker.app, HEAL_TASK))
        assert result.successful(), worker.log()[-3000:]
        report = result.result
        assert isinstance(report, dict) and report["rolled_up"] >= 1
        with Session(engine) as session:
            metrics = session.get(CallMetrics, call_id)
            assert metrics is not None and metrics.turns == 2
            assert session.get_one(Call, call_id).duration_sort_ms == 20_000
    finally:
        engine.dispose()
