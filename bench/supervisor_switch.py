"""A supervisor stepping in and out of calls: how long the phone takes to ring, and what the
caller hears at each mode switch.

Real processes on loopback: `parley run` (edge, workers, echo line), a `parley dial` caller
talking without pause (noise A, echoed back by the agent), and a registered `parley phone`
supervisor talking without pause (noise B); the modes are switched by command (the path the
API and dashboard use) every 1.5 s. (From the supervisor's keypad, a phone sends no audio
while its key's RFC 4733 event plays, ~160 ms: heard as a gap on a switch to takeover or
barge, it is the phone's, not Parley's.) For each call:

1. ring: from `parley call supervise` sending its command to the INVITE reaching the phone
   (what a trigger adds to this is the escalation service's decision, measured apart);
2. the caller's audio gap at each switch: the longest run of 20 ms frames around the switch
   (from 200 ms before to 400 ms after the worker's `call.phase` event) whose level is below
   a tenth of the caller's median level — both voices are continuous, so any frame of
   silence there is a gap the switch made.

    python bench/supervisor_switch.py [--calls 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import describe
from telephony.commands import ReattachAgent, SetMode
from telephony.events import CallEvent, CallEventKind, read_events
from telephony.inbox import inbox_path, send_command
from telephony.phases import Mode
from telephony.sipprobe import wait_answering
from tests.support import chirp_noise, read_wav, wait_for, write_wav

ROOT = Path(__file__).resolve().parent.parent
PARLEY = [sys.executable, "-m", "admin.cli"]
BASE_PORT = 43000
PASSWORD = "bench-super-1"
MODES = ("monitor", "takeover", "monitor", "barge", "takeover", "barge", "monitor", "takeover")


def _env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env["PYTHONPATH"] = str(ROOT)
    env["PARLEY_CONFIG"] = str(config)
    return env


@contextlib.contextmanager
def platform(tmp: Path) -> Iterator[Path]:
    config = tmp / "parley.yaml"
    config.write_text(
        json.dumps(
            {
                "data_dir": str(tmp / "var"),
                "log_level": "WARNING",
                "sip": {
                    "host": "127.0.0.1",
                    "port": BASE_PORT,
                    "call_capacity": 4,
                    "worker_base_port": BASE_PORT + 2,
                    "rtp_base_port": BASE_PORT + 10,
                    "tls": {"enabled": False},
                    "phones": [{"name": "alice", "password": PASSWORD}],
                },
                "lines": [{"name": "echo", "numbers": ["199"], "agent": "echo"}],
                "default_line": None,
            }
        )
    )
    log = (tmp / "platform.log").open("wb")
    proc = subprocess.Popen([*PARLEY, "run"], env=_env(config), stdout=log, stderr=log)
    try:
        wait_answering("127.0.0.1", BASE_PORT, timeout_s=60)
        wait_answering("127.0.0.1", BASE_PORT + 2, timeout_s=60)
        yield config
    finally:
        proc.terminate()
        proc.wait(30)


def _events(tmp: Path) -> list[CallEvent]:
    found: list[CallEvent] = []
    for path in sorted((tmp / "var" / "events").glob("worker-*.jsonl")):
        found.extend(read_events(path))
    return sorted(found, key=lambda e: e.t_mono_ns)


def answered_worker(tmp: Path, call_id: str) -> int:
    started = next(
        e for e in _events(tmp) if e.call_id == call_id and e.kind is CallEventKind.STARTED
    )
    return int(str(started.data["worker"]))


def one_call(tmp: Path, config: Path, n: int) -> tuple[float, list[tuple[str, float]]]:
    """(ms from the command to the phone ringing, [(switch, gap ms)]) for one call."""
    work = tmp / f"call{n}"
    work.mkdir()
    env = _env(config)
    phone = subprocess.Popen(
        [*PARLEY, "phone", "--registrar", f"sip:127.0.0.1:{BASE_PORT}", "--user", "alice",
         "--password", PASSWORD, "--answer-after", "0.2",
         "--play", str(write_wav(work / "b.wav", chirp_noise(18, seed=11))),
         "--json", str(work / "phone.json"), "--max", "60", "-q"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(2.5)  # registered
    since = time.monotonic_ns()
    caller = subprocess.Popen(
        [*PARLEY, "dial", f"sip:199@127.0.0.1:{BASE_PORT}", "--play",
         str(write_wav(work / "a.wav", chirp_noise(20, seed=7))), "--hold", "0.3", "--timeline",
         "--record", str(work / "caller.wav"), "--json", str(work / "caller.json"), "-q"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    answered = wait_for(
        lambda: [
            e for e in _events(tmp) if e.kind is CallEventKind.ANSWERED and e.t_mono_ns > since
        ],
        "the call answered",
        20.0,
    )[-1]
    sent_ns = time.monotonic_ns()
    subprocess.run(
        [*PARLEY, "call", "supervise", answered.call_id, "alice"], env=env, check=True,
        capture_output=True,
    )  # fmt: skip
    inbox = inbox_path(tmp / "var" / "run", answered_worker(tmp, answered.call_id))
    wait_for(
        lambda: [
            e
            for e in _events(tmp)
            if e.call_id == answered.call_id
            and e.kind is CallEventKind.SUPERVISOR
            and e.data["event"] == "answered"
        ],
        "the supervisor answered",
        20.0,
    )
    for mode in MODES:
        time.sleep(1.5)
        asyncio.run(
            send_command(inbox, SetMode(call_id=answered.call_id, actor="bench", mode=Mode(mode)))
        )
    time.sleep(1.5)
    asyncio.run(send_command(inbox, ReattachAgent(call_id=answered.call_id, actor="bench")))
    phone.wait(60)
    caller.wait(60)
    rung = json.loads((work / "phone.json").read_text())["calls"][0]["ringing_mono_ns"]
    # The CLI's own start (a Python process importing Parley) is not the platform's time:
    # count from the command's arrival, the worker's call.command event.
    events = [e for e in _events(tmp) if e.call_id == answered.call_id]
    commanded = next(e for e in events if e.kind is CallEventKind.COMMAND).t_mono_ns
    phases = [e for e in events if e.kind is CallEventKind.PHASE][2:]  # after the briefing
    ring_ms = (rung - max(commanded, sent_ns)) / 1e6
    heard = json.loads((work / "caller.json").read_text())[0]
    audio = read_wav(work / "caller.wav")
    times = np.array(heard["frame_times_ns"], dtype=np.int64)
    level = np.sqrt(np.mean(audio[: len(times) * 320].reshape(-1, 320) ** 2, axis=1))
    quiet = level < np.median(level) / 10
    gaps = []
    for event in phases:
        t = event.t_mono_ns
        around = quiet[(times >= t - 200_000_000) & (times < t + 400_000_000)]
        longest = run = 0
        for q in around:
            run = run + 1 if q else 0
            longest = max(longest, run)
        gaps.append((str(event.data["mode"] or "agent"), longest * 20.0))
    return ring_ms, gaps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    print(describe())
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as name, platform(Path(name)) as cfg:
        tmp = Path(name)
        rings: list[float] = []
        gaps: list[tuple[str, float]] = []
        for n in range(args.calls):
            ring_ms, call_gaps = one_call(tmp, cfg, n)
            rings.append(ring_ms)
            gaps += call_gaps
            print(f"call {n + 1}: ring {ring_ms:.0f} ms; gaps {[g for _, g in call_gaps]} ms")
    print(f"\ncommand -> phone ringing: p50 {statistics.median(rings):.0f} ms, "
          f"max {max(rings):.0f} ms over {len(rings)} calls")  # fmt: skip
    for mode in sorted({m for m, _ in gaps}):
        values = [g for m, g in gaps if m == mode]
        print(f"switch to {mode:9s}: caller's gap max {max(values):.0f} ms, "
              f"{sum(v > 40 for v in values)} of {len(values)} over 40 ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
