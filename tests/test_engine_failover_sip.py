"""Two engine servers behind a media worker, over SIP: the engine holding a call is killed
(SIGKILL) between the caller's question and their follow-up, and the call goes on with the
other one: the follow-up, which leans on the answer given before the kill, is answered."""

from __future__ import annotations

import concurrent.futures
import json
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from telephony.events import CallEventKind
from tests.engine_harness import silence, speak
from tests.support import (
    EngineProcess,
    PlatformConfig,
    agent_events,
    answered_since,
    dial,
    finish_dial,
    read_wav,
    start_engine,
    start_worker,
    wait_for,
    write_wav,
)

pytestmark = [pytest.mark.sip, pytest.mark.slow]


def _sessions(engine: EngineProcess) -> int:
    url = f"http://127.0.0.1:{engine.port}/healthz"
    with urllib.request.urlopen(url, timeout=2) as answer:
        return int(json.loads(answer.read())["sessions"])


def test_a_call_whose_engine_is_killed_goes_on_with_the_other(tmp: Path) -> None:
    for name in ("one", "two", "platform"):
        (tmp / name).mkdir()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        started = [
            pool.submit(start_engine, tmp / name, prerender=False) for name in ("one", "two")
        ]
        one, two = (future.result() for future in started)
    config = PlatformConfig(
        tmp / "platform",
        lines=[{"name": "main", "numbers": ["100"], "agent": "embedded"}],
        extra={"engine": {"url": one.url, "servers": [two.url]}},
    )
    worker = start_worker(config)
    try:
        # The greeting, the question and its answer, the kill at 17.5 s, the follow-up.
        play = np.concatenate(
            [
                silence(7000),
                speak("How much does shipping cost?"),
                silence(10_000),
                speak("And for express?"),
                silence(9000),
            ]
        )
        since = time.monotonic_ns()
        caller = dial(
            f"sip:100@127.0.0.1:{config.worker_base_port}",
            tmp,
            play=write_wav(tmp / "asks.wav", play.astype(np.float64)),
            hold=0.5,
            max_s=60,
            background=True,
        )
        call_id = answered_since(config, since)
        answered = time.monotonic()
        holding = wait_for(
            lambda: [e for e in (one, two) if _sessions(e) == 1], "the call's engine", 10
        )
        [victim] = holding
        time.sleep(max(0.0, answered + 17.5 - time.monotonic()))
        victim.running.proc.kill()
        [result] = finish_dial(caller, tmp / "dial.json", timeout=90)
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
        for engine in (one, two):
            engine.running.stop()
    assert result["answered"] and result["reason"] != "rtp_timeout", result
    events = [e for e in config.events() if e.call_id == call_id]
    assert CallEventKind.SESSION_FAILED not in [e.kind for e in events]
    [moved] = agent_events(config, call_id, "session_moved")
    other = two if victim is one else one
    assert (moved.data["from"], moved.data["to"]) == (victim.url, other.url), moved.data
    transcripts = agent_events(config, call_id, "agent_transcript")
    said = [
        (e.t_mono_ns > moved.t_mono_ns, str(e.data.get("text", "")).lower()) for e in transcripts
    ]
    assert any(not later and "shipping" in text for later, text in said), said
    assert any(later and "express shipping" in text for later, text in said), said
    # The caller heard it: speech in what came down the line after the follow-up.
    heard = read_wav(Path(result["recording"]))
    follow_up_end = (
        16 * (7000 + 10_000)
        + len(speak("How much does shipping cost?"))
        + len(speak("And for express?"))
    )
    frames = heard[follow_up_end : follow_up_end + 16 * 6000]
    level = np.sqrt(np.mean(frames[: len(frames) // 320 * 320].reshape(-1, 320) ** 2, axis=1))
    assert (level > 1000).sum() > 50, "no answer heard after the engine was killed"
