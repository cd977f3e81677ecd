"""The event path survives faults: a Redis that answers with errors, a spool on a full disk, a
poison event, a database that cannot run the ingester's statements. Real parts throughout: a
private redis-server and PostgreSQL made to fail the way they fail in production, a tmpfs
that is really full."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from admin import schema
from admin.db import create_engine
from admin.ingest import REJECTED_FILE, FileCarrier, RedisCarrier
from admin.models import CallEventRecord
from admin.outbox import SpoolShipper
from admin.projection import Projection
from admin.spool import Quarantine, decode_event
from telephony.events import CallEvent, CallEventKind, JsonlOutlet, read_events, spool_segments
from tests import ingest_support
from tests.ingest_support import (
    AUDIT_KEY,
    NUMBER_KEY,
    Background,
    assert_projected_once,
    count,
    new_ingester,
    quarantined,
    scripted_call,
    wait_for,
)
from tests.private_servers import PrivateRedis, Refusal
from tests.support import PlatformConfig, dial, start_worker

postgres, pg_engine = ingest_support.postgres, ingest_support.pg_engine


@pytest.fixture
def redis_server() -> Iterator[PrivateRedis]:
    with PrivateRedis() as server:  # one per test: each leaves it refusing in its own way
        yield server


def _shipper(spool: Path, server: PrivateRedis, stream: str, tmp: Path) -> SpoolShipper:
    return SpoolShipper(
        spool,
        redis.Redis.from_url(server.url, socket_timeout=2),
        stream=stream,
        poll_interval_s=0.05,
        max_backoff_s=0.3,
        quarantine=Quarantine(tmp / REJECTED_FILE),
    )


def _redis_carrier(server: PrivateRedis, stream: str) -> RedisCarrier:
    client = redis.Redis.from_url(server.url, socket_timeout=2)
    return RedisCarrier(client, stream=stream, group="ingest", block_s=0.1)


def _messages(caplog: pytest.LogCaptureFixture, logger: str, start: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == logger and r.getMessage().startswith(start)
    ]


# --- (a) Redis answers with errors: OOM, MISCONF, READONLY ----------------------------------


@pytest.mark.parametrize("refusal", ["oom", "misconf", "readonly"])
def test_redis_refusing_writes_stalls_shipping_and_loses_nothing(
    refusal: Refusal,
    redis_server: PrivateRedis,
    pg_engine: Engine,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    stream = f"events-{uuid.uuid4().hex[:8]}"
    calls = [scripted_call() for _ in range(2)]
    call_ids = [call[0].call_id for call in calls]
    events = [event for call in calls for event in call]
    half = len(events) // 2
    outlet = JsonlOutlet(tmp_path / "worker-0.jsonl")
    shipper = _shipper(outlet.spool, redis_server, stream, tmp_path)
    shipper.start()
    running = Background(new_ingester(_redis_carrier(redis_server, stream), pg_engine, tmp_path))
    client = redis.Redis.from_url(redis_server.url)
    try:
        for event in events[:half]:
            outlet.emit(event)
        wait_for(lambda: count(pg_engine, call_ids) == half, what="the first half")
        redis_server.refuse_writes(refusal)
        for event in events[half:]:
            outlet.emit(event)
        wait_for(lambda: shipper.stalled_since is not None, what="the shipper to stall")
        time.sleep(1.0)  # several retries against the refusing server
        assert shipper.alive and running.thread.is_alive()
        assert count(pg_engine, call_ids) == half
        assert shipper.stalls == 1 and shipper.errors > 1
        redis_server.accept_writes()
        wait_for(lambda: count(pg_engine, call_ids) == len(events), what="the rest")
        wait_for(lambda: client.xlen(stream) == 0, what="the stream to empty")
        assert shipper.alive and running.thread.is_alive()
        # Every event was added to the stream once: a refused MULTI/EXEC added nothing.
        assert client.xinfo_stream(stream)["entries-added"] == len(events)
    finally:
        running.close()
        shipper.stop()
        outlet.close()
        client.close()
    assert_projected_once(pg_engine, call_ids)
    assert shipper.shipped == len(events) and shipper.stalled_since is None
    warned = _messages(caplog, "admin.outbox", "redis unavailable")
    assert len(warned) == 1  # once per episode, not per retry
    assert len(_messages(caplog, "admin.outbox", "redis is back")) == 1
    assert quarantined(tmp_path) == []
    logged = " ".join(str(record.__dict__) for record in caplog.records)
    assert not any(event.event_id in logged for event in events)  # nor any part of one


# --- (b) the spool's disk is full -----------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, so a test can fill it for real."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill needs root; run the suite as root (CI does)")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"root, but this machine refuses to mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    """Fills the disk; returns the file to delete to make room again."""
    filler = disk / "filler"
    with filler.open("ab", buffering=0) as file:
        try:
            while True:
                file.write(b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return filler


def _bulky(call_id: str, n: int) -> list[CallEvent]:
    """Caller transcripts of ~1.6 KB each: a few fill a tmpfs page, so writes end mid-line."""
    words = "where is my order " * 90
    return [
        CallEvent(
            call_id, CallEventKind.AGENT, {"event": "caller_transcript", "text": f"{i} {words}"}
        )
        for i in range(n)
    ]


def _lines(outlet: JsonlOutlet) -> list[str]:
    """The spool's lines; each must be a whole event (no torn or repeated part)."""
    lines = []
    for _, path in spool_segments(outlet.spool):
        lines += path.read_text().splitlines()
    for line in lines:
        decode_event(line)
    return lines


