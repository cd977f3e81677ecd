"""Concurrent bridged calls through the edge: late frames, loss, CPU and memory per worker.

sipp places N concurrent calls (PCMU with RTP audio from the caller), each held long enough
for all N to overlap for `seconds`. Every call is bridged to the echo session, so each
received frame goes through the bridge and back. A "late frame" is an agent frame the
conference clock asked for before the bridge had queued it (an underrun).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from telephony import sipp
from telephony.events import CallEventKind, media_totals, read_events
from telephony.sipprobe import wait_answering

ROOT = Path(__file__).resolve().parent.parent


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def _worker_pids() -> list[int]:
    out = subprocess.run(
        ["pgrep", "-f", "admin.cli worker"], capture_output=True, text=True, check=False
    )
    return [int(p) for p in out.stdout.split()]


def run_one(calls: int, seconds: float, base_port: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp_name:
        tmp = Path(tmp_name)
        workers = -(-calls // 4)
        config = tmp / "parley.yaml"
        config.write_text(
            json.dumps(
                {
                    "data_dir": str(tmp / "var"),
                    "log_level": "WARNING",
                    # The echo session: this measures the media path, not a voice model.
                    "lines": [{"name": "main", "numbers": ["100"], "agent": "echo"}],
                    "default_line": "main",
                    "sip": {
                        "host": "127.0.0.1",
                        "port": base_port,
                        "call_capacity": workers * 4,
                        "worker_base_port": base_port + 1,
                        "rtp_base_port": base_port + 200,
                        "stats_interval_s": 0,
                    },
                }
            )
        )
        env = {**os.environ, "PARLEY_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
        platform = subprocess.Popen(
            [sys.executable, "-m", "admin.cli", "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp / "platform.log").open("wb"),
            start_new_session=True,
        )
        try:
            wait_answering("127.0.0.1", base_port, timeout_s=60)
            for i in range(workers):
                wait_answering("127.0.0.1", base_port + 1 + i, timeout_s=60)
            time.sleep(3)
            pids = _worker_pids()
            idle_rss = sum(_rss_mb(p) for p in pids) / max(1, len(pids))
            scenario = sipp.prepare(tmp)
            ramp_s = calls / 10
            hold_ms = int((ramp_s + seconds) * 1000)
            cpu_before = sum(_cpu_s(p) for p in pids)
            started = time.monotonic()
            caller = subprocess.Popen(
                sipp.command(
                    f"127.0.0.1:{base_port}",
                    scenario,
                    local_port=base_port + 150,
                    calls=calls,
                    rate=10,
                    hold_ms=hold_ms,
                    limit=calls,
                    stats=tmp / "stat.csv",
                ),
                cwd=tmp,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(ramp_s + seconds / 2)
            busy_rss = sum(_rss_mb(p) for p in pids) / max(1, len(pids))
            caller.wait(timeout=ramp_s + seconds + 150)
            elapsed = time.monotonic() - started
            cpu = sum(_cpu_s(p) for p in pids) - cpu_before
            time.sleep(2)
            final = sipp.final_stats(tmp / "stat.csv")
            events = [
                e
                for path in (tmp / "var" / "events").glob("*.jsonl")
                for e in read_events(path)
                if e.kind is CallEventKind.ENDED
            ]
            totals = media_totals(events)
            frames_out = totals.get("frames_out", 0)
            underruns = totals.get("underruns", 0)
            overflow = totals.get("rx_overflow_drops", 0)
            rx = totals.get("rx_packets", 0)
            lost = totals.get("rx_lost", 0)
            return {
                "calls": calls,
                "ok": int(final.get("SuccessfulCall(C)", 0)),
                "failed": int(final.get("FailedCall(C)", 0)),
                "late_pct": underruns / max(1, frames_out + underruns) * 100,
                "overflow": overflow,
                "rx_loss_pct": lost / max(1, rx + lost) * 100,
                "workers": len(pids),
                "rss_idle_mb": idle_rss,
                "rss_busy_mb": busy_rss,
                "worker_cpu_pct": cpu / elapsed * 100,
            }
        finally:
            os.killpg(platform.pid, signal.SIGTERM)
            platform.wait(30)


def run_capacity(call_counts: list[int], seconds: float) -> None:
    print(f"SIP through the edge: sipp PCMU callers, echo session, {seconds:.0f} s all-up")
    print(
        "  calls  ok  failed  late frames  rx overflow  RTP loss  workers  "
        "RSS/worker idle→busy  worker CPU"
    )
    for calls in call_counts:
        r = run_one(calls, seconds, base_port=41000)
        print(
            f"  {r['calls']:5} {r['ok']:3} {r['failed']:7} {r['late_pct']:10.2f} % "
            f"{r['overflow']:11} {r['rx_loss_pct']:7.2f} % {r['workers']:8} "
            f"{r['rss_idle_mb']:8.1f} → {r['rss_busy_mb']:5.1f} MB {r['worker_cpu_pct']:9.0f} %"
        )
