"""Live event fan-out: real Unix sockets between outlets and subscribers, and a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path

import redis

from telephony.events import CallEvent, CallEventKind, JsonlOutlet, MemoryOutlet, read_events
from telephony.fanout import FanoutOutlet, RedisChannel, TeeOutlet, events_path, subscribe
from tests.jobs_support import REDIS_URL, require_redis

RESCAN_S = 0.05


def _event(call_id: str, seq: int, pad: int = 0) -> CallEvent:
    return CallEvent(call_id, CallEventKind.DTMF, {"seq": seq, "pad": "x" * pad})


def _seq(event: CallEvent) -> int:
    seq = event.data["seq"]
    assert isinstance(seq, int)
    return seq


async def _until(condition: Callable[[], bool], what: str, timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class _Collector:
    """A subscriber in a task of its own, keeping what it receives."""

    def __init__(self, source: Path | RedisChannel) -> None:
        self.events: list[CallEvent] = []
        self._task = asyncio.create_task(self._run(source))

    async def _run(self, source: Path | RedisChannel) -> None:
        async with contextlib.aclosing(subscribe(source, rescan_s=RESCAN_S)) as events:
            async for event in events:
                self.events.append(event)

    def seqs(self, call_id: str) -> list[int]:
        return [_seq(e) for e in self.events if e.call_id == call_id]

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def test_two_subscribers_get_every_event_of_two_workers_in_order(tmp_path: Path) -> None:
    async def main() -> None:
        outlets = [FanoutOutlet.unix(tmp_path, 0), FanoutOutlet.unix(tmp_path, 1)]
        path = events_path(tmp_path, 0)
        assert path.name == "worker-0.events.sock"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        first, second = _Collector(tmp_path), _Collector(tmp_path)
        try:
            await _until(lambda: all(o.subscribers == 2 for o in outlets), "subscribers")
            sent = []
            for seq in range(100):
                event = _event(f"call-{seq % 2}", seq)
                outlets[seq % 2].emit(event)
                sent.append(event)
            await _until(lambda: len(first.events) == len(second.events) == 100, "100 events")
            for collector in (first, second):
                assert collector.seqs("call-0") == list(range(0, 100, 2))
                assert collector.seqs("call-1") == list(range(1, 100, 2))
                assert sorted(collector.events, key=sent.index) == sent  # equal, field by field
        finally:
            await first.stop()
            await second.stop()
            for outlet in outlets:
                outlet.close()
        assert not path.exists()

    asyncio.run(main())


def test_a_late_subscriber_gets_later_events(tmp_path: Path) -> None:
    async def main() -> None:
        outlet = FanoutOutlet.unix(tmp_path, 0)
        for seq in range(10):
            outlet.emit(_event("call", seq))
        late = _Collector(tmp_path)
        try:
            await _until(lambda: outlet.subscribers == 1, "the late subscriber")
            for seq in range(10, 20):
                outlet.emit(_event("call", seq))
            await _until(lambda: 19 in late.seqs("call"), "the later events")
            await asyncio.sleep(0.05)
            # Every later event, in order; of the earlier ones, only those the outlet's thread
            # had not yet sent when the subscriber connected (none, as a rule).
            seqs = late.seqs("call")
            assert seqs[-10:] == list(range(10, 20)) and seqs == sorted(set(seqs))
        finally:
            await late.stop()
            outlet.close()

    asyncio.run(main())


def test_a_slow_subscriber_does_not_block_emit(tmp_path: Path) -> None:
    async def main() -> None:
        outlet = FanoutOutlet.unix(tmp_path, 0, max_queued=1000)
        stalled = socket.socket(socket.AF_UNIX)
        stalled.connect(str(events_path(tmp_path, 0)))  # and reads nothing, for now
        try:
            await _until(lambda: outlet.subscribers == 1, "the stalled subscriber")
            started = time.monotonic()
            for seq in range(10_000):
                outlet.emit(_event("call", seq, pad=300))
            assert time.monotonic() - started < 1.0, "emit waited for the subscriber"
            await _until(lambda: outlet.counters()["dropped"] > 0, "drops to be counted")

            received = await asyncio.to_thread(_read_until_seq, stalled, 9_999)
            seqs = [_seq(event) for event in received]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
            assert seqs[-1] == 9_999, "the newest events are kept, the oldest dropped"
            counters = outlet.counters()
            assert counters["emitted"] == 10_000
            assert counters["dropped"] == 10_000 - len(received), counters
        finally:
            stalled.close()
            outlet.close()

    asyncio.run(main())


def _read_until_seq(sock: socket.socket, last: int) -> list[CallEvent]:
    sock.settimeout(3.0)
    buffer = b""
    events: list[CallEvent] = []
    while not events or _seq(events[-1]) != last:
        chunk = sock.recv(1 << 16)
        assert chunk, "the outlet closed the connection"
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        events.extend(CallEvent.from_json(line.decode()) for line in lines)
    return events


def test_the_subscriber_reconnects_to_a_restarted_worker(tmp_path: Path) -> None:
    async def main() -> None:
        outlet = FanoutOutlet.unix(tmp_path, 0)
        collector = _Collector(tmp_path)
        try:
            await _until(lambda: outlet.subscribers == 1, "the subscriber")
            outlet.emit(_event("call", 1))
            await _until(lambda: len(collector.events) == 1, "the first event")
            outlet.close()
            outlet = FanoutOutlet.unix(tmp_path, 0)  # the worker, restarted
            await _until(lambda: outlet.subscribers == 1, "the subscriber to come back")
            outlet.emit(_event("call", 2))
            await _until(lambda: len(collector.events) == 2, "the event after the restart")
            assert collector.seqs("call") == [1, 2]
        finally:
            await collector.stop()
            outlet.close()

    asyncio.run(main())


def test_malformed_lines_are_skipped(tmp_path: Path) -> None:
    good = _event("call", 7)

    async def impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"not json\n" + b'{"call_id": 5}\n' + b"[]\n")
            writer.write(json.dumps({**json.loads(good.to_json()), "data": "x"}).encode() + b"\n")
            writer.write(good.to_json().encode() + b"\n")
            await writer.drain()
            await reader.read()
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_unix_server(impostor, path=events_path(tmp_path, 7))
        collector = _Collector(tmp_path)
        try:
            await _until(lambda: len(collector.events) == 1, "the one good event")
            await asyncio.sleep(0.05)
            assert collector.events == [good]
        finally:
            await collector.stop()
            server.close()

    asyncio.run(main())


def test_redis_pub_sub_round_trip() -> None:
    require_redis()
    channel = f"parley-test-{secrets.token_hex(4)}:live"

    async def main() -> None:
        outlet = FanoutOutlet.redis(REDIS_URL, channel=channel)
        collector = _Collector(RedisChannel(REDIS_URL, channel))
        try:
            with redis.Redis.from_url(REDIS_URL) as client:
                await _until(
                    lambda: dict(client.pubsub_numsub(channel)).get(channel.encode(), 0) >= 1,
                    "the Redis subscription",
                )
            sent = [_event("call", seq) for seq in range(20)]
            for event in sent:
                outlet.emit(event)
            await _until(lambda: len(collector.events) == 20, "20 events over Redis")
            assert collector.events == sent
            assert outlet.counters()["sent"] == 20
        finally:
            await collector.stop()
            outlet.close()

    asyncio.run(main())


def test_redis_down_drops_and_counts_without_blocking() -> None:
    outlet = FanoutOutlet.redis("redis://127.0.0.1:1/0", retry_max_s=0.1)
    try:
        started = time.monotonic()
        for seq in range(1000):
            outlet.emit(_event("call", seq))
        assert time.monotonic() - started < 0.5
        deadline = time.monotonic() + 3
        while outlet.counters()["dropped"] < 1000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert outlet.counters() == {"emitted": 1000, "sent": 0, "dropped": 1000, "subscribers": 0}
    finally:
        outlet.close()


def test_emit_never_raises(tmp_path: Path) -> None:
    outlet = FanoutOutlet.unix(tmp_path, 0)
    outlet.emit(CallEvent("call", CallEventKind.DTMF, {"not json": object()}))
    outlet.emit(_event("call", 1, pad=2 * 2**20))  # over MAX_EVENT_BYTES
    outlet.close()
    outlet.emit(_event("call", 2))  # after close
    assert outlet.counters()["dropped"] == 3


def test_tee_emits_to_every_outlet_and_closes_them(tmp_path: Path) -> None:
    class Broken:
        closed = False

        def emit(self, event: CallEvent) -> None:
            raise RuntimeError("broken outlet")

        def close(self) -> None:
            self.closed = True
            raise RuntimeError("broken outlet")

    spool, memory, broken = JsonlOutlet(tmp_path / "worker-0.jsonl"), MemoryOutlet(), Broken()
    tee = TeeOutlet(broken, spool, memory)
    events = [_event("call", seq) for seq in range(3)]
    for event in events:
        tee.emit(event)
    tee.close()
    assert memory.events == events
    assert read_events(spool.path) == events
    assert broken.closed
    spool.emit(events[0])
    assert spool.dropped == 1, "the spool was closed too"