def test_a_full_disk_holds_events_and_writes_them_in_order(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    events = _bulky(uuid.uuid4().hex, 12)
    outlet = JsonlOutlet(small_disk / "worker-0.jsonl", retry_interval_s=0.05)
    try:
        for event in events[:3]:
            outlet.emit(event)
        filler = _fill(small_disk)
        for event in events[3:]:
            outlet.emit(event)  # must not raise
        assert outlet.held > 0 and outlet.outages == 1 and outlet.write_errors > 0
        on_disk = [event.event_id for event in read_events(outlet.path)]
        assert on_disk == [event.event_id for event in events[: len(on_disk)]]
        assert outlet.path.read_bytes()[-1:] != b"\n"  # the disk filled up mid-line
        filler.unlink()
        wait_for(lambda: outlet.held == 0, timeout=5, what="the timer to write the held events")
        stored = [decode_event(line).event_id for line in _lines(outlet)]
        assert stored == [event.event_id for event in events]
        assert outlet.counters() == {
            "written": len(events),
            "held": 0,
            "dropped": 0,
            "write_errors": outlet.write_errors,
            "outages": 1,
        }
    finally:
        outlet.close()
    assert len(_messages(caplog, "telephony.events", "spool not writable")) == 1
    assert len(_messages(caplog, "telephony.events", "spool writable again")) == 1


def test_events_past_the_buffer_are_counted_and_marked(
    small_disk: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    events = [e for pair in zip(_bulky(first, 5), _bulky(second, 5), strict=True) for e in pair]
    # No timer within the test: the next emit finds the room.
    outlet = JsonlOutlet(small_disk / "worker-0.jsonl", max_held=4, retry_interval_s=3600)
    filler = _fill(small_disk)
    for event in events:
        outlet.emit(event)
    assert (outlet.held, outlet.dropped) == (4, 6)
    assert len(_messages(caplog, "telephony.events", "spool buffer full")) == 1
    filler.unlink()
    last = CallEvent(first, CallEventKind.ENDED, {"reason": "hangup"})
    outlet.emit(last)

    lines = [decode_event(line) for line in _lines(outlet)]
    assert [e.event_id for e in lines[:4]] == [e.event_id for e in events[:4]]
    markers = lines[4:6]
    assert {m.kind for m in markers} == {CallEventKind.EVENTS_DROPPED}
    assert {m.call_id: m.data["dropped"] for m in markers} == {first: 3, second: 3}
    assert all(m.data["kinds"] == {"call.agent_event": 3} for m in markers)
    assert lines[6].event_id == last.event_id and len(lines) == 7
    assert outlet.counters()["dropped"] == 6

    # The marks are events like the others: the ingester stores them.
    url = f"sqlite:///{tmp_path / 'parley.db'}"
    schema.upgrade(url)
    engine = create_engine(url)
    carrier = FileCarrier(small_disk, poll_interval_s=0.01)
    assert new_ingester(carrier, engine, tmp_path).drain() == 7
    carrier.close()
    with Session(engine) as session:
        kinds = session.scalars(select(CallEventRecord.kind)).all()
    engine.dispose()
    assert kinds.count(CallEventKind.EVENTS_DROPPED.value) == 2

    # Closed while the disk is full: what it still held is counted as lost, and said.
    _fill(small_disk)
    for event in _bulky(first, 3):  # more than the spool's last page can still take
        outlet.emit(event)
    held = outlet.held
    assert held > 0
    outlet.close()
    assert outlet.dropped == 6 + held
    assert _messages(caplog, "telephony.events", "spool not writable at close")


def test_a_worker_on_a_full_disk_keeps_answering(small_disk: Path, tmp_path: Path) -> None:
    config = PlatformConfig(tmp_path)
    events_dir = tmp_path / "var" / "events"
    events_dir.parent.mkdir(parents=True)
    events_dir.symlink_to(small_disk)
    filler = _fill(small_disk)
    worker = start_worker(config)
    try:
        summary = dial(f"sip:100@127.0.0.1:{config.worker_base_port}", tmp_path, hold=1.0)
        assert summary[0]["answered"], summary
        assert config.events() == []  # nothing could be written
        filler.unlink()  # the outlet's timer finds the room
        wait_for(
            lambda: any(e.kind is CallEventKind.ENDED for e in config.events()),
            timeout=10,
            what="the held events in the spool",
        )
    finally:
        worker.stop()
    # The call's events, after the worker's own boot marker (worker.reset).
    events = [e for e in config.events() if e.kind is not CallEventKind.WORKER_RESET]
    assert events[0].kind is CallEventKind.STARTED and events[-1].kind is CallEventKind.ENDED
    assert events[-1].data["reason"] == "hangup"  # the caller's, after the whole call
    assert summary[0]["frames_received"] > 0  # the agent's audio reached the caller
    assert "spool not writable; holding events in memory" in worker.log()


# --- (c) a poison event in the middle of a batch --------------------------------------------


class _BrittleProjection(Projection):
    """The projection with a bug that raises on one event (whatever the bug, the ingester must
    carry on)."""

    def apply(self, session: Session, events: Sequence[CallEvent]) -> list[str]:
        if any(event.data.get("text") == "trips the projection" for event in events):
            raise KeyError("missing")
        return super().apply(session, events)


@pytest.fixture
def refusing_database(pg_engine: Engine) -> Iterator[Engine]:
    """Constraints the poison events break: the database refuses one event outright, and one
    transcript segment the projection writes."""
    refuse = """
        CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN
            RAISE EXCEPTION 'refused for the test' USING ERRCODE = 'check_violation';
        END $$ LANGUAGE plpgsql;
        CREATE TRIGGER refuse_event BEFORE INSERT ON call_events FOR EACH ROW
            WHEN (NEW.data::jsonb ->> 'text' = 'refused outright') EXECUTE FUNCTION refuse();
        CREATE TRIGGER refuse_segment BEFORE INSERT ON transcript_segments FOR EACH ROW
            WHEN (NEW.text = 'refused segment') EXECUTE FUNCTION refuse();
    """
    with pg_engine.begin() as connection:
        connection.execute(text(refuse))
    try:
        yield pg_engine
    finally:
        with pg_engine.begin() as connection:
            connection.execute(text("DROP FUNCTION refuse() CASCADE"))


def _caller_says(event: CallEvent, words: str) -> CallEvent:
    data: dict[str, object] = {"event": "caller_transcript", "text": words}
    return CallEvent(event.call_id, CallEventKind.AGENT, data, event.t_mono_ns + 1, event.t_wall)


@pytest.mark.parametrize("carrier_name", ["spool", "redis"])
def test_a_poison_event_is_quarantined_and_the_rest_stored(
    carrier_name: str,
    refusing_database: Engine,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    engine = refusing_database
    events = scripted_call()
    call_ids = [events[0].call_id]
    secret = "+15550001111"  # personal data in a poison line must not reach the log
    good = json.loads(events[5].to_json())
    not_events = [
        events[4].to_json()[:50],  # torn
        "[" * 50_000 + "]" * 50_000,  # JSON nested past what the decoder allows
        json.dumps({**good, "event_id": uuid.uuid4().hex, "t_mono_ns": "soon", "to": secret}),
    ]
    poisons = [
        _caller_says(events[6], "trips the projection"),
        _caller_says(events[6], "refused segment"),
        _caller_says(events[6], "refused outright"),
    ]
    spool_dir = tmp_path / "events"
    outlet = JsonlOutlet(spool_dir / "worker-0.jsonl")
    for event in events[:6]:
        outlet.emit(event)
    with outlet.path.open("a") as spool:  # as a disk or a bug might leave them
        spool.write("\n".join(not_events) + "\n")
    for event in [*poisons, *events[6:]]:
        outlet.emit(event)
    outlet.close()

    if carrier_name == "redis":
        server = PrivateRedis()
        stream = f"events-{uuid.uuid4().hex[:8]}"
        shipper = _shipper(outlet.spool, server, stream, tmp_path)
        while shipper.ship_once():
            pass
        carrier: FileCarrier | RedisCarrier = _redis_carrier(server, stream)
    else:
        carrier = FileCarrier(spool_dir, poll_interval_s=0.05)
    ingester = new_ingester(carrier, engine, tmp_path)
    ingester.projection = _BrittleProjection(number_key=NUMBER_KEY, audit_key=AUDIT_KEY)
    running = Background(ingester)
    try:
        stored = len(events) + 2  # the two whose projection failed are stored without it
        wait_for(lambda: count(engine, call_ids) == stored, what="the events around the poison")
        wait_for(lambda: len(quarantined(tmp_path)) == 6, what="the poison in quarantine")
        time.sleep(0.5)  # it does not loop over the poison
        assert running.thread.is_alive()
        assert count(engine, call_ids) == stored and len(quarantined(tmp_path)) == 6
        assert ingester.carrier.backlog() == 0
    finally:
        running.close()
        carrier.close()
        if carrier_name == "redis":
            server.close()
    assert_projected_once(engine, call_ids)  # the records of the good events are whole
    records = quarantined(tmp_path)
    assert sorted(r["line"] for r in records) == sorted(
        [*not_events, *(p.to_json() for p in poisons)]
    )
    by_text = {decode_event(r["line"]).data.get("text"): r for r in records if _is_event(r)}
    assert by_text["trips the projection"]["why"] == "projection failed: KeyError"
    assert by_text["refused segment"]["why"].startswith("projection failed: IntegrityError")
    assert by_text["trips the projection"]["stored"] and by_text["refused segment"]["stored"]
    assert "stored" not in by_text["refused outright"]
    assert ingester.counters()["split_batches"] == 1
    assert (ingester.unprojected, ingester.refused) == (2, 1)
    assert secret not in caplog.text


def _is_event(record: dict[str, str]) -> bool:
    try:
        decode_event(record["line"])
    except ValueError:
        return False
    return True


# --- (d) a database that cannot run the statements: not poison -----------------------------


def test_a_missing_table_stalls_the_ingester_and_quarantines_nothing(
    pg_engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A database fault that is not 'down' (here the table is gone: SQLSTATE 42P01) must not
    be taken for poison: the events wait until the schema is back. (A database that is down
    is tested in test_ingest_pipeline.py.)"""
    caplog.set_level(logging.INFO)
    events = scripted_call()
    call_ids = [events[0].call_id]
    outlet = JsonlOutlet(tmp_path / "events" / "worker-0.jsonl")
    carrier = FileCarrier(tmp_path / "events", poll_interval_s=0.05)
    ingester = new_ingester(carrier, pg_engine, tmp_path)
    with pg_engine.begin() as connection:
        connection.execute(text("ALTER TABLE call_events RENAME TO call_events_away"))
    running = Background(ingester)
    try:
        for event in events:
            outlet.emit(event)
        wait_for(lambda: ingester.counters()["stalled"] == 1, what="the ingester to stall")
        time.sleep(0.5)
        assert running.thread.is_alive()
        with pg_engine.begin() as connection:
            connection.execute(text("ALTER TABLE call_events_away RENAME TO call_events"))
        wait_for(lambda: count(pg_engine, call_ids) == len(events), what="every event")
    finally:
        running.close()
        carrier.close()
        outlet.close()
    assert_projected_once(pg_engine, call_ids)
    assert quarantined(tmp_path) == []
    assert len(_messages(caplog, "admin.ingest", "database unavailable")) == 1


def test_a_restarted_outlet_ends_a_line_torn_by_a_crash(tmp_path: Path) -> None:
    before, after = scripted_call()[:2]
    outlet = JsonlOutlet(tmp_path / "worker-0.jsonl")
    outlet.emit(before)
    outlet.close()
    with outlet.path.open("a") as spool:
        spool.write(after.to_json()[:30])  # the crash
    again = JsonlOutlet(tmp_path / "worker-0.jsonl")
    again.emit(after)
    again.close()
    assert [e.event_id for e in read_events(outlet.path)] == [before.event_id, after.event_id]
    assert again.counters()["write_errors"] == 0
