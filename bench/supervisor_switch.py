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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import running
from bench.machine import describe
from bench.running import PARLEY
from telephony.commands import ReattachAgent, SetMode
from telephony.events import CallEventKind
from telephony.inbox import inbox_path, send_command
from telephony.phases import Mode
from tests.support import chirp_noise, read_wav, write_wav

BASE_PORT = 43000
PASSWORD = "bench-super-1"
MODES = ("monitor", "takeover", "monitor", "barge", "takeover", "barge", "monitor", "takeover")


@contextlib.contextmanager
def platform(tmp: Path) -> Iterator[Path]:
    with running.platform(
        tmp,
        BASE_PORT,
        sip={"phones": [{"name": "alice", "password": PASSWORD}]},
        lines=[{"name": "echo", "numbers": ["199"], "agent": "echo"}],
        default_line=None,
    ) as config:
        yield config


def answered_worker(tmp: Path, call_id: str) -> int:
    started = next(
        e for e in running.events(tmp) if e.call_id == call_id and e.kind is CallEventKind.STARTED
    )
    return int(str(started.data["worker"]))


def one_call(tmp: Path, config: Path, n: int) -> tuple[float, list[tuple[str, float]]]:
    """(ms from the command to the phone ringing, [(switch, gap ms)]) for one call."""
    work = tmp / f"call{n}"
    work.mkdir()
    env = running.env(config)
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
    answered = running.answered_since(tmp, since)
    sent_ns = time.monotonic_ns()
    subprocess.run(
        [*PARLEY, "call", "supervise", answered.call_id, "alice"], env=env, check=True,
        capture_output=True,
    )  # fmt: skip
    inbox = inbox_path(tmp / "var" / "run", answered_worker(tmp, answered.call_id))
    running.supervisor_answered(tmp, answered.call_id)
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
    events = [e for e in running.events(tmp) if e.call_id == answered.call_id]
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
