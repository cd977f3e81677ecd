"""Escalations under load: trigger → supervisor's phone ringing, and what 5 escalations in
progress do to the other callers of a full platform.

Real processes on loopback: `parley run` (edge, 7 workers of 3 callers and 1 supervisor slot,
the escalation service, echo line), 20 callers (`parley dial`, 4 calls per process) talking
noise for the whole call, and 5 registered supervisor phones (`parley phone`). In the loaded
round, 5 of the callers press 0 three seconds in: the service puts each on hold, queues it and
offers it to a free supervisor, whose phone rings (the worker dials it through the edge),
answers after 0.3 s, hears the spoken briefing, takes over at 1 s and hangs up at 6 s (the call
goes back to the agent). A baseline round runs the same 20 calls with nobody pressing 0.

Measured:
1. trigger → ringing: from the worker's `call.dtmf` event of the caller's 0 to the INVITE
   reaching the supervisor's phone (its `ringing_mono_ns`; one clock, one host) — the service's
   decision, the hold, the queue's tick (0.5 s by default: `tick_s`), the command to the
   worker and the INVITE through the edge; the human's answering time is not in it;
2. for the 15 callers who did not escalate: late frames (agent-port underruns over frames
   sent, from `call.ended`) and the echo's mouth-to-ear round trip (caller → Parley → caller,
   the median lag of 250 ms pieces of what they said in what they heard), loaded vs baseline;
3. the supervisor's answer → their briefing starting to play (its synthesis, begun when the
   phone started ringing, is what can make them wait).

    python bench/escalation_load.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import describe
from telephony.events import CallEvent, CallEventKind, read_events
from tests.support import (
    PARLEY,
    PlatformConfig,
    Running,
    chirp_noise,
    dial,
    echo_match,
    finish_dial,
    read_wav,
    start_platform,
    write_wav,
)

CALLERS = 20
ESCALATING = 5
CALL_S = 14.0
PASSWORD = "bench-super-1"


def _config(tmp: Path) -> PlatformConfig:
    phones = [{"name": f"sup{i}", "password": PASSWORD} for i in range(ESCALATING)]
    return PlatformConfig(
        tmp,
        capacity=28,  # reserves ports for 7 workers; 21 callers and 7 supervisor slots below
        rtp_timeout_s=30,
        sip={"call_capacity": 21, "supervisor_slots": 1, "phones": phones},
        extra={
            "queues": [{"name": "default", "max_wait_s": 20, "offer_timeout_s": 5}],
            "supervisors": [{"name": p["name"], "phone": p["name"]} for p in phones],
        },
    )


def _events(config: PlatformConfig) -> list[CallEvent]:
    events: list[CallEvent] = []
    for path in sorted((config.tmp / "var" / "events").glob("*.jsonl")):
        events.extend(read_events(path))
    return events


def _phones(config: PlatformConfig, work: Path) -> list[tuple[str, subprocess.Popen[bytes]]]:
    phones = []
    for i in range(ESCALATING):
        name = f"sup{i}"
        argv = [
            *PARLEY, "phone", "--registrar", f"sip:127.0.0.1:{config.sip_port}", "--user", name,
            "--password", PASSWORD, "--answer-after", "0.3", "--keys", "1:4",
            "--hangup-after", "6", "--max", "60", "--json", str(work / f"{name}.json"),
        ]  # fmt: skip
        log = (work / f"{name}.log").open("wb")
        phones.append(
            (name, subprocess.Popen(argv, env=config.env(), stdout=log, stderr=subprocess.STDOUT))
        )
    deadline = time.monotonic() + 30
    for name, _ in phones:
        while "registered" not in (work / f"{name}.log").read_text(errors="replace"):
            if time.monotonic() > deadline:
                said = (work / f"{name}.log").read_text(errors="replace")[-1500:]
                raise SystemExit(f"phone {name} did not register:\n{said}")
            time.sleep(0.1)
    return phones


def one_round(config: PlatformConfig, work: Path, *, escalate: bool) -> dict[str, Any]:
    work.mkdir(parents=True)
    phones = _phones(config, work) if escalate else []
    says = chirp_noise(CALL_S, seed=11)
    play = write_wav(work / "caller.wav", says)
    uri = f"sip:100@127.0.0.1:{config.sip_port}"
    since = time.monotonic_ns()
    # 20 callers, 4 calls per process; in the loaded round 5 of them press 0 (4 + 1).
    groups = [(4, False), (4, False), (4, False), (3, False), (4, escalate), (1, escalate)]
    callers = [
        (
            pressing,
            dial(
                uri,
                work,
                play=play,
                hold=0.5,
                count=count,
                dtmf="0" if pressing else "",
                dtmf_at=3.0,
                max_s=60,
                name=f"dial{n}",
                background=True,
            ),
            work / f"dial{n}.json",
        )
        for n, (count, pressing) in enumerate(groups)
    ]
    results = [(pressing, finish_dial(proc, out, timeout=90)) for pressing, proc, out in callers]
    for _name, phone in phones:
        phone.wait(60)
    time.sleep(2.5)  # the last media statistics and call.ended events
    events = [e for e in _events(config) if e.t_mono_ns >= since]

    quiet_lags, scores = [], []
    for pressing, legs in results:
        if pressing:
            continue
        for leg in legs if isinstance(legs, list) else [legs]:
            score, lag = echo_match(says[16000:-16000], read_wav(Path(leg["recording"])))
            scores.append(score)
            quiet_lags.append((lag - 16000) / 16.0)  # samples → ms, less the 1 s cut off
    escalated = {
        e.call_id
        for e in events
        if e.kind is CallEventKind.ESCALATION and e.data["event"] == "offer"
    }
    ended = [e for e in events if e.kind is CallEventKind.ENDED and e.call_id not in escalated]
    media: list[dict[str, Any]] = [e.data.get("media") or {} for e in ended]  # type: ignore[misc]
    frames = sum(int(m.get("frames_out", 0)) for m in media)
    late = sum(int(m.get("underruns", 0)) for m in media)

    rings: list[float] = []
    for name, _ in phones:
        summary = json.loads((work / f"{name}.json").read_text())
        offers = [
            e
            for e in events
            if e.kind is CallEventKind.ESCALATION
            and e.data["event"] == "offer"
            and e.data["supervisor"] == name
        ]
        for call, offer in zip(summary.get("calls", []), offers, strict=False):
            pressed = [
                e.t_mono_ns
                for e in events
                if e.call_id == offer.call_id and e.kind is CallEventKind.DTMF
            ]
            if pressed and call.get("ringing_mono_ns"):
                rings.append((call["ringing_mono_ns"] - pressed[0]) / 1e6)
    briefed = []  # the supervisor's answer -> their briefing starting to play
    for call_id in escalated:
        legs = [e for e in events if e.call_id == call_id and e.kind is CallEventKind.SUPERVISOR]
        answered = [e.t_mono_ns for e in legs if e.data.get("event") == "answered"]
        briefing = [e.t_mono_ns for e in legs if e.data.get("event") == "briefing"]
        if answered and briefing:
            briefed.append((briefing[0] - answered[0]) / 1e6)
    return {
        "briefed_ms": briefed,
        "answered": sum(len(legs) if isinstance(legs, list) else 1 for _, legs in results),
        "escalated": len(escalated),
        "rings_ms": rings,
        "echo_ms": quiet_lags,
        "echo_scores": scores,
        "late_pct": late / max(1, frames + late) * 100,
    }


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="keep the run's folder here (logs, events)")
    parser.add_argument(
        "--rounds", type=int, default=2, help="loaded rounds (and as many baselines)"
    )
    args = parser.parse_args()
    print(describe())
    with tempfile.TemporaryDirectory(prefix="parley-escalation-load-") as folder:
        tmp = args.keep or Path(folder)
        tmp.mkdir(parents=True, exist_ok=True)
        config = _config(tmp)
        running: Running = start_platform(config)
        try:
            deadline = time.monotonic() + 30
            while "escalation service up" not in running.log():
                if time.monotonic() > deadline:
                    raise SystemExit("the escalation service did not start")
                time.sleep(0.2)
            time.sleep(3)  # its voice warms up; it finds every worker's event socket
            loaded, baseline = [], []
            for n in range(args.rounds):
                print(f"round {n + 1}: baseline (20 calls) ...", flush=True)
                baseline.append(one_round(config, tmp / f"base{n}", escalate=False))
                print(f"round {n + 1}: loaded (20 calls, 5 escalations) ...", flush=True)
                loaded.append(one_round(config, tmp / f"load{n}", escalate=True))
        finally:
            running.stop(timeout=60)

    def show(label: str, rounds: list[dict[str, Any]]) -> None:
        echo = [v for r in rounds for v in r["echo_ms"]]
        scores = [v for r in rounds for v in r["echo_scores"]]
        late = ", ".join(f"{r['late_pct']:.2f} %" for r in rounds)
        print(
            f"{label}: answered {[r['answered'] for r in rounds]}, escalated "
            f"{[r['escalated'] for r in rounds]}; the 15 others: late frames "
            f"{late}; echo round trip "
            f"p50 {statistics.median(echo):.0f} ms, p95 {_pct(echo, 0.95):.0f} ms, "
            f"max {max(echo):.0f} ms (match {min(scores):.2f}..{max(scores):.2f})"
        )

    show("baseline", baseline)
    show("loaded  ", loaded)
    rings = [v for r in loaded for v in r["rings_ms"]]
    if rings:
        print(
            f"trigger (caller's 0) -> supervisor's phone ringing: n={len(rings)}, "
            f"p50 {statistics.median(rings):.0f} ms, p99 {_pct(rings, 0.99):.0f} ms, "
            f"max {max(rings):.0f} ms"
        )
    # The speech of a briefing is kept by its text: the first round's are new, later rounds
    # find the same texts (same reason, queue and wait) already spoken.
    for n, r in enumerate(loaded, start=1):
        briefed = sorted(max(0.0, v) for v in r["briefed_ms"])
        if briefed:
            print(
                f"round {n}: supervisor answers -> briefing starts in their ear (ms): "
                f"{', '.join(f'{v:.0f}' for v in briefed)}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
