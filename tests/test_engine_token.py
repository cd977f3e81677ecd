"""The engine server's token: a client without it (or with another) is refused at the
handshake with a clear error, the workers send it, health stays open to probes, and an engine
that listens beyond loopback cannot start without one."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from pydantic import ValidationError
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from admin.settings import Settings
from agent.profiles import SessionTarget, create_session
from agent.remote import RealtimeSession, RealtimeTranscriber
from agent.server import EngineServer
from agent.session import SessionError
from tests.support import PARLEY, free_port_block, port_open

TOKEN = "engine-token-0123456789"


def _server() -> EngineServer:
    # The handshake is decided before any model is touched: no models needed here.
    return EngineServer(
        models=object(),  # type: ignore[arg-type]
        dialogue_factory=lambda _: None,  # type: ignore[arg-type,return-value]
        turns_factory=lambda: None,  # type: ignore[arg-type,return-value]
        judge_overlap=lambda *_: None,  # type: ignore[arg-type]
        token=TOKEN,
    )


async def _serving(body: Callable[[int], Awaitable[None]]) -> None:
    """Runs an engine server with a token on a free port while `body(port)` runs."""
    stop = asyncio.Event()
    port = free_port_block(1)
    task = asyncio.create_task(_server().serve("127.0.0.1", port, stop))
    try:
        await port_open(port)
        await body(port)
    finally:
        stop.set()
        await task


def test_a_client_without_the_token_is_refused_and_one_with_it_gets_a_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body(port: int) -> None:
        url = f"ws://127.0.0.1:{port}/v1/realtime"
        for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": TOKEN}):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url, additional_headers=headers):
                    pass
            assert refused.value.response.status_code == 401
            assert b"engine.token" in refused.value.response.body
        async with connect(url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
            created = json.loads(await ws.recv())
            assert created["type"] == "session.created"
        # Health and metrics stay open: probes carry no token.
        health = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
        )
        assert json.loads(health)["status"] == "ok"
        # The clients say what went wrong, without the token.
        for client in (
            RealtimeSession(url, headers={"Authorization": "Bearer wrong"}),
            RealtimeTranscriber(url, headers={"Authorization": "Bearer wrong"}),
        ):
            with pytest.raises(SessionError, match=r"engine refused the token.*HTTP 401") as failed:
                await client.start()
            assert failed.value.retryable is False

    with caplog.at_level(logging.DEBUG):
        asyncio.run(_serving(body))
    # Neither the engine nor Parley's clients log it, even at DEBUG (the test's own raw
    # connections above log theirs through the websockets.client logger).
    leaks = [r.name for r in caplog.records if TOKEN in r.getMessage()]
    assert set(leaks) <= {"websockets.client"}, leaks


def test_the_workers_send_the_engine_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "parley.yaml"
    config.write_text(
        "engine: {url: 'ws://198.18.0.7:8765/v1/realtime', token: " + TOKEN + "}\n"
        "lines:\n  - {name: a, numbers: ['1'], agent: embedded}\ndefault_line: a\n"
    )
    monkeypatch.setenv("PARLEY_CONFIG", str(config))
    settings = Settings()
    line = settings.router().route("1")
    assert line is not None
    target = settings.session_target(line)
    assert isinstance(target, SessionTarget) and target.engine_token == TOKEN
    session = create_session("embedded", target)
    assert isinstance(session, RealtimeSession)
    assert session.headers == {"Authorization": f"Bearer {TOKEN}"}
    assert TOKEN not in settings.model_dump_json()  # `parley config` never shows it


def test_an_engine_beyond_loopback_needs_a_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "parley.yaml"
    config.write_text("engine: {host: 0.0.0.0}\n")
    monkeypatch.setenv("PARLEY_CONFIG", str(config))
    with pytest.raises(ValidationError, match=r"beyond this machine: set engine\.token"):
        Settings()
    monkeypatch.setenv("PARLEY_ENGINE__TOKEN", TOKEN)
    assert Settings().engine.token_value() == TOKEN


def test_parley_engine_refuses_to_listen_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env["PARLEY_CONFIG"] = str(tmp_path / "none.yaml")
    (tmp_path / "none.yaml").write_text("{}\n")
    done = subprocess.run(
        [*PARLEY, "engine", "--host", "0.0.0.0", "--port", "1"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "beyond this machine, with no token: set engine.token" in done.stderr
