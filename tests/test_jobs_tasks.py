"""The jobs through a real worker process on the real Redis broker, against PostgreSQL.

One worker serves the whole module. Its database connection runs through a TCP proxy that the
retry test cuts, as a database restart would.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from admin import audit
from admin import audit_checkpoint as checkpoints
from admin.db import create_engine
from admin.jobs.enqueue import EXPORT, PURGE, REDACT, ROLLUP, after_call, send
from admin.jobs.errors import JobInputError
from admin.models import (
    AuditEntry,
    Call,
    CallEventRecord,
    CallMetrics,
    DisclosurePlay,
    Redaction,
    Speaker,
    TranscriptSegment,
)
from tests.jobs_support import (
    AUDIT_KEY,
    REDIS_URL,
    JobsWorker,
    TcpProxy,
    add_call,
    add_disclosure_play,
    add_event,
    add_line,
    add_segment,
    add_turns,
    job_settings,
    postgres_database,
    require_redis,
    running_worker,
    through_proxy,
)

pytest_plugins = ["tests.db_support"]

VISA = "4111 1111 1111 1111"
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def database_url(postgres_server: Engine) -> Iterator[str]:
    with postgres_database(postgres_server) as url:
        yield url


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def proxy(database_url: str) -> Iterator[TcpProxy]:
    proxy = TcpProxy(("127.0.0.1", 5432))
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def line_names() -> dict[str, str]:
    suffix = str(time.monotonic_ns())
    return {k: f"{k}-{suffix}" for k in ("short", "long", "forever", "emails", "quiet")}


@pytest.fixture(scope="module")
def worker(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    proxy: TcpProxy,
    line_names: dict[str, str],
) -> Iterator[JobsWorker]:
    require_redis()
    folder = tmp_path_factory.mktemp("jobs-redis")
    lines = {
        line_names["short"]: {"retention_days": 30},
        line_names["long"]: {"retention_days": 3650},
        line_names["forever"]: {"keep_forever": True},
        line_names["emails"]: {"redact": ["email"]},
        line_names["quiet"]: {"redact": []},
    }
    config = job_settings(
        folder,
        through_proxy(database_url, proxy),
        redis_url=REDIS_URL,
        jobs={"lines": lines, "purge_batch": 2},
    )
    with running_worker(config, folder) as worker:
        yield worker


def run(worker: JobsWorker, name: str, *args: Any, **kwargs: Any) -> Any:
    result = worker.wait(send(worker.app, name, *args, **kwargs))
    assert result.successful(), f"{name} failed: {result.result!r}\n{worker.log()[-3000:]}"
    return result.result


def failure(worker: JobsWorker, name: str, *args: Any, **kwargs: Any) -> tuple[Any, int]:
    result = worker.wait(send(worker.app, name, *args, **kwargs))
    assert result.failed(), f"{name} did not fail: {result.result!r}"
    return result.result, result.retries or 0


# --- rollup -------------------------------------------------------------------------------------


def test_rollup_stores_metrics_and_a_rerun_leaves_the_same_row(
    worker: JobsWorker, engine: Engine
) -> None:
    with Session(engine) as session, session.begin():
        call = add_call(session, seconds=93.25)
        add_turns(session, call, [300, 500, 400, None, 900])
        for event in ["barge_in", "barge_in", "barge_in", "backchannel_ignored", "end_of_turn"]:
            add_event(session, call, "call.agent_event", {"event": event})
        add_event(session, call, "call.playout_flushed", {"reason": "barge_in"})
        add_event(session, call, "call.media_stats", {"rx": 10})
        call_id = call.id

    first = run(worker, ROLLUP, call_id)
    assert first == {
        "duration_ms": 93250,
        "turns": 5,
        "barge_ins": 2,
        "backchannels": 1,
        "voice_to_voice_p50_ms": 400,
        "voice_to_voice_p95_ms": 900,
    }
    with Session(engine) as session:
        row = session.get(CallMetrics, call_id)
        assert row is not None
        stored = (row.duration_ms, row.turns, row.barge_ins, row.computed_at)

    assert run(worker, ROLLUP, call_id) == first
    with Session(engine) as session:
        row = session.get(CallMetrics, call_id)
        assert row is not None
        assert (row.duration_ms, row.turns, row.barge_ins, row.computed_at) == stored


def test_rollup_without_turn_rows_counts_events_and_flushes(
    worker: JobsWorker, engine: Engine
) -> None:
    with Session(engine) as session, session.begin():
        call = add_call(session, seconds=10)
        add_event(session, call, "call.agent_event", {"event": "end_of_turn"})
        add_event(session, call, "call.agent_event", {"event": "end_of_turn"})
        add_event(session, call, "call.playout_flushed", {"reason": "barge_in"})
        add_event(session, call, "call.playout_flushed", {"reason": "hangup"})
        call_id = call.id
    metrics = run(worker, ROLLUP, call_id)
    assert (metrics["turns"], metrics["barge_ins"], metrics["voice_to_voice_p50_ms"]) == (
        2,
        1,
        None,
    )


@pytest.mark.parametrize(
    ("call_id", "message"),
    [
        ("not-a-call", "not a call id"),
        ("0" * 32, "not in the database"),
        (42, "not a call id"),
    ],
)
def test_rollup_refuses_bad_input_without_retrying(
    worker: JobsWorker, call_id: object, message: str
) -> None:
    error, retries = failure(worker, ROLLUP, call_id)
    assert isinstance(error, JobInputError)
    assert message in str(error)
    assert retries == 0


def test_rollup_of_a_call_still_going_is_refused(worker: JobsWorker, engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        call_id = add_call(session, seconds=None).id
    error, retries = failure(worker, ROLLUP, call_id)
    assert "has not ended" in str(error)
    assert retries == 0


# --- retries ------------------------------------------------------------------------------------


def test_a_database_outage_is_retried(worker: JobsWorker, engine: Engine, proxy: TcpProxy) -> None:
    with Session(engine) as session, session.begin():
        call = add_call(session)
        add_turns(session, call, [250])
        call_id = call.id
    run(worker, ROLLUP, call_id)  # the worker now holds a pooled connection through the proxy

    proxy.outage(refuse=2)  # the pooled connection dies; the next two connects are turned away
    result = worker.wait(send(worker.app, ROLLUP, call_id))

    assert result.successful(), worker.log()[-3000:]
    assert proxy.refused == 2
    assert result.retries == 2
    assert "retrying" in worker.log()


# --- redaction ----------------------------------------------------------------------------------


def _segments(engine: Engine, call_id: str) -> list[tuple[str, str | None, Redaction]]:
    with Session(engine) as session:
        rows = session.scalars(
            select(TranscriptSegment)
            .where(TranscriptSegment.call_id == call_id)
            .order_by(TranscriptSegment.start_ms)
        )
        return [(s.text, s.heard_text, s.redaction) for s in rows]


def test_redaction_by_line_policy_and_twice_is_the_same(
    worker: JobsWorker, engine: Engine, line_names: dict[str, str]
) -> None:
    said = f"card {VISA}, mail jane@example.com, call 415 555 0123"
    calls: dict[str, str] = {}
    with Session(engine) as session, session.begin():
        for name in ("default", "emails", "quiet"):
            line = add_line(session, line_names[name]) if name != "default" else None
            call = add_call(session, line=line)
            add_segment(session, call, said, start_ms=0)
            agent = add_segment(
                session, call, f"I read back {VISA}", start_ms=2000, speaker=Speaker.AGENT
            )
            agent.interrupted, agent.heard_text, agent.heard_ms = True, "I read back 4111 1111", 500
            add_segment(session, call, "thanks, bye", start_ms=4000)
            calls[name] = call.id

    report = run(worker, REDACT, calls["default"])
    assert report["segments"] == 3
    assert report["changed"] == 2  # the heard part is too short to be a card
    assert report["found"] == {"card": 2, "email": 1, "phone": 1}
    expected = [
        ("card [card], mail [email], call [phone]", None, Redaction.REDACTED),
        ("I read back [card]", "I read back 4111 1111", Redaction.REDACTED),
        ("thanks, bye", None, Redaction.REDACTED),
    ]
    assert _segments(engine, calls["default"]) == expected
    again = run(worker, REDACT, calls["default"])
    assert (again["changed"], again["found"]) == (0, {})
    assert _segments(engine, calls["default"]) == expected

    run(worker, REDACT, calls["emails"])
    assert _segments(engine, calls["emails"])[0][0] == (
        f"card {VISA}, mail [email], call 415 555 0123"
    )

    quiet = run(worker, REDACT, calls["quiet"])
    assert quiet["policy"] == []
    assert [state for *_, state in _segments(engine, calls["quiet"])] == [Redaction.NONE] * 3


def test_after_call_queues_rollup_and_redaction(worker: JobsWorker, engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        call = add_call(session)
        add_segment(session, call, "my email is bob@example.org")
        call_id = call.id
    rollup_id, redact_id = after_call(call_id, app=worker.app)
    for task_id in (rollup_id, redact_id):
        assert worker.wait(worker.app.AsyncResult(task_id)).successful()
    assert _segments(engine, call_id) == [("my email is [email]", None, Redaction.REDACTED)]
    with pytest.raises(ValueError, match="not a call id"):
        after_call("bad id", app=worker.app)


# --- export -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def export_calls(engine: Engine) -> list[str]:
    """450 calls in the first week of 2003 (nothing else is there), a transcript on the first."""
    base = dt.datetime(2003, 1, 1, tzinfo=dt.UTC)
    ids = []
    with Session(engine) as session, session.begin():
        for n in range(450):
            call = add_call(session, started_at=base + dt.timedelta(minutes=n))
            ids.append(call.id)
            if n == 0:
                add_segment(session, call, "hello, it's about my bill", start_ms=0)
                add_segment(
                    session, call, "Sure, one moment.", start_ms=1500, speaker=Speaker.AGENT
                )
        add_call(session, started_at=base - dt.timedelta(seconds=1))  # just outside the range
    return ids


def test_export_csv_of_a_range(worker: JobsWorker, engine: Engine, export_calls: list[str]) -> None:
    result = run(worker, EXPORT, "2003-01-01T00:00:00Z", "2003-01-08T00:00:00+00:00")
    path = Path(result["path"])
    assert (result["rows"], result["format"], path.name) == (
        450,
        "csv",
        "calls_20030101T000000Z_20030108T000000Z.csv",
    )
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert [row["call_id"] for row in rows] == export_calls
    assert rows[0]["started_at"] == "2003-01-01T00:00:00+00:00"
    assert rows[0]["caller"] == "+1******4567"
    assert "transcript" not in rows[0]
    assert not list(path.parent.glob("*.part"))
    assert path.stat().st_mode & 0o777 == 0o600  # exports hold personal data

    again = run(worker, EXPORT, "2003-01-01T00:00:00Z", "2003-01-08T00:00:00Z", actor="ann")
    assert again == result
    # Each export is audited: who, what range, how many calls, and the file's SHA-256.
    with Session(engine) as session:
        entries = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.target == f"export:{path.name}")
            .order_by(AuditEntry.id)
        ).all()
    assert [(e.actor, e.action) for e in entries][-2:] == [
        ("jobs", "calls.exported"),
        ("ann", "calls.exported"),
    ]
    assert entries[-1].details["calls"] == 450
    assert entries[-1].details["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_jsonl_reports_progress(
    worker: JobsWorker, engine: Engine, export_calls: list[str]
) -> None:
    # Holding a lock on the transcripts stops the export right after it has counted the calls
    # and said so; its progress can then be read while it waits.
    with engine.connect() as blocker:
        blocker.execute(text("LOCK TABLE transcript_segments IN ACCESS EXCLUSIVE MODE"))
        job = send(
            worker.app,
            EXPORT,
            "2003-01-01T00:00:00Z",
            "2003-01-08T00:00:00Z",
            format="jsonl",
            transcripts=True,
        )
        deadline = time.monotonic() + 20
        while str(job.state) != "PROGRESS" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert str(job.state) == "PROGRESS", worker.log()[-3000:]
        assert job.info["done"] == 0
        assert job.info["total"] == 450
        assert job.info["path"].endswith("_transcripts.jsonl")
        blocker.rollback()
    result: Any = worker.wait(job).result
    lines = Path(result["path"]).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["call_id"] for r in records] == export_calls
    assert [s["text"] for s in records[0]["transcript"]] == [
        "hello, it's about my bill",
        "Sure, one moment.",
    ]
    assert records[1]["transcript"] == []


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("2003-01-08T00:00:00Z", "2003-01-01T00:00:00Z"), {}, "range is empty"),
        (("2003-01-01", "2003-01-08T00:00:00Z"), {}, "no time zone"),
        (("yesterday", "2003-01-08T00:00:00Z"), {}, "not an ISO 8601 time"),
        (("2003-01-01T00:00:00Z", "2003-01-08T00:00:00Z"), {"format": "xlsx"}, "not one of"),
    ],
)
def test_export_refuses_bad_input(
    worker: JobsWorker, args: tuple[str, str], kwargs: dict[str, Any], message: str
) -> None:
    error, retries = failure(worker, EXPORT, *args, **kwargs)
    assert isinstance(error, JobInputError)
    assert message in str(error)
    assert retries == 0


# --- retention ----------------------------------------------------------------------------------


def test_purge_respects_each_lines_retention_and_audits(
    worker: JobsWorker, engine: Engine, line_names: dict[str, str]
) -> None:
    days = dt.timedelta(days=1)
    with Session(engine) as session, session.begin():
        short, long = add_line(session, line_names["short"]), add_line(session, line_names["long"])
        forever = add_line(session, line_names["forever"])
        expired = [add_call(session, line=short, started_at=NOW - 40 * days) for _ in range(3)]
        for call in expired:
            add_segment(session, call, "my card is " + VISA)
            add_event(session, call, "call.agent_event", {"event": "end_of_turn"})
            add_turns(session, call, [300])
        evidence = add_call(session, line=short, started_at=NOW - 50 * days)
        add_disclosure_play(session, evidence)
        add_segment(session, evidence, "yes that's fine")
        kept = [
            add_call(session, line=short, started_at=NOW - 10 * days),
            add_call(session, line=long, started_at=NOW - 40 * days),
            add_call(session, line=forever, started_at=NOW - 4000 * days),
            add_call(session, started_at=NOW - 4000 * days),  # no line: the 100-year default
        ]
        expired_ids, evidence_id = [c.id for c in expired], evidence.id
        kept_ids = [c.id for c in kept]
        last_audit = session.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()).limit(1))

    report = run(worker, PURGE)
    assert report["deleted"] == 3
    assert report["anonymised"] == 1
    assert report["by_line"] == {line_names["short"]: 4}

    with Session(engine) as session:
        assert all(session.get(Call, call_id) for call_id in kept_ids)
        assert not session.scalars(select(Call).where(Call.id.in_(expired_ids))).all()
        for table in (TranscriptSegment, CallEventRecord):
            gone = select(table).where(table.call_id.in_([*expired_ids, evidence_id]))
            assert not session.scalars(gone).all()
        stub = session.get(Call, evidence_id)
        assert stub is not None
        assert (stub.caller_hash, stub.caller_masked) == (None, None)
        plays = select(DisclosurePlay).where(DisclosurePlay.call_id == evidence_id)
        assert len(session.scalars(plays).all()) == 1

        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.id > (last_audit or 0)).order_by(AuditEntry.id)
        ).all()
        assert {e.action for e in entries} == {"calls.purged"}
        assert {e.target for e in entries} == {f"line:{line_names['short']}"}
        purged = [call_id for e in entries for call_id in e.details["deleted"]]
        anonymised = [call_id for e in entries for call_id in e.details["anonymised"]]
        assert sorted(purged) == sorted(expired_ids)
        assert anonymised == [evidence_id]
        assert all(e.details["retention_days"] == 30 for e in entries)
        assert len(entries) == 2  # batches of two calls, one entry each
        assert audit.verify(session, key=AUDIT_KEY.encode()) is None

    again = run(worker, PURGE)
    assert again == {"deleted": 0, "anonymised": 0, "by_line": {}}


def test_the_schedule_checkpoints_the_audit_chain_outside_the_database(
    worker: JobsWorker, engine: Engine
) -> None:
    with Session(engine) as session, session.begin():
        audit.append(
            session, key=AUDIT_KEY.encode(), actor="test", action="test.checkpoint", target="x:1"
        )
        head = session.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()).limit(1))
    report = run(worker, "parley.audit_checkpoint")
    assert report["entry_id"] == head and report["written"] is True
    file = Path(report["file"])
    assert file == worker.settings.checkpoint_file()
    assert worker.settings.data_dir not in file.parents  # not with the database
    assert run(worker, "parley.audit_checkpoint")["written"] is False  # nothing new to sign
    with Session(engine) as session:
        verdict = checkpoints.verify(session, audit_key=AUDIT_KEY.encode(), checkpoint_file=file)
    assert verdict.ok and verdict.checkpoints == 1
