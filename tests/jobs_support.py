"""A real jobs worker for the job tests: `parley jobs worker` in its own process, on Redis or on
the no-server broker, against a real database; plus a TCP proxy that can take that database
away for a moment, and helpers that put calls in the database.

Redis is required for the Redis tests: without it they fail, saying how to start it. They use
Redis database 13 and a queue name of their own, so they never take anybody else's messages.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from celery import Celery
from celery.result import AsyncResult
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from admin import schema
from admin.jobs.celery_app import create_app
from admin.models import (
    Call,
    CallEventRecord,
    ConsentMethod,
    ConsentResult,
    Disclosure,
    DisclosurePlay,
    DisclosureVersion,
    Line,
    Speaker,
    TranscriptSegment,
    TurnMetrics,
)
from admin.settings import Settings


def _redis_db() -> int:
    """Database 13, and one more for each further pytest-xdist worker (gw1: 14…): job queues
    and keys of tests running side by side never mix."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    return 13 + (int(worker) if worker.isdigit() else 0)


REDIS_URL = os.environ.get("PARLEY_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{_redis_db()}")
ROOT = Path(__file__).resolve().parent.parent
AUDIT_KEY = "audit-key-for-the-job-tests-0123456789"
NUMBER_KEY = "number-key-for-the-job-tests-0123456789"
JWT_KEY = "jwt-key-for-the-job-tests-0123456789abc"


def require_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.fail(
            f"Redis is needed by the job tests and is not reachable at {REDIS_URL}: {error}\n"
            "Start it (Debian: `apt-get install redis-server && redis-server --daemonize yes`; "
            "`make test` does this), or set PARLEY_TEST_REDIS_URL.",
            pytrace=False,
        )
    finally:
        client.close()


def job_settings(data_dir: Path, database_url: str, **overrides: Any) -> dict[str, Any]:
    """Settings for a worker and the test that talks to it, as the YAML file holds them."""
    jobs: dict[str, Any] = {
        "queue": f"parley-test-{secrets.token_hex(4)}",
        "beat": False,
        "retry_backoff_s": 0.2,
        "retry_backoff_max_s": 1.0,
        "max_retries": 3,
        "export_dir": str(data_dir / "exports"),
        "retention_days": 36500,  # leave alone the calls of tests that are not about retention
    }
    jobs.update(overrides.pop("jobs", {}))
    return {
        "data_dir": str(data_dir),
        "log_level": "INFO",
        "database": {"url": database_url},
        "security": {
            "audit_hmac_key": AUDIT_KEY,
            "number_hash_key": NUMBER_KEY,
            "jwt_signing_key": JWT_KEY,
        },
        "jobs": jobs,
        **overrides,
    }


@dataclass
class JobsWorker:
    settings: Settings
    app: Celery
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, result: AsyncResult[Any], timeout: float = 30.0) -> AsyncResult[Any]:
        """Waits until the job has finished (either way); fails with the worker's log."""
        deadline = time.monotonic() + timeout
        while not result.ready():
            if self.process.poll() is not None:
                pytest.fail(f"the jobs worker exited:\n{self.log()[-4000:]}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(
                    f"job {result.id} still {result.state} after {timeout}s; worker log:\n"
                    f"{self.log()[-4000:]}",
                    pytrace=False,
                )
            time.sleep(0.05)
        return result

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextmanager
def running_worker(config: dict[str, Any], folder: Path) -> Iterator[JobsWorker]:
    """`parley jobs worker` with `config`, and a Celery app in this process that talks to it."""
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "parley.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = folder / "jobs-worker.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env["PARLEY_CONFIG"] = str(config_path)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "admin.cli", "jobs", "worker"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    settings = Settings(**config)
    app = create_app(settings)
    worker = JobsWorker(settings, app, process, log_path)
    try:
        yield worker
    finally:
        code = worker.stop()
        app.close()
        assert code == 0, f"the jobs worker exited with {code}:\n{worker.log()[-4000:]}"


# --- a database of the job tests' own ------------------------------------------------------------


@contextmanager
def postgres_database(server: Engine) -> Iterator[str]:
    """A migrated PostgreSQL database that lives as long as the block. The job tests commit
    (the worker must see their rows), so they do not share the storage tests' database."""
    name = f"parley_jobs_{os.getpid()}_{secrets.token_hex(4)}"
    with server.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.url.set(database=name).render_as_string(hide_password=False)
    try:
        schema.upgrade(url)
        yield url
    finally:
        with server.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))


# --- a database connection that can be cut --------------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a server. `outage(n)` cuts every open connection and turns
    the next `n` away at once, as a database that restarts does."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._refuse = 0
        self.refused = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="tcp-proxy").start()

    def outage(self, refuse: int) -> None:
        with self._lock:
            self._refuse = refuse
            for sock in self._open:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def close(self) -> None:
        self._closed = True
        self.outage(0)
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._refuse > 0:
                    self._refuse -= 1
                    self.refused += 1
                    client.close()
                    continue
                upstream = socket.create_connection(self.target)
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def through_proxy(url: str, proxy: TcpProxy) -> str:
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(False)


# --- rows ----------------------------------------------------------------------------------------

T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def add_line(session: Session, name: str | None = None) -> Line:
    line = Line(name=name or f"line-{secrets.token_hex(4)}", agent_profile="embedded")
    session.add(line)
    session.flush()
    return line


def add_call(
    session: Session,
    *,
    started_at: dt.datetime = T0,
    seconds: float | None = 60.0,
    line: Line | None = None,
) -> Call:
    call = Call(
        id=new_id(),
        line_id=line.id if line else None,
        caller_hash=hashlib.sha256(secrets.token_bytes(8)).hexdigest(),
        caller_masked="+1******4567",
        to_number="100",
        started_at=started_at,
        answered_at=started_at,
        ended_at=started_at + dt.timedelta(seconds=seconds) if seconds is not None else None,
    )
    session.add(call)
    session.flush()
    return call


def add_segment(
    session: Session,
    call: Call,
    words: str,
    *,
    start_ms: int = 0,
    speaker: Speaker = Speaker.CALLER,
) -> TranscriptSegment:
    segment = TranscriptSegment(
        call_id=call.id, speaker=speaker, text=words, start_ms=start_ms, end_ms=start_ms + 1000
    )
    session.add(segment)
    session.flush()
    return segment


def add_event(session: Session, call: Call, kind: str, data: dict[str, Any]) -> None:
    session.add(
        CallEventRecord(
            event_id=new_id(),
            call_id=call.id,
            kind=kind,
            occurred_at=call.started_at,
            t_mono_ns=time.monotonic_ns(),
            data=data,
        )
    )
    session.flush()


def add_turns(session: Session, call: Call, voice_to_voice_ms: list[int | None]) -> None:
    for index, value in enumerate(voice_to_voice_ms):
        session.add(TurnMetrics(call_id=call.id, turn_index=index, voice_to_voice_ms=value))
    session.flush()


def add_disclosure_play(session: Session, call: Call) -> None:
    disclosure = Disclosure(name=f"notice-{secrets.token_hex(4)}")
    version = DisclosureVersion(
        disclosure=disclosure,
        version=1,
        text="This call is answered by an AI and recorded.",
        audio_sha256="a" * 64,
        jurisdiction="US",
    )
    session.add_all([disclosure, version])
    session.flush()
    session.add(
        DisclosurePlay(
            call_id=call.id,
            version_id=version.id,
            started_at=call.started_at,
            consent=ConsentResult.GRANTED,
            consent_method=ConsentMethod.IMPLIED,
        )
    )
    session.flush()
