"""Media-path overhead of a Parley media worker. Prints numbers; asserts nothing.

  1. frame copy: reading/writing a pjsua2 frame buffer (the ByteVector trap in FACTS.md)
  2. bridge: per-frame time from the media callback to the session and back into the
     playout queue, with N calls on one worker's asyncio loop driven by a 20 ms clock thread
  3. --sip: real calls through the Kamailio edge (sipp with RTP audio as the callers):
     late frames, loss and worker memory at rising call counts

Usage: python bench/media_overhead.py [--calls 4,50,100] [--sip --sip-calls 20,60,100]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pjsua2 as pj

from agent.echo import EchoSession
from agent.session import FRAME_BYTES
from telephony.bridge import CallBridge
from telephony.events import MemoryOutlet
from telephony.framecopy import read_bytes, write_bytes
from telephony.mediaport import MediaPort, wake_on
from telephony.pjthread import library_only


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def bench_frame_copy() -> None:
    vec = pj.ByteVector()
    payload = bytes(range(256)) * 2 + bytes(FRAME_BYTES - 512)
    write_bytes(vec, payload)
    rounds = 2000

    def timed(fn: Any, n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - start) / n * 1e6

    naive_read = timed(lambda: bytes(vec), 200)
    fast_read = timed(lambda: read_bytes(vec), rounds)
    naive_write = timed(lambda: pj.ByteVector(payload), 200)
    fast_write = timed(lambda: write_bytes(vec, payload), rounds)
    print("frame copy (640-byte frame, us per frame)")
    print(f"  read : bytes(vec) {naive_read:8.1f}   framecopy.read_bytes  {fast_read:6.2f}")
    print(f"  write: ByteVector {naive_write:8.1f}   framecopy.write_bytes {fast_write:6.2f}")


class _TimedPort(MediaPort):
    """Records when each echoed frame reaches the playout queue, keyed by a frame counter."""

    def __init__(self, sink: dict[int, int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sink = sink

    def queue_playout(self, utterance_id: str, frame_pcm: bytes) -> bool:
        self.sink[struct.unpack_from("<Q", frame_pcm)[0]] = time.perf_counter_ns()
        return super().queue_playout(utterance_id, frame_pcm)


async def _bridge_run(calls: int, seconds: float) -> tuple[list[float], float, int, int]:
    loop = asyncio.get_running_loop()
    sent: dict[int, int] = {}
    echoed: dict[int, int] = {}
    ports: list[_TimedPort] = []
    bridges: list[CallBridge] = []
    for i in range(calls):
        ready = asyncio.Event()
        port = _TimedPort(echoed, on_rx=wake_on(loop, ready))
        bridge = CallBridge(
            call_id=f"bench-{i}",
            port=port,
            session=EchoSession(),
            outlet=MemoryOutlet(),
            rx_ready=ready,
            on_hangup_requested=lambda _r: None,
            on_session_failed=lambda _r: None,
        )
        await bridge.start()
        ports.append(port)
        bridges.append(bridge)
    stop = threading.Event()
    busy_ns = [0]

    def clock() -> None:
        # Stands in for pjmedia's conference clock: every 20 ms, each port is asked for a
        # frame to play and handed a caller frame, through the same callbacks.
        frame_in = pj.MediaFrame()
        frame_in.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
        frame_out = pj.MediaFrame()
        counter = 0
        next_tick = time.perf_counter()
        while not stop.is_set():
            tick_start = time.perf_counter_ns()
            for port in ports:
                port.onFrameRequested(frame_out)
                counter += 1
                write_bytes(frame_in.buf, struct.pack("<Q", counter) + bytes(FRAME_BYTES - 8))
                sent[counter] = time.perf_counter_ns()
                port.onFrameReceived(frame_in)
            busy_ns[0] += time.perf_counter_ns() - tick_start
            next_tick += 0.02
            time.sleep(max(0.0, next_tick - time.perf_counter()))

    thread = threading.Thread(target=clock, daemon=True)
    thread.start()
    await asyncio.sleep(seconds)
    stop.set()
    thread.join()
    await asyncio.sleep(0.1)
    for bridge in bridges:
        await bridge.close()
    latencies = [(echoed[k] - sent[k]) / 1000 for k in sent if k in echoed]
    frames_out = sum(p.frames_out for p in ports)
    underruns = sum(p.underruns for p in ports)
    callback_us = busy_ns[0] / 1000 / max(1, len(sent))
    return latencies, callback_us, frames_out, underruns


def bench_bridge(call_counts: list[int], seconds: float) -> None:
    print(f"bridge, in-process: callback -> session -> playout queue ({seconds:.0f} s per row)")
    print("  calls   frames   p50 us   p99 us  max us  callback us/frame  late frames")
    for calls in call_counts:
        latencies, callback_us, frames_out, underruns = asyncio.run(_bridge_run(calls, seconds))
        late = underruns / max(1, frames_out + underruns) * 100
        print(
            f"  {calls:5d} {len(latencies):8d} {percentile(latencies, 50):8.0f} "
            f"{percentile(latencies, 99):8.0f} {max(latencies):7.0f} {callback_us:18.1f} "
            f"{late:10.2f} %"
        )
        assert statistics.mean(latencies) > 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", default="1,4,25,100", help="call counts for the bridge part")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sip", action="store_true", help="also run real calls through the edge")
    parser.add_argument("--sip-calls", default="20,60,100,140")
    parser.add_argument("--sip-seconds", type=float, default=20.0)
    args = parser.parse_args()
    print(
        f"machine: {platform.node()} {platform.machine()} cpus={_cpus()} "
        f"python={platform.python_version()}"
    )
    bench_frame_copy()
    # MediaPort is a pjsua2 object: the library must exist while ports live.
    with library_only():
        bench_bridge([int(c) for c in args.calls.split(",")], args.seconds)
    if args.sip:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from sip_capacity import run_capacity  # type: ignore[import-not-found]

        run_capacity([int(c) for c in args.sip_calls.split(",")], args.sip_seconds)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
