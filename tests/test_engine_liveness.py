"""A hung engine under `parley run`: the supervisor's probe kills and restarts it; the caller
on it hears the apology (the session dies with the process), new calls get 503 until the new
engine is healthy, then calls are answered again."""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from telephony.events import CallEventKind
from tests.ingest_support import wait_for
from tests.sip_raw import PCMU_SDP, Request, exchange
from tests.support import (
    PlatformConfig,
    Running,
    chirp_noise,
    dial,
    finish_dial,
    free_port_block,
    start_platform,
    write_wav,
)

pytestmark = [pytest.mark.sip, pytest.mark.slow]


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
            return int(answer.status) == 200
    except OSError:
        return False


def _worker_sees_engine(platform: Running) -> int:
    """How often the worker's readiness probe found the engine ready after it was not."""
    return len(re.findall(r"worker-0 +model server is ready", platform.log()))


def _invite(config: PlatformConfig) -> int | None:
    invite = Request("INVITE", f"sip:100@127.0.0.1:{config.sip_port}")
    invite.body = PCMU_SDP.format(host="127.0.0.1", port=40000)
    response = exchange(invite, "127.0.0.1", config.sip_port, timeout_s=5.0)
    return None if response is None else response.code


def test_a_stopped_engine_is_restarted_and_its_callers_hear_the_apology(tmp: Path) -> None:
    engine_port = free_port_block(1)
    config = PlatformConfig(
        tmp,
        lines=[{"name": "main", "numbers": ["100"], "agent": "embedded"}],
        extra={
            "engine": {"host": "127.0.0.1", "port": engine_port, "prerender": False},
            "jobs": {"enabled": False},
        },
    )
    platform: Running = start_platform(config)
    try:
        wait_for(lambda: "Parley is ready" in platform.log(), 240, "the engine's models")
        wait_for(lambda: _worker_sees_engine(platform) == 1, 10, "the worker seeing the engine")
        play = write_wav(tmp / "talk.wav", chirp_noise(2.0))
        call = dial(
            f"sip:100@127.0.0.1:{config.sip_port}",
            tmp,
            play=play,
            hold=40,
            max_s=60,
            name="victim",
            background=True,
        )
        wait_for(
            lambda: any(e.kind is CallEventKind.ANSWERED for e in config.events()), 20, "answer"
        )
        time.sleep(3.0)
        [engine_pid] = re.findall(r"process started\s+child=engine pid=(\d+)", platform.log())
        os.kill(int(engine_pid), signal.SIGSTOP)
        stopped_at = time.monotonic()

        wait_for(lambda: "process hung; killing it  child=engine" in platform.log(), 40, "the kill")
        assert time.monotonic() - stopped_at < 30
        assert _invite(config) == 503  # the new engine is loading its models
        [result] = finish_dial(call, tmp / "victim.json", timeout=60)
        assert result["answered"] and result["reason"] != "rtp_timeout"
        [ended] = [e for e in config.events() if e.kind is CallEventKind.ENDED]
        assert ended.data["reason"] == "session_failed"  # the apology, then the hang-up
        assert any(e.kind is CallEventKind.SESSION_FAILED for e in config.events())

        wait_for(lambda: _healthy(engine_port), 240, "the restarted engine")
        wait_for(lambda: _worker_sees_engine(platform) == 2, 10, "the worker seeing it again")
        [again] = dial(f"sip:100@127.0.0.1:{config.sip_port}", tmp, hold=1.0, name="again")
        assert again["answered"]
    finally:
        platform.stop(timeout=30)
