"""Admin API load: `/calls` list latency with 100k calls stored. Prints numbers; asserts nothing.

Creates a PostgreSQL database of its own, loads N calls (each with transcript segments, turn
and call metrics; a tenth escalated) with COPY, starts `parley api` on it as a subprocess, and
times `/calls` over real HTTP, one request at a time: the first page for several filters and
sorts, and paging deep with the cursor. Drops the database at the end (--keep leaves it).

Usage: python bench/api_load.py [--calls 100000] [--requests 100] [--pages 200]
       [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import secrets
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from admin import accounts, phone_numbers, schema
from admin.api import tokens
from admin.db import create_engine, session_factory
from admin.models import Role
from bench.machine import describe

KEY = "bench-" + "k" * 40
T_END = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
DAYS = 30
LINES = 4
CALLERS = 5000
OUTCOMES = ["contained"] * 7 + ["escalated", "abandoned"]


@contextmanager
def _database(server_url: str, keep: bool) -> Iterator[str]:
    name = f"parley_bench_api_{secrets.token_hex(4)}"
    server = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        if keep:
            print(f"kept database {name}")
        else:
            with server.connect() as connection:
                connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        server.dispose()


def _load(url: str, calls: int) -> None:
    number_key = KEY.encode()
    rng = random.Random(4)
    callers = [f"+1555{rng.randrange(10**7):07d}" for _ in range(CALLERS)]
    hashes = [
        (phone_numbers.number_hash(c, key=number_key), phone_numbers.mask(c)) for c in callers
    ]
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as connection, connection.cursor() as cursor:
        line_ids = []
        for i in range(LINES):
            cursor.execute(
                "INSERT INTO lines (name, agent_profile, created_at) VALUES (%s, 'embedded', now())"
                " RETURNING id",
                (f"line-{i}",),
            )
            line_ids.append(cursor.fetchone()[0])  # type: ignore[index]
        rows: dict[str, list[tuple[Any, ...]]] = {
            "calls": [],
            "transcript_segments": [],
            "turn_metrics": [],
            "call_metrics": [],
            "escalations": [],
        }
        span = DAYS * 86400
        for _ in range(calls):
            call_id = uuid.UUID(int=rng.getrandbits(128)).hex
            started = T_END - dt.timedelta(seconds=rng.uniform(0, span))
            answered = started + dt.timedelta(seconds=rng.uniform(0.5, 4))
            ended = answered + dt.timedelta(seconds=rng.uniform(20, 400))
            outcome = rng.choice(OUTCOMES)
            caller_hash, masked = hashes[rng.randrange(CALLERS)]
            duration = int((ended - started).total_seconds() * 1000)
            rows["calls"].append(
                (
                    call_id,
                    rng.choice(line_ids),
                    caller_hash,
                    masked,
                    "100",
                    started,
                    answered,
                    ended,
                    "hangup",
                    outcome,
                    duration,  # duration_sort_ms: as the rollup leaves it
                )
            )
            for turn in range(3):
                rows["transcript_segments"].append(
                    (
                        call_id,
                        "caller" if turn % 2 == 0 else "agent",
                        "words " * 8,
                        turn * 4000,
                        turn * 4000 + 2500,
                        False,
                        "none",
                    )
                )
                rows["turn_metrics"].append((call_id, turn, rng.randint(250, 900)))
            rows["call_metrics"].append((call_id, duration, 3, rng.randint(0, 3), 0, T_END))
            if outcome == "escalated":
                requested = answered + dt.timedelta(seconds=10)
                rows["escalations"].append(
                    (
                        call_id,
                        "caller_request",
                        "connected",
                        requested,
                        requested + dt.timedelta(seconds=25),
                    )
                )
        columns = {
            "calls": "id, line_id, caller_hash, caller_masked, to_number, started_at, "
            "answered_at, ended_at, end_reason, outcome, duration_sort_ms",
            "transcript_segments": "call_id, speaker, text, start_ms, end_ms, interrupted, "
            "redaction",
            "turn_metrics": "call_id, turn_index, voice_to_voice_ms",
            "call_metrics": "call_id, duration_ms, turns, barge_ins, backchannels, computed_at",
            "escalations": "call_id, reason, status, requested_at, connected_at",
        }
        for table, table_rows in rows.items():
            with cursor.copy(f"COPY {table} ({columns[table]}) FROM STDIN") as copy:
                for row in table_rows:
                    copy.write_row(row)
        cursor.execute("ANALYZE")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def _api(url: str, data_dir: Path) -> Iterator[str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")} | {
        "PARLEY_DATA_DIR": str(data_dir),
        "PARLEY_DATABASE__URL": url,
        "PARLEY_HTTP_PORT": str(port),
        "PARLEY_LOG_LEVEL": "WARNING",
        "PARLEY_SECURITY__AUDIT_HMAC_KEY": KEY,
        "PARLEY_SECURITY__NUMBER_HASH_KEY": KEY,
        "PARLEY_SECURITY__JWT_SIGNING_KEY": KEY,
    }
    server = subprocess.Popen([sys.executable, "-m", "admin.cli", "api"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("parley api did not start")
            time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.wait(10)


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"p50 {statistics.median(ordered):6.1f} ms  p95 {p95:6.1f} ms  (n={len(ordered)})"


def _time_first_pages(
    client: httpx.Client, params: dict[str, str | int], requests: int
) -> list[float]:
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get("/calls", params=params)
        samples.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return samples


def _time_paging(
    client: httpx.Client, params: dict[str, str | int], pages: int
) -> tuple[list[float], int]:
    samples, cursor, rows = [], None, 0
    for _ in range(pages):
        started = time.perf_counter()
        response = client.get("/calls", params=params | ({"cursor": cursor} if cursor else {}))
        samples.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        body = response.json()
        rows += len(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    return samples, rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=100, help="per first-page scenario")
    parser.add_argument("--pages", type=int, default=200, help="pages followed when paging deep")
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "PARLEY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
        help="a superuser URL of the server to create the bench database on",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    print(f"machine: {describe()}, Python {platform.python_version()}")
    with _database(args.postgres, args.keep) as url:
        schema.upgrade(url)
        started = time.perf_counter()
        _load(url, args.calls)
        engine = create_engine(url)
        with engine.connect() as connection:
            version = connection.execute(text("SHOW server_version")).scalar()
        with session_factory(engine)() as session:
            admin = accounts.create_user(
                session,
                username="bench",
                role=Role.ADMIN,
                password=None,
                actor="bench",
                audit_key=KEY.encode(),
            )
            session.commit()
            token = tokens.issue(
                admin.id, key=KEY.encode(), minutes=60, now=dt.datetime.now(dt.UTC)
            ).token
        engine.dispose()
        print(
            f"PostgreSQL {version}: {args.calls} calls, {3 * args.calls} segments, "
            f"{3 * args.calls} turn metrics loaded in {time.perf_counter() - started:.1f} s"
        )
        day = (T_END - dt.timedelta(days=3)).isoformat()
        caller = "+1555" + f"{random.Random(4).randrange(10**7):07d}"  # the first generated caller
        with (
            _api(url, Path(f"/tmp/parley-bench-api-{os.getpid()}")) as base,
            httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60
            ) as client,
        ):
            client.get("/calls").raise_for_status()  # warm the pool
            first_pages: list[tuple[str, dict[str, str | int]]] = [
                ("newest first", {}),
                ("oldest first", {"sort": "started_at"}),
                ("longest first", {"sort": "-duration"}),
                ("one line, contained", {"line_id": 2, "outcome": "contained"}),
                (
                    "escalated, one day",
                    {
                        "escalated": "true",
                        "from": day,
                        "to": (T_END - dt.timedelta(days=2)).isoformat(),
                    },
                ),
                ("by caller number", {"caller": caller}),
            ]
            print(f"/calls, first page of 50, {args.requests} requests each:")
            for name, params in first_pages:
                samples = _time_first_pages(client, params | {"limit": 50}, args.requests)
                print(f"  {name:<22} {_percentiles(samples)}")
            print(f"/calls, paging deep with the cursor ({args.pages} pages of 50):")
            deep: list[tuple[str, dict[str, str | int]]] = [
                ("newest first", {}),
                ("longest first", {"sort": "-duration"}),
                ("one line", {"line_id": 3}),
            ]
            for name, params in deep:
                samples, rows = _time_paging(client, params | {"limit": 50}, args.pages)
                print(f"  {name:<22} {_percentiles(samples)}, {rows} rows deep")
    return 0


if __name__ == "__main__":
    sys.exit(main())
