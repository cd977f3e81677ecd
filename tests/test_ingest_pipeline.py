"""Nothing lost: events travel from a worker's spool to the database exactly once, through
database and Redis outages, a killed ingester, and garbage in the spool."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from admin import schema
from admin.db import create_engine
from admin.ingest import REJECTED_FILE, FileCarrier, RedisCarrier
from admin.models import Call, CallEventRecord, CallLeg, LegKind, Outcome
from admin.outbox import SpoolShipper
from admin.spool import Quarantine
from telephony.events import CallEvent, JsonlOutlet, spool_segments
from tests import ingest_support
from tests.ingest_support import (
    CALLER,
    NUMBER_KEY,
    Background,
    assert_projected_once,
    count,
    new_ingester,
    scripted_call,
    stored_count,
    wait_for,
)
from tests.private_servers import PrivatePostgres, PrivateRedis
from tests.support import PARLEY, PlatformConfig, Running, dial, start_worker

postgres, pg_engine = ingest_support.postgres, ingest_support.pg_engine


@pytest.fixture(scope="module")
def redis_server() -> Iterator[PrivateRedis]:
    with PrivateRedis() as server:
        yield server


def _outage_logs(caplog: pytest.LogCaptureFixture, what: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"{what} unavail")]


# --- (a) the database goes away mid-call ----------------------------------------------------


def test_postgres_stopped_mid_call_loses_nothing(
    postgres: PrivatePostgres, pg_engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    events = scripted_call()
    call_ids = [events[0].call_id]
    outlet = JsonlOutlet(tmp_path / "worker-0.jsonl")
    carrier = FileCarrier(tmp_path, poll_interval_s=0.05)
    running = Background(new_ingester(carrier, pg_engine, tmp_path))
    try:
        for event in events[:8]:
            outlet.emit(event)
        wait_for(lambda: count(pg_engine, call_ids) == 8, what="the first half")
        postgres.stop()
        for event in events[8:]:
            outlet.emit(event)
        time.sleep(1.0)  # the ingester retries against a dead server
        assert running.thread.is_alive()
        postgres.start()
        wait_for(lambda: count(pg_engine, call_ids) == len(events), what="the rest")
    finally:
        running.close()
        carrier.close()
        outlet.close()
    assert_projected_once(pg_engine, call_ids)
    assert len(_outage_logs(caplog, "database")) == 1  # once per outage, not per retry
    assert any("database is back" in r.getMessage() for r in caplog.records)


# --- (b) Redis goes away mid-call -----------------------------------------------------------


def test_redis_stopped_mid_call_loses_nothing(
    redis_server: PrivateRedis, pg_engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    stream = f"events-{uuid.uuid4().hex[:8]}"
    events = scripted_call()
    call_ids = [events[0].call_id]
    outlet = JsonlOutlet(tmp_path / "worker-0.jsonl")
    client = redis.Redis.from_url(redis_server.url, socket_timeout=2)
    shipper = SpoolShipper(
        tmp_path / "worker-0.jsonl",
        redis.Redis.from_url(redis_server.url, socket_timeout=2),
        stream=stream,
        poll_interval_s=0.05,
        max_backoff_s=0.3,
        quarantine=Quarantine(tmp_path / REJECTED_FILE),
    )
    shipper.start()
    carrier = RedisCarrier(
        redis.Redis.from_url(redis_server.url, socket_timeout=2),
        stream=stream,
        group="ingest",
        block_s=0.1,
    )
    running = Background(new_ingester(carrier, pg_engine, tmp_path))
    try:
        for event in events[:8]:
            outlet.emit(event)
        wait_for(lambda: count(pg_engine, call_ids) == 8, what="the first half")
        redis_server.stop()
        for event in events[8:]:
            outlet.emit(event)
        time.sleep(1.0)  # the spool holds them; both sides retry
        assert count(pg_engine, call_ids) == 8
        redis_server.start()
        wait_for(lambda: count(pg_engine, call_ids) == len(events), what="the rest")
        assert client.xlen(stream) == 0  # stored entries leave the stream
    finally:
        running.close()
        shipper.stop()
        outlet.close()
    assert_projected_once(pg_engine, call_ids)
    warned = [r.name for r in caplog.records if "redis unavailable" in r.getMessage()]
    assert sorted(warned) == ["admin.ingest", "admin.outbox"]  # once each, not per retry
    assert shipper.shipped == len(events)


# --- (c) an ingester killed mid-batch -------------------------------------------------------


def process_state(pid: int) -> str:
    """The state letter from /proc/<pid>/stat ("T" once a SIGSTOP has landed)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def test_an_ingester_killed_mid_batch_loses_and_repeats_nothing(
    redis_server: PrivateRedis, postgres: PrivatePostgres, pg_engine: Engine, tmp_path: Path
) -> None:
    stream = f"events-{uuid.uuid4().hex[:8]}"
    calls = [scripted_call() for _ in range(150)]
    call_ids = [call[0].call_id for call in calls]
    total = sum(len(call) for call in calls)
    outlet = JsonlOutlet(tmp_path / "var" / "events" / "worker-0.jsonl")
    for call in calls:
        for event in call:
            outlet.emit(event)
    outlet.close()
    client = redis.Redis.from_url(redis_server.url)
    shipper = SpoolShipper(
        outlet.spool,
        client,
        stream=stream,
        quarantine=Quarantine(tmp_path / REJECTED_FILE),
    )
    while shipper.ship_once():
        pass
    assert client.xlen(stream) == total
    client.xgroup_create(stream, "ingest", id="0")  # as the ingester would, so we can watch it

    config = {
        "data_dir": str(tmp_path / "var"),
        "database": {"url": postgres.url},
        "redis_url": redis_server.url,
        "security": {"number_hash_key": NUMBER_KEY.decode()},
        "events": {"stream": stream, "group": "ingest", "batch_size": 40, "claim_idle_s": 0.5},
    }
    (tmp_path / "parley.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env["PARLEY_CONFIG"] = str(tmp_path / "parley.yaml")
    log = (tmp_path / "ingest.log").open("wb")
    proc = subprocess.Popen([*PARLEY, "ingest"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:

        def frozen_mid_batch() -> bool:
            # Freeze the ingester first, then look: what we see is what the kill will leave.
            # (Looking first and killing after races an ack that lands in between.)
            proc.send_signal(signal.SIGSTOP)
            wait_for(lambda: process_state(proc.pid) == "T", what="the ingester to stop")
            pending = client.xpending(stream, "ingest")["pending"]
            if pending > 0 and 0 < count(pg_engine, call_ids) < total:
                return True
            proc.send_signal(signal.SIGCONT)
            return False

        wait_for(frozen_mid_batch, timeout=30, what="the ingester to be mid-batch")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        log.close()
    assert 0 < count(pg_engine, call_ids) < total, (tmp_path / "ingest.log").read_text()
    assert client.xpending(stream, "ingest")["pending"] > 0  # read, never acknowledged

    carrier = RedisCarrier(client, stream=stream, group="ingest", claim_idle_s=0.5, block_s=0.1)
    running = Background(new_ingester(carrier, pg_engine, tmp_path))
    try:
        wait_for(lambda: count(pg_engine, call_ids) == total, what="every event")
        wait_for(lambda: client.xlen(stream) == 0, what="the stream to empty")
    finally:
        running.close()
    assert client.xpending(stream, "ingest")["pending"] == 0
    assert_projected_once(pg_engine, call_ids)


# --- (d) the embedded carrier on SQLite -----------------------------------------------------


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'parley.db'}"
    schema.upgrade(url)
    engine = create_engine(url)
    yield engine
    engine.dispose()


def test_file_carrier_end_to_end_on_sqlite(sqlite_engine: Engine, tmp_path: Path) -> None:
    spool_dir = tmp_path / "events"
    calls = [scripted_call() for _ in range(6)]
    call_ids = [call[0].call_id for call in calls]
    outlets = [JsonlOutlet(spool_dir / f"worker-{i}.jsonl", segment_bytes=4096) for i in (0, 1)]
    for index, call in enumerate(calls):
        for event in call:
            outlets[index % 2].emit(event)
    assert len(spool_segments(outlets[0].spool)) > 1  # the spool rolled over
    ended: list[str] = []
    carrier = FileCarrier(spool_dir, poll_interval_s=0.01)
    ingester = new_ingester(
        carrier, sqlite_engine, tmp_path, batch_size=7, on_call_ended=ended.append
    )
    assert ingester.drain() == sum(len(call) for call in calls)
    assert sorted(ended) == sorted(call_ids)  # once per call
    assert_projected_once(sqlite_engine, call_ids)
    for outlet in outlets:  # stored segments are gone; the one being written stays
        assert [path for _, path in spool_segments(outlet.spool)] == [outlet.path]

    carrier.close()
    (spool_dir / "ingest-offsets.json").unlink()  # lose the offsets: everything is read again
    carrier = FileCarrier(spool_dir, poll_interval_s=0.01)
    again = new_ingester(carrier, sqlite_engine, tmp_path, on_call_ended=ended.append)
    assert again.drain() == 0
    assert len(ended) == len(calls)
    assert_projected_once(sqlite_engine, call_ids)
    with pytest.raises(RuntimeError, match="another ingester"):
        FileCarrier(spool_dir)
    carrier.close()
    for outlet in outlets:
        outlet.close()


# --- (e) garbage in the spool ---------------------------------------------------------------


def test_garbage_lines_are_reported_and_skipped(
    sqlite_engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool_dir = tmp_path / "events"
    spool_dir.mkdir()
    first, second = scripted_call()[:2]
    good = json.loads(first.to_json())
    secret = "+15550001111"  # personal data in a bad line must not reach the log
    garbage = [
        first.to_json(),
        first.to_json()[:40],  # torn
        json.dumps({**good, "event_id": uuid.uuid4().hex, "t_mono_ns": "soon", "note": secret}),
        json.dumps({**good, "event_id": uuid.uuid4().hex, "data": [secret]}),
        json.dumps({**good, "event_id": "not-hex", "kind": "call.started"}),
        json.dumps({**good, "event_id": uuid.uuid4().hex, "kind": "call.exploded"}),
        json.dumps({**good, "event_id": uuid.uuid4().hex, "t_wall": 1e300}),
        json.dumps([secret]),
        "",
        second.to_json(),
    ]
    segment = spool_dir / "worker-0.00000001.jsonl"
    segment.write_bytes("\n".join(garbage).encode() + b"\n\xff\xfe" + secret.encode() + b"\n")
    (spool_dir / "worker-0.00000002.jsonl").write_bytes(b'{"event_id": "torn at a crash')
    (spool_dir / "worker-0.00000003.jsonl").touch()  # the worker came back: 2 is complete
    caplog.set_level(logging.INFO)
    carrier = FileCarrier(spool_dir, poll_interval_s=0.01)
    assert new_ingester(carrier, sqlite_engine, tmp_path).drain() == 2
    carrier.close()
    with Session(sqlite_engine) as session:
        assert stored_count(session, [first.call_id]) == 2
        assert session.get_one(Call, first.call_id).answered_at is not None
    rejected = [json.loads(line) for line in (tmp_path / REJECTED_FILE).read_text().splitlines()]
    reasons = sorted(r["why"] for r in rejected)
    assert len(rejected) == 9, reasons
    assert "t_mono_ns is not a non-negative integer" in reasons
    assert "data is not a JSON object" in reasons
    assert "unknown kind" in reasons
    assert secret not in caplog.text
    assert not segment.exists()  # read to the end, stored, deleted


# --- (f) a real call, placed with `parley dial` ---------------------------------------------


def test_a_real_call_reaches_the_database(tmp_path: Path) -> None:
    config = PlatformConfig(tmp_path, extra={"security": {"number_hash_key": NUMBER_KEY.decode()}})
    url = f"sqlite:///{tmp_path / 'var' / 'parley.db'}"
    schema.upgrade(url)
    worker = start_worker(config)
    ingest = Running([*PARLEY, "ingest"], config, "ingest.log")
    engine = create_engine(url)
    try:
        summary = dial(f"sip:100@127.0.0.1:{config.worker_base_port}", tmp_path, hold=0.5)
        assert summary[0]["answered"], summary

        def call_ended() -> bool:
            with Session(engine) as session:
                return session.scalar(select(Call).where(Call.ended_at.is_not(None))) is not None

        wait_for(call_ended, what=f"the call in the database:\n{ingest.log()[-2000:]}")
    finally:
        assert ingest.stop() == 0, ingest.log()[-3000:]
        worker.stop()
    spooled: list[CallEvent] = config.events()
    with Session(engine) as session:
        call = session.scalars(select(Call)).one()
        assert (call.to_number, call.end_reason) == ("100", "hangup")
        assert call.answered_at is not None and call.outcome is Outcome.ABANDONED
        stored = session.scalars(
            select(CallEventRecord.event_id).where(CallEventRecord.call_id == call.id)
        ).all()
        assert sorted(stored) == sorted(e.event_id for e in spooled if e.call_id == call.id)
        legs = {leg.kind: leg for leg in session.scalars(select(CallLeg))}
        assert set(legs) == {LegKind.CALLER, LegKind.AGENT}
        assert legs[LegKind.CALLER].codec and legs[LegKind.CALLER].ended_at is not None
    engine.dispose()
    assert CALLER not in (tmp_path / "ingest.log").read_text()
