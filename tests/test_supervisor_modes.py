"""A supervisor steps into an AI call from a SIP phone and out again: real processes on
loopback (a caller, Parley with its edge, a supervisor phone registered with credentials).

The caller talks (noise A) to the echo agent, which plays it back; the supervisor talks
(noise B). Who hears whom in each mode is read off the recordings by correlation.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from telephony.events import CallEvent, CallEventKind
from tests.support import (
    PARLEY,
    PlatformConfig,
    Running,
    best_correlation,
    chirp_noise,
    dial,
    finish_dial,
    read_wav,
    start_platform,
    write_wav,
)

pytestmark = pytest.mark.sip

PASSWORD = "alice-secret-1"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> PlatformConfig:
    return PlatformConfig(
        tmp_path_factory.mktemp("supervise"),
        capacity=4,
        sip={"phones": [{"name": "alice", "password": PASSWORD}]},
    )


@pytest.fixture(scope="module")
def platform(config: PlatformConfig) -> Iterator[Running]:
    running = start_platform(config)
    yield running
    assert running.stop(timeout=30) == 0, running.log()[-3000:]


def _events(config: PlatformConfig, call_id: str) -> list[CallEvent]:
    return [e for e in config.events() if e.call_id == call_id]


def _wait(predicate, what: str, timeout_s: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout_s} s")


def _phone(
    config: PlatformConfig, tmp: Path, *args: str, name: str = "phone"
) -> subprocess.Popen[bytes]:
    argv = [
        *PARLEY, "phone", "--registrar", f"sip:127.0.0.1:{config.sip_port}", "--user", "alice",
        "--json", str(tmp / f"{name}.json"), "--record", str(tmp / f"{name}.wav"), *args,
    ]  # fmt: skip
    log = (tmp / f"{name}.log").open("wb")
    return subprocess.Popen(argv, env=config.env(), stdout=log, stderr=subprocess.STDOUT)


def _window(recording: np.ndarray, times_ns: list[int], start_ns: int, end_ns: int) -> np.ndarray:
    """What was received between two moments, by the frames' arrival times."""
    times = np.array(times_ns, dtype=np.int64)
    frames = np.flatnonzero((times >= start_ns) & (times < end_ns))
    assert len(frames) > 25, f"only {len(frames)} frames in the window"
    return recording[frames[0] * 320 : (frames[-1] + 1) * 320]


def _heard(signal: np.ndarray, window: np.ndarray) -> float:
    """How clearly 0.5 s stretches of `signal` appear in `window` (best of several)."""
    return max(
        best_correlation(signal[start : start + 8000], window)[0]
        for start in range(0, len(signal) - 8000, 16000)
    )


def test_a_wrong_password_is_refused(platform: Running, config: PlatformConfig, tmp: Path) -> None:
    proc = _phone(config, tmp, "--password", "not-the-password", "--register-only", "--max", "10")
    assert proc.wait(30) == 1
    result = json.loads((tmp / "phone.json").read_text())
    assert not result["registered"] and result["register_status"] == 403, result


