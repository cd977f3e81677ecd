"""Sustained ingest rate of call events into PostgreSQL.

Three numbers, in events per second: the database alone (insert + projection, one transaction
per batch), the worker's shipper (spool file to the Redis stream), and the ingester reading the
stream into the database. Scripted calls (17 events each: speech, transcripts, a barge-in, a
turn's latency, a handoff) are used so the projection does its real work.

    .venv/bin/python bench/event_ingest.py [--calls 600] [--batch 500]

Uses a throwaway database on the PostgreSQL server at --postgres (dropped at the end) and a
throwaway stream on --redis.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from pathlib import Path

import redis
from sqlalchemy import text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from admin import schema
from admin.db import create_engine, session_factory
from admin.ingest import REJECTED_FILE, Batch, Ingester, RedisCarrier
from admin.outbox import SpoolShipper
from admin.projection import Projection
from admin.spool import Quarantine, SpoolLine
from bench.machine import describe
from telephony.events import CallEvent, JsonlOutlet
from tests.ingest_support import AUDIT_KEY, NUMBER_KEY, scripted_call


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()

    name = f"parley_bench_{secrets.token_hex(4)}"
    server = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    client = redis.Redis.from_url(args.redis)
    stream = f"parley:bench:{name}"
    try:
        schema.upgrade(url)
        print(f"machine: {describe()}")
        with engine.connect() as connection:
            version = connection.execute(text("SHOW server_version")).scalar()
        print(f"PostgreSQL {version}, {args.calls} calls, batches of {args.batch}")
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)
            ingester = Ingester(
                RedisCarrier(client, stream=stream, group="bench", block_s=0.01),
                session_factory(engine),
                projection=Projection(number_key=NUMBER_KEY, audit_key=AUDIT_KEY),
                quarantine=Quarantine(tmp / REJECTED_FILE),
                batch_size=args.batch,
            )
            _direct(ingester, args.calls, args.batch)
            _through_redis(ingester, tmp, client, stream=stream, calls=args.calls, batch=args.batch)
    finally:
        client.delete(stream, f"{stream}:shipped")
        engine.dispose()
        with server.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        server.dispose()
    return 0


def _events(calls: int) -> list[CallEvent]:
    return [event for _ in range(calls) for event in scripted_call()]


def _direct(ingester: Ingester, calls: int, batch: int) -> None:
    events = _events(calls)
    started = time.perf_counter()
    for start in range(0, len(events), batch):
        lines = [SpoolLine("bench", e.to_json()) for e in events[start : start + batch]]
        chunk = Batch(lines, None)
        chunk.decode()
        ingester._write(chunk)
    elapsed = time.perf_counter() - started
    print(
        f"store_events + projection: {len(events) / elapsed:,.0f} events/s ({len(events)} events)"
    )


def _through_redis(
    ingester: Ingester, tmp: Path, client: redis.Redis, *, stream: str, calls: int, batch: int
) -> None:
    events = _events(calls)
    outlet = JsonlOutlet(tmp / "worker-0.jsonl")
    for event in events:
        outlet.emit(event)
    outlet.close()
    shipper = SpoolShipper(
        outlet.spool, client, stream=stream, batch_size=batch, quarantine=ingester.quarantine
    )
    started = time.perf_counter()
    while shipper.ship_once():
        pass
    shipped = time.perf_counter() - started
    print(f"shipper (spool -> Redis stream): {len(events) / shipped:,.0f} events/s")
    started = time.perf_counter()
    stored = ingester.drain()
    elapsed = time.perf_counter() - started
    print(f"ingester (Redis stream -> PostgreSQL): {stored / elapsed:,.0f} events/s ({stored} new)")


if __name__ == "__main__":
    sys.exit(main())
