"""The jobs' pure parts: metric arithmetic, policies, schedules, backoff, request checks."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError, OperationalError

from admin.jobs.celery_app import beat_schedule, broker_config
from admin.jobs.config import JobsSettings, LineJobPolicy
from admin.jobs.errors import JobInputError
from admin.jobs.export import parse_request
from admin.jobs.retention import scopes
from admin.jobs.rollup import CallFacts, compute, percentile
from admin.jobs.tasks import backoff_s, is_transient
from admin.settings import Settings
from agent.pii import PiiKind

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def facts(**changes: object) -> CallFacts:
    values: dict[str, object] = {
        "started_at": T0,
        "ended_at": T0 + dt.timedelta(seconds=30),
        "turn_rows": 0,
        "voice_to_voice_ms": (),
        "agent_events": Counter(),
        "flush_reasons": Counter(),
    }
    values.update(changes)
    return CallFacts(**values)  # type: ignore[arg-type]


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([7], 95) == 7
    assert percentile([100, 200], 50) == 100
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile(list(range(1, 101)), 50) == 50


def test_compute_counts_barge_ins_less_backchannels() -> None:
    metrics = compute(
        facts(
            turn_rows=3,
            voice_to_voice_ms=(500, 300, 400),
            agent_events=Counter(barge_in=4, backchannel_ignored=1, end_of_turn=9),
            flush_reasons=Counter(barge_in=7),
        )
    )
    assert (metrics.duration_ms, metrics.turns, metrics.barge_ins, metrics.backchannels) == (
        30000,
        3,
        3,
        1,
    )
    assert (metrics.voice_to_voice_p50_ms, metrics.voice_to_voice_p95_ms) == (400, 500)


def test_compute_falls_back_to_events_and_flushes() -> None:
    metrics = compute(
        facts(agent_events=Counter(end_of_turn=2), flush_reasons=Counter(barge_in=1, hangup=3))
    )
    assert (metrics.turns, metrics.barge_ins, metrics.voice_to_voice_p50_ms) == (2, 1, None)


def test_compute_never_goes_negative() -> None:
    metrics = compute(
        facts(
            ended_at=T0 - dt.timedelta(seconds=1),
            agent_events=Counter(barge_in=1, backchannel_ignored=3),
        )
    )
    assert (metrics.duration_ms, metrics.barge_ins) == (0, 0)


def test_line_policies_fall_back_to_defaults() -> None:
    jobs = JobsSettings(
        retention_days=90,
        redact=[PiiKind.CARD],
        lines={
            "sales": LineJobPolicy(retention_days=7, redact=[]),
            "legal": LineJobPolicy(keep_forever=True),
            "support": LineJobPolicy(redact=[PiiKind.EMAIL, PiiKind.PHONE]),
        },
    )
    assert [jobs.retention_for(n) for n in ("sales", "legal", "support", "other", None)] == [
        7,
        None,
        90,
        90,
        90,
    ]
    assert jobs.redaction_for("sales") == frozenset()
    assert jobs.redaction_for("support") == {PiiKind.EMAIL, PiiKind.PHONE}
    assert jobs.redaction_for(None) == {PiiKind.CARD}
    assert JobsSettings().redaction_for("x") == set(PiiKind)


def test_retention_scopes() -> None:
    jobs = JobsSettings(retention_days=30, lines={"legal": LineJobPolicy(keep_forever=True)})
    found = scopes([(1, "legal"), (2, "sales")], jobs, T0)
    assert [(s.line_id, s.retention_days, s.cutoff) for s in found] == [
        (2, 30, T0 - dt.timedelta(days=30)),
        (None, 30, T0 - dt.timedelta(days=30)),
    ]


@pytest.mark.parametrize(
    "config",
    [
        {"purge_schedule": "every day"},
        {"purge_schedule": "30 3 * *"},
        {"retention_days": 0},
        {"redact": ["card", "iban"]},
        {"lines": {"x": {"retention_days": -1}}},
        {"unknown": 1},
        {"lines": {"x": {"retention_day": 5}}},
    ],
)
def test_bad_jobs_settings_are_refused(config: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(jobs=config)


def test_purge_schedule_becomes_a_crontab_or_a_clear_error(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, jobs={"purge_schedule": "15 2 * * 0"})
    schedule = beat_schedule(settings)
    entry = schedule["retention purge"]
    assert entry["task"] == "parley.purge_expired"
    assert entry["schedule"].hour == {2}
    heal = schedule["missing metrics"]  # rolls up calls whose post-call job was lost
    assert (heal["task"], heal["schedule"]) == ("parley.rollup_missing", 300.0)
    checkpoint = schedule["audit checkpoint"]  # the audit chain's head, signed, off the database
    assert (checkpoint["task"], checkpoint["schedule"]) == ("parley.audit_checkpoint", 300.0)
    with pytest.raises(ValueError, match="purge_schedule"):
        beat_schedule(Settings(data_dir=tmp_path, jobs={"purge_schedule": "61 3 * * *"}))


def test_broker_is_redis_only_when_configured(tmp_path: Path) -> None:
    embedded = broker_config(Settings(data_dir=tmp_path))
    assert embedded["broker_url"] == "filesystem://"
    assert embedded["result_backend"].startswith("db+sqlite:///")
    assert (tmp_path / "jobs" / "queue").is_dir()
    redis = broker_config(Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/3"))
    assert redis["broker_url"] == redis["result_backend"] == "redis://127.0.0.1:6379/3"


def test_backoff_doubles_within_a_cap(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, jobs={"retry_backoff_s": 1, "retry_backoff_max_s": 5})
    for retries, ceiling in [(0, 1), (1, 2), (2, 4), (3, 5), (10, 5)]:
        wait = backoff_s(settings, retries)
        assert ceiling / 2 <= wait <= ceiling


def test_transient_errors() -> None:
    lost = OperationalError("SELECT 1", {}, Exception("connection refused"))
    assert is_transient(lost)
    assert not is_transient(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not is_transient(JobInputError("bad"))
    assert not is_transient(ValueError("bad"))


def test_export_request_and_file_name() -> None:
    request = parse_request(
        start="2025-01-01T01:00:00+01:00",
        end="2025-02-01T00:00:00Z",
        format="jsonl",
        transcripts=True,
        line="sales/EU north",
    )
    assert request.start == T0
    assert (
        request.file_name()
        == "calls_20250101T000000Z_20250201T000000Z_sales_EU_north_transcripts.jsonl"
    )
    with pytest.raises(JobInputError, match="must be a line name"):
        parse_request(
            start="2025-01-01T00:00:00Z",
            end="2025-01-02T00:00:00Z",
            format="csv",
            transcripts=False,
            line=5,  # type: ignore[arg-type]
        )
