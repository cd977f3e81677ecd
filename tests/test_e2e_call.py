"""Issue 4, end to end: a call placed with `parley dial` shows up in the admin API with its
transcript, events, disclosure play and metrics.

The processes are the ones `parley run` starts (media worker, engine, ingester, jobs worker,
API), each on its own, after the same `parley sync` step; only the Kamailio edge is left out
(the call goes straight to the worker). PostgreSQL with Redis (events and jobs), and SQLite with
the no-server jobs broker and the spool files as carrier.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from sqlalchemy import Engine

from tests.engine_harness import silence, speak
from tests.jobs_support import (
    AUDIT_KEY,
    JWT_KEY,
    NUMBER_KEY,
    REDIS_URL,
    postgres_database,
    require_redis,
)
from tests.support import (
    PARLEY,
    EngineProcess,
    PlatformConfig,
    Running,
    dial,
    free_port_block,
    start_worker,
    write_wav,
)

pytest_plugins = ["tests.db_support"]
pytestmark = [pytest.mark.sip, pytest.mark.slow]

NOTICE = "This call is answered by an AI assistant and recorded."
PASSWORD = "end-to-end password"
DEADLINE_S = 60.0


@contextmanager
def _database(backend: str, request: pytest.FixtureRequest, tmp: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'var' / 'parley.db'}"
        return
    require_redis()
    server: Engine = request.getfixturevalue("postgres_server")
    with postgres_database(server) as url:
        yield url


def _settings(backend: str, url: str, engine: EngineProcess, api_port: int) -> dict[str, Any]:
    token = secrets.token_hex(4)
    settings: dict[str, Any] = {
        "database": {"url": url},
        "security": {
            "audit_hmac_key": AUDIT_KEY,
            "number_hash_key": NUMBER_KEY,
            "jwt_signing_key": JWT_KEY,
        },
        "engine": {"url": engine.url},
        "disclosures": [{"name": "notice", "text": NOTICE, "jurisdiction": "US"}],
        "http_host": "127.0.0.1",
        "http_port": api_port,
        "jobs": {"queue": f"parley-e2e-jobs-{token}", "beat": False},
        "events": {"poll_interval_s": 0.1},
    }
    if backend == "postgresql":  # Redis carries the events and the jobs, as in production
        settings["redis_url"] = REDIS_URL
        settings["events"]["stream"] = f"parley-e2e-events-{token}"
    return settings


def _run(config: PlatformConfig, *args: str, **env: str) -> None:
    done = subprocess.run(
        [*PARLEY, *args],
        env={**config.env(), **env},
        cwd=config.tmp,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"parley {' '.join(args)}: {done.stderr.decode(errors='replace')}"


def _api_ready(running: Running, url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if running.proc.poll() is not None:
            break
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the API did not start:\n{running.log()[-3000:]}")


def _missing(detail: dict[str, Any]) -> list[str]:
    """What the call's record still lacks; empty when it is complete."""
    missing = []
    said = {seg["speaker"]: seg["text"].lower() for seg in detail["transcript"]}
    caller = " ".join(s["text"].lower() for s in detail["transcript"] if s["speaker"] == "caller")
    agent = " ".join(s["text"].lower() for s in detail["transcript"] if s["speaker"] == "agent")
    if "shipping" not in caller:
        missing.append(f"the caller's question in the transcript (has {said})")
    if "fifty dollars" not in agent:
        missing.append(f"the agent's answer with the shipping fact (has {said})")
    kinds = {event["kind"] for event in detail["events"]}
    for kind in ("call.started", "call.disclosure_played", "call.agent_event", "call.ended"):
        if kind not in kinds:
            missing.append(f"a {kind} event")
    plays = [
        (p["disclosure"], p["consent"], p["consent_method"]) for p in detail["disclosure_plays"]
    ]
    if plays != [("notice", "granted", "implied")]:
        missing.append(f"one disclosure play, granted, implied (has {plays})")
    metrics = detail["metrics"]
    if metrics is None:
        missing.append("call metrics")
    elif metrics["turns"] < 1 or metrics["voice_to_voice_p50_ms"] is None:
        missing.append(f"metrics with a turn and voice-to-voice (has {metrics})")
    if detail["outcome"] is None:
        missing.append("an outcome")
    return missing


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_a_dialled_call_appears_in_the_api(
    backend: str, engine: EngineProcess, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    api_port = free_port_block(1)
    with ExitStack() as stack:
        url = stack.enter_context(_database(backend, request, tmp_path))
        settings = _settings(backend, url, engine, api_port)
        stream = settings["events"].get("stream")
        if stream:
            stack.callback(_drop_stream, stream)
        config = PlatformConfig(
            tmp_path,
            lines=[
                {"name": "main", "numbers": ["100"], "agent": "embedded", "disclosure": "notice"}
            ],
            extra=settings,
        )
        _run(config, "db", "upgrade")
        _run(config, "sync")  # what `parley run` does before starting anything
        _run(config, "users", "create", "admin", "--role", "admin", PARLEY_USER_PASSWORD=PASSWORD)
        processes: list[Running] = []
        for name, argv in [
            ("ingest", ["ingest"]),
            ("jobs", ["jobs", "worker"]),
            ("api", ["api"]),
        ]:
            processes.append(Running([*PARLEY, *argv], config, f"{name}.log"))
            stack.callback(processes[-1].stop)  # stopped in reverse order, each whatever happens
        processes.append(start_worker(config))
        stack.callback(processes[-1].stop)
        api = f"http://127.0.0.1:{api_port}"
        _api_ready(processes[2], api)

        # The disclosure (~4 s) and the greeting come first; the caller asks once they are over.
        question = speak("How much does shipping cost?")
        play = np.concatenate([silence(13000), question, silence(9000)])
        [result] = dial(
            f"sip:100@127.0.0.1:{config.worker_base_port}",
            tmp_path,
            play=write_wav(tmp_path / "question.wav", play.astype(np.float64)),
            hold=0.5,
            max_s=45,
        )
        assert result["answered"], result

        with httpx.Client(base_url=api, timeout=10) as client:
            login = client.post("/auth/token", data={"username": "admin", "password": PASSWORD})
            assert login.status_code == 200, login.text
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            missing = ["the call in GET /calls"]
            deadline = time.monotonic() + DEADLINE_S
            while time.monotonic() < deadline:
                listed = client.get("/calls", headers=headers)
                assert listed.status_code == 200, listed.text
                items = listed.json()["items"]
                if items:
                    assert len(items) == 1, items
                    assert items[0]["line"] == "main"
                    detail = client.get(f"/calls/{items[0]['id']}", headers=headers)
                    assert detail.status_code == 200, detail.text
                    missing = _missing(detail.json())
                    if not missing:
                        break
                time.sleep(0.5)
            logs = "\n".join(f"--- {p.log_path.name}\n{p.log()[-1500:]}" for p in processes)
            assert not missing, (
                f"{backend}: {DEADLINE_S:.0f} s after hang-up the call still lacks: "
                f"{'; '.join(missing)}\n{logs}"
            )


def _drop_stream(stream: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.delete(stream)
    finally:
        client.close()
