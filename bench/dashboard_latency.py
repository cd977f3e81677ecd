"""Event → board latency: how long after a media worker emits a call event the dashboard page
in a browser has it, with 20 live calls.

Real processes on loopback: `parley run` (edge, 6 workers, the echo line), 20 callers
(`parley dial`, 4 calls per process) pressing a key every second for the whole call, and a
headless Debian chromium (Playwright) logged in to the dashboard with one of the calls open.
Each message the page receives carries `t_event`, the wall time at which the worker emitted
the event; the page notes `Date.now() - t_event` on arrival (one clock, one host). Measured
over the messages that an event caused (card changes for every call, and the open call's
timeline), not the snapshots sent on joining.

    python bench/dashboard_latency.py [--calls 20] [--seconds 20]
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.sync_api import sync_playwright

from bench.machine import describe
from telephony.events import CallEventKind
from tests.browser_support import chromium_path, log_in
from tests.support import PARLEY, PlatformConfig, dial, finish_dial, start_platform

PASSWORD = "bench-dashboard-1"


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0, help="each call's length")
    args = parser.parse_args()
    print(describe())
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        config = PlatformConfig(tmp, capacity=args.calls + 4, rtp_timeout_s=30)
        print(f"starting the platform ({-(-config.capacity // 4)} workers)…", flush=True)
        platform = start_platform(config)
        try:
            env = {**config.env(), "PARLEY_USER_PASSWORD": PASSWORD}
            subprocess.run(
                [*PARLEY, "users", "create", "bench", "--role", "admin"],
                env=env, cwd=tmp, check=True, capture_output=True, timeout=60,
            )  # fmt: skip
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium_path())
                page = browser.new_page(base_url=f"http://127.0.0.1:{config.http_port}")
                log_in(page, "bench", PASSWORD)
                page.evaluate("window.parley.latencies.length = 0")
                keys = ",".join(f"{t}:1" for t in range(1, int(args.seconds) - 1))
                print(f"{args.calls} calls of {args.seconds:.0f} s, a key a second…", flush=True)
                processes = []
                for n in range(0, args.calls, 4):
                    count = min(4, args.calls - n)
                    processes.append(
                        dial(
                            f"sip:100@127.0.0.1:{config.sip_port}", tmp, count=count,
                            hold=args.seconds, max_s=args.seconds + 30, name=f"dial-{n}",
                            options=("--keys", keys), background=True,
                        )
                    )  # fmt: skip
                time.sleep(3)
                calls = [e.call_id for e in config.events() if e.kind is CallEventKind.ANSWERED]
                if calls:
                    page.goto(f"/#/call/{calls[0]}")
                for n, process in enumerate(processes):
                    finish_dial(process, tmp / f"dial-{n * 4}.json", timeout=args.seconds + 60)
                time.sleep(2)
                seen: list[float] = page.evaluate("window.parley.latencies")
                rows = page.evaluate("window.parley.messages")
                browser.close()
        finally:
            platform.stop(timeout=30)
    latencies_ms = [1000 * s for s in seen]
    result = {
        "calls": args.calls,
        "messages": rows,
        "measured": len(latencies_ms),
        "p50_ms": round(statistics.median(latencies_ms), 1),
        "p95_ms": round(_percentile(latencies_ms, 95), 1),
        "max_ms": round(max(latencies_ms), 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
