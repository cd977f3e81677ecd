"""The edge on a real network: callers in other network namespaces, through trunks.

Prints, for callers on 198.18.0.0/15 addresses (root needed, `ip netns`):
1. call setup through the edge with trunk checks: sipp (UDP, PCMU + RTP) from a trunk's
   address at 10, 20 and 40 calls/s: answered, failed, INVITE→200 time;
2. setup over TLS with digest credentials and SRTP against UDP without them: `parley dial`
   processes (4 calls each) from a second trunk, INVITE→answer p50/p95;
3. legitimate calls while another source floods the edge with INVITEs: answered / placed, the
   flooder banned or not, with a no-flood baseline;
4. late frames, loss and jitter at capacity (20 calls, echo session) with every caller in
   another namespace.

    python bench/edge_network.py [--seconds 20] [--flood-rate 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import describe
from telephony import sipp
from telephony.edge import CTL_SOCKET_NAME
from telephony.edge_stats import read_statistics
from telephony.events import CallEventKind, media_totals, read_events
from telephony.netns import CallerHost, caller_host
from telephony.sipprobe import wait_answering

ROOT = Path(__file__).resolve().parent.parent
PARLEY = [sys.executable, "-m", "admin.cli"]
BASE_PORT = 42000
CAPACITY = 20
PBX_USER, PBX_PASSWORD = "bench-pbx", "bench-secret-1"


def _env(config: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env["PYTHONPATH"] = str(ROOT)
    if config is not None:
        env["PARLEY_CONFIG"] = str(config)
    return env


@contextlib.contextmanager
def platform(tmp: Path, carrier: CallerHost, pbx: CallerHost) -> Iterator[Path]:
    """`parley run` with two trunks and an echo line; yields its data folder."""
    config = tmp / "parley.yaml"
    workers = CAPACITY // 4
    config.write_text(
        json.dumps(
            {
                "data_dir": str(tmp / "var"),
                "log_level": "WARNING",
                "sip": {
                    "host": "0.0.0.0",
                    "port": BASE_PORT,
                    "advertise_host": carrier.gateway,
                    "call_capacity": CAPACITY,
                    "worker_base_port": BASE_PORT + 2,
                    "rtp_base_port": BASE_PORT + 2 + workers,
                    "stats_interval_s": 0,
                    "tls": {"port": BASE_PORT + 1},
                    "trunks": [
                        {"name": "carrier", "sources": [f"{carrier.address}/32"]},
                        {
                            "name": "pbx",
                            "sources": [pbx.address],
                            "username": PBX_USER,
                            "password": PBX_PASSWORD,
                        },
                    ],
                },
                "lines": [{"name": "echo", "numbers": ["199"], "agent": "echo"}],
                "default_line": "echo",
            }
        )
    )
    process = subprocess.Popen(
        [*PARLEY, "run"],
        env=_env(config),
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "platform.log").open("wb"),
        start_new_session=True,
    )
    try:
        wait_answering("127.0.0.1", BASE_PORT, timeout_s=60)
        for i in range(workers):
            wait_answering("127.0.0.1", BASE_PORT + 2 + i, timeout_s=60)
        time.sleep(3)  # the edge's probes mark every worker up
        yield tmp / "var"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)


def _sipp(
    host: CallerHost, tmp: Path, tag: str, *, calls: int, rate: int, hold_ms: int
) -> dict[str, str]:
    work = tmp / tag
    work.mkdir()
    scenario = sipp.prepare(work)
    stats = work / "stat.csv"
    argv = sipp.command(
        f"{host.gateway}:{BASE_PORT}",
        scenario,
        local_port=BASE_PORT + 500,
        calls=calls,
        rate=rate,
        hold_ms=hold_ms,
        limit=CAPACITY,
        stats=stats,
        local_host=host.address,
    )
    subprocess.run(
        host.command(argv),
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=calls / rate + hold_ms / 1000 + 180,
        check=False,
    )
    return sipp.final_stats(stats)


def setup_rates(carrier: CallerHost, tmp: Path) -> None:
    print("\n1. Call setup through the edge, trunk checked (sipp, UDP, PCMU + RTP, 0.3 s calls)")
    print("   rate/s  placed  answered  failed")
    for rate in (10, 20, 40):
        calls = rate * 10
        final = _sipp(carrier, tmp, f"rate-{rate}", calls=calls, rate=rate, hold_ms=300)
        print(
            f"   {rate:6}  {int(final.get('TotalCallCreated', 0)):6}  "
            f"{int(final.get('SuccessfulCall(C)', 0)):8}  {int(final.get('FailedCall(C)', 0)):6}"
        )


def _dial(
    host: CallerHost, tmp: Path, tag: str, uri: str, extra: list[str]
) -> subprocess.Popen[bytes]:
    out = tmp / f"{tag}.json"
    argv = [*PARLEY, "dial", uri, "--count", "4", "--hold", "0.3", "--max", "20", "-q"]
    argv += ["--json", str(out), "--bind", host.address, *extra]
    env = _env()
    env["PARLEY_DIAL_PASSWORD"] = PBX_PASSWORD
    return subprocess.Popen(host.command(argv), env=env, stdout=subprocess.DEVNULL)


def _setup_times(
    host: CallerHost, tmp: Path, tag: str, uri: str, extra: list[str], *, rounds: int
) -> list[float]:
    times = []
    for r in range(rounds):
        procs = [(_dial(host, tmp, f"{tag}-{r}-{i}", uri, extra), i) for i in range(3)]
        for proc, i in procs:
            proc.wait(60)
            path = tmp / f"{tag}-{r}-{i}.json"
            if not path.exists():
                continue
            for result in json.loads(path.read_text()):
                if result["answered"]:
                    times.append((result["answered_mono_ns"] - result["placed_mono_ns"]) / 1e6)
    return times


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def tls_setup(carrier: CallerHost, pbx: CallerHost, tmp: Path) -> None:
    print("\n2. Setup time, INVITE → answered (parley dial, 12 calls at a time, 5 rounds)")
    print("   path                                   answered  p50 ms  p95 ms")
    cases = [
        ("UDP, source-address trunk", carrier, f"sip:199@{carrier.gateway}:{BASE_PORT}", []),
        (
            "UDP, digest trunk",
            pbx,
            f"sip:199@{pbx.gateway}:{BASE_PORT}",
            ["--user", PBX_USER],
        ),
        (
            "TLS + SRTP, digest trunk",
            pbx,
            f"sip:199@{pbx.gateway}:{BASE_PORT + 1};transport=tls",
            ["--user", PBX_USER, "--srtp", "required"],
        ),
    ]
    for name, host, uri, extra in cases:
        times = _setup_times(host, tmp, name.split(",")[0].replace(" ", ""), uri, extra, rounds=5)
        if not times:
            print(f"   {name:38}  0")
            continue
        print(
            f"   {name:38}  {len(times):8}  {statistics.median(times):6.0f}  "
            f"{_percentile(times, 0.95):6.0f}"
        )


def _edge_counter(data: Path, name: str) -> int:
    return read_statistics(data / "edge" / CTL_SOCKET_NAME).get(("script", name), 0)


def under_flood(carrier: CallerHost, tmp: Path, data: Path, flood_rate: int) -> None:
    print(
        f"\n3. Legitimate calls (10/s, 100 calls) while another source sends {flood_rate} INVITEs/s"
    )
    print("   flood   placed  answered  failed  banned  flood requests dropped")
    flooder = carrier.add_address(66)
    for flooding in (False, True):
        banned, dropped = (
            _edge_counter(data, "parley_banned_sources"),
            _edge_counter(data, "parley_dropped_banned"),
        )
        flood = None
        if flooding:
            argv = [sys.executable, "-m", "tests.sip_flood", carrier.gateway, str(BASE_PORT)]
            argv += ["--bind", flooder, "--rate", str(flood_rate), "--seconds", "30"]
            flood = subprocess.Popen(carrier.command(argv), env=_env(), stdout=subprocess.PIPE)
            time.sleep(1.0)
        final = _sipp(carrier, tmp, f"flood-{flooding}", calls=100, rate=10, hold_ms=1000)
        if flood is not None:
            flood.wait(60)
        print(
            f"   {'yes' if flooding else 'no':5} {int(final.get('TotalCallCreated', 0)):7}  "
            f"{int(final.get('SuccessfulCall(C)', 0)):8}  {int(final.get('FailedCall(C)', 0)):6}"
            f"  {_edge_counter(data, 'parley_banned_sources') - banned:6}"
            f"  {_edge_counter(data, 'parley_dropped_banned') - dropped:10}"
        )


def at_capacity(carrier: CallerHost, tmp: Path, data: Path, seconds: float) -> None:
    print(f"\n4. {CAPACITY} calls at once from another namespace, {seconds:.0f} s all up (echo)")
    since = time.monotonic_ns()
    ramp_s = CAPACITY / 10
    final = _sipp(
        carrier,
        tmp,
        "capacity",
        calls=CAPACITY,
        rate=10,
        hold_ms=int((ramp_s + seconds) * 1000),
    )
    time.sleep(2)
    ended = [
        e
        for path in (data / "events").glob("worker-*.jsonl")
        for e in read_events(path)
        if e.kind is CallEventKind.ENDED and e.t_mono_ns >= since
    ]
    totals: dict[str, Any] = media_totals(ended)
    frames, late = totals.get("frames_out", 0), totals.get("underruns", 0)
    rx, lost = totals.get("rx_packets", 0), totals.get("rx_lost", 0)
    jitter = [float(e.data["media"]["rx_jitter_ms"]) for e in ended if "media" in e.data]  # type: ignore[index]
    print(
        f"   answered {int(final.get('SuccessfulCall(C)', 0))}/{CAPACITY}, "
        f"late frames {late / max(1, frames + late) * 100:.2f} %, "
        f"RTP loss {lost / max(1, rx + lost) * 100:.2f} %, "
        f"jitter mean {statistics.mean(jitter) if jitter else 0:.2f} ms "
        f"(max {max(jitter, default=0):.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="all-up time at capacity")
    parser.add_argument("--flood-rate", type=int, default=1000, help="flood INVITEs per second")
    parser.add_argument(
        "--parts", default="1,2,3,4", help="which measurements, e.g. 3 or 1,4 (default: all)"
    )
    args = parser.parse_args()
    parts = {int(p) for p in args.parts.split(",")}
    print(describe())
    with (
        tempfile.TemporaryDirectory(prefix="parley-bench-net-") as tmp_name,
        caller_host("a") as carrier,
        caller_host("b") as pbx,
    ):
        tmp = Path(tmp_name)
        with platform(tmp, carrier, pbx) as data:
            if 1 in parts:
                setup_rates(carrier, tmp)
            if 2 in parts:
                tls_setup(carrier, pbx, tmp)
            if 3 in parts:
                under_flood(carrier, tmp, data, args.flood_rate)
            if 4 in parts:
                at_capacity(carrier, tmp, data, args.seconds)


if __name__ == "__main__":
    main()