def test_monitor_barge_takeover_and_hand_back_from_the_keypad(
    platform: Running, config: PlatformConfig, tmp: Path
) -> None:
    caller_says = chirp_noise(16.0, seed=7)
    supervisor_says = chirp_noise(14.0, seed=11)
    phone = _phone(
        config, tmp, "--password", PASSWORD, "--answer-after", "0.3",
        "--play", str(write_wav(tmp / "supervisor.wav", supervisor_says)),
        "--keys", "1.5:1,4.5:3,7.5:4,10.5:5", "--max", "40",
    )  # fmt: skip
    _wait(lambda: "registered" in (tmp / "phone.log").read_text(), "the phone registered")
    caller = dial(
        f"sip:100@127.0.0.1:{config.sip_port}",
        tmp,
        play=write_wav(tmp / "caller.wav", caller_says),
        hold=0.5,
        background=True,
    )
    answered = _wait(
        lambda: [e for e in config.events() if e.kind is CallEventKind.ANSWERED], "an answer"
    )
    call_id = answered[-1].call_id
    ring = subprocess.run(
        [*PARLEY, "call", "supervise", call_id, "alice"],
        env=config.env(), capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert ring.returncode == 0, ring.stderr

    assert phone.wait(60) == 0, (tmp / "phone.log").read_text()[-2000:]
    [heard_by_caller] = finish_dial(caller, tmp / "dial.json")
    supervisor = json.loads((tmp / "phone.json").read_text())["calls"][0]
    assert [k["digits"] for k in supervisor["dtmf_sent"]] == ["1", "3", "4", "5"]
    assert supervisor["ended_by"] == "far_end", supervisor  # handing back hangs up on them
    assert heard_by_caller["reason"] != "rtp_timeout", heard_by_caller

    events = _events(config, call_id)
    modes = [
        (e.data["phase"], e.data["mode"], e.t_mono_ns)
        for e in events
        if e.kind is CallEventKind.PHASE
    ]
    assert [(p, m) for p, m, _ in modes] == [
        ("with_agent", None),
        ("with_agent", None),  # the supervisor joined: briefing
        ("with_human", "monitor"),
        ("with_human", "barge"),
        ("with_human", "takeover"),
        ("with_agent", None),  # handed back
    ], modes
    sup = [e.data["event"] for e in events if e.kind is CallEventKind.SUPERVISOR]
    assert sup == ["ringing", "answered", "ended"], sup

    caller_rec = read_wav(Path(heard_by_caller["recording"]))
    phone_rec = read_wav(tmp / "phone.wav")
    settle = 300_000_000
    (_, _, monitor), (_, _, barge), (_, _, takeover), (_, _, back) = [
        (p, m, t) for p, m, t in modes[2:]
    ]

    def caller_window(start: int, end: int) -> np.ndarray:
        return _window(caller_rec, heard_by_caller["frame_times_ns"], start + settle, end)

    def phone_window(start: int, end: int) -> np.ndarray:
        return _window(phone_rec, supervisor["frame_times_ns"], start + settle, end)

    # Monitor: the supervisor hears the call; nobody hears the supervisor.
    assert _heard(caller_says, phone_window(monitor, barge)) > 0.5
    assert _heard(supervisor_says, caller_window(monitor, barge)) < 0.3
    assert _heard(caller_says, caller_window(monitor, barge)) > 0.8  # the agent goes on
    # Barge: all hear all.
    assert _heard(supervisor_says, caller_window(barge, takeover)) > 0.4
    assert _heard(caller_says, phone_window(barge, takeover)) > 0.4
    # Takeover: the agent is out; caller and supervisor talk.
    assert _heard(supervisor_says, caller_window(takeover, back)) > 0.8
    assert _heard(caller_says, caller_window(takeover, back)) < 0.3
    assert _heard(caller_says, phone_window(takeover, back)) > 0.8
    # Handed back: the agent again.
    after = caller_window(back, heard_by_caller["ended_mono_ns"])
    assert _heard(caller_says, after) > 0.8
    assert _heard(supervisor_says, after) < 0.3


def test_a_supervisor_who_hangs_up_mid_takeover_leaves_the_caller_with_the_agent(
    platform: Running, config: PlatformConfig, tmp: Path
) -> None:
    caller_says = chirp_noise(9.0, seed=7)
    phone = _phone(
        config, tmp, "--password", PASSWORD, "--answer-after", "0.2",
        "--keys", "0.8:4", "--hangup-after", "3.0", "--max", "30",
    )  # fmt: skip
    _wait(lambda: "registered" in (tmp / "phone.log").read_text(), "the phone registered")
    since = time.monotonic_ns()
    caller = dial(
        f"sip:100@127.0.0.1:{config.sip_port}",
        tmp,
        play=write_wav(tmp / "caller.wav", caller_says),
        hold=0.5,
        background=True,
    )
    answered = _wait(
        lambda: [
            e for e in config.events() if e.kind is CallEventKind.ANSWERED and e.t_mono_ns > since
        ],
        "an answer",
    )
    call_id = answered[-1].call_id
    ring = subprocess.run(
        [*PARLEY, "call", "supervise", call_id, "alice"],
        env=config.env(), capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert ring.returncode == 0, ring.stderr
    assert phone.wait(40) == 0, (tmp / "phone.log").read_text()[-2000:]
    [heard_by_caller] = finish_dial(caller, tmp / "dial.json")
    assert heard_by_caller["reason"] != "rtp_timeout", heard_by_caller

    events = _events(config, call_id)
    modes = [(e.data["phase"], e.data["mode"]) for e in events if e.kind is CallEventKind.PHASE]
    assert modes[-2:] == [("with_human", "takeover"), ("with_agent", None)], modes
    [ended] = [
        e for e in events if e.kind is CallEventKind.SUPERVISOR and e.data["event"] == "ended"
    ]
    assert ended.data["by"] == "supervisor"
    [call_ended] = [e for e in events if e.kind is CallEventKind.ENDED]
    assert call_ended.t_mono_ns > ended.t_mono_ns + 2_000_000_000  # the caller stayed on
    back = [e for e in events if e.kind is CallEventKind.PHASE][-1].t_mono_ns
    caller_rec = read_wav(Path(heard_by_caller["recording"]))
    after = _window(
        caller_rec, heard_by_caller["frame_times_ns"], back + 300_000_000, call_ended.t_mono_ns
    )
    assert _heard(caller_says, after) > 0.8  # the agent (echo) has the caller again
