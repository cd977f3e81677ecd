"""Commanding a live call from another process: a real SIP call into a media worker process,
commands sent to its inbox socket from this one."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from telephony.commands import Hold, Unhold, Whisper
from telephony.events import CallEvent, CallEventKind
from telephony.inbox import inbox_path, send_command
from telephony.prompts import hold_audio
from tests.support import (
    PARLEY,
    PlatformConfig,
    Running,
    best_correlation,
    chirp_noise,
    dial,
    echo_match,
    finish_dial,
    read_wav,
    write_wav,
)

pytestmark = pytest.mark.sip


def _wait_for(config: PlatformConfig, kind: CallEventKind, timeout_s: float = 10.0) -> CallEvent:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [e for e in config.events() if e.kind is kind]
        if found:
            return found[-1]
        time.sleep(0.05)
    raise AssertionError(f"no {kind} event within {timeout_s} s")


def test_hold_and_unhold_by_command_detach_and_reattach_the_agent(
    worker: Running, worker_config: PlatformConfig, tmp: Path
) -> None:
    inbox = inbox_path(worker_config.tmp / "var" / "run", 0)
    uri = f"sip:100@127.0.0.1:{worker_config.worker_base_port}"
    sent = chirp_noise(11.0)
    proc = dial(uri, tmp, play=write_wav(tmp / "sent.wav", sent), hold=0.3, background=True)
    call_id = _wait_for(worker_config, CallEventKind.ANSWERED).call_id
    time.sleep(1.0)

    async def command(cmd: Hold | Unhold | Whisper) -> tuple[bool, str | None, dict[str, object]]:
        reply = await send_command(inbox, cmd)
        return reply.ok, reply.error, reply.data

    ok, error, data = asyncio.run(command(Hold(call_id=call_id, actor="test")))
    assert ok, error
    assert data["phase"] == "queued" and data["agent"] == "detached"
    time.sleep(2.5)
    # A question, not a command: where the call stands, nothing changed, no call.command.
    status = subprocess.run(
        [*PARLEY, "call", "status", call_id],
        env=worker_config.env(), capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == {
        "phase": "queued", "mode": None, "agent": "detached", "supervisor": False,
        "ringing": False,
    }  # fmt: skip
    # Not every command fits every phase: refused with the reason, the call unchanged.
    ok, error, _ = asyncio.run(command(Whisper(call_id=call_id, actor="test", text="hi")))
    assert not ok and error and "supervisor" in error
    # `parley call` finds the worker that holds the call.
    cli = subprocess.run(
        [*PARLEY, "call", "unhold", call_id],
        env=worker_config.env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    data = json.loads(cli.stdout)
    assert data["phase"] == "with_agent" and data["agent"] == "attached"
    ok, error, _ = asyncio.run(command(Unhold(call_id=call_id, actor="test")))
    assert not ok and error and "with_agent" in error, error
    ok, error, _ = asyncio.run(command(Hold(call_id="0" * 32, actor="test")))
    assert not ok and error and "no live call" in error

    [result] = finish_dial(proc, tmp / "dial.json")
    assert result["answered"] and result["reason"] != "rtp_timeout", result
    events = [e for e in worker_config.events() if e.call_id == call_id]
    phases = [e for e in events if e.kind is CallEventKind.PHASE]
    assert [e.data["phase"] for e in phases] == ["with_agent", "queued", "with_agent"]
    commands = [e.data for e in events if e.kind is CallEventKind.COMMAND]
    assert [(c["command"], c["actor"]) for c in commands] == [("hold", "test"), ("unhold", "cli")]

    # What the caller heard: hold music while queued (not the agent echoing them), the
    # agent's echo again after.
    received = read_wav(Path(result["recording"]))
    times = np.array(result["frame_times_ns"], dtype=np.int64)
    held_from, held_to = phases[1].t_mono_ns, phases[2].t_mono_ns
    frames = np.flatnonzero((times > held_from + 200_000_000) & (times < held_to))
    on_hold = received[frames[0] * 320 : (frames[-1] + 1) * 320]
    music = np.frombuffer(hold_audio(), dtype="<i2").astype(np.float64) / 32768
    score, _ = echo_match(music[8000:40000], on_hold)  # notes 2 to 5, well inside the hold
    assert score > 0.8, f"the caller did not hear hold music (corr {score:.2f})"
    caller_during_hold = sent[int((held_from - times[0]) / 1e9 * 16000) :][: len(on_hold)]
    echoed, _ = best_correlation(caller_during_hold[:8000], on_hold)
    assert echoed < 0.3, f"the detached agent was still heard (corr {echoed:.2f})"
    back = np.flatnonzero(times > held_to + 300_000_000)
    after = received[back[0] * 320 : (back[-1] + 1) * 320]
    start = int((held_to - times[0]) / 1e9 * 16000) + 16000
    score, _ = echo_match(sent[start : start + 8000], after)
    # Unrelated audio scores under 0.3 (the check above); a loaded machine's jitter took one
    # faithful echo down to 0.74.
    assert score > 0.6, f"the agent did not come back (corr {score:.2f})"
