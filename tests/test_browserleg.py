"""The browser leg's audio socket (telephony/browserleg.py): the worker's end served with a
stand-in media port, the API's end as the dashboard uses it, over real Unix sockets."""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from telephony import browserleg
from telephony.browserleg import BrowserLeg, LegRefused, NotConnected, audio_path

FRAME = 640
CALL = "0123456789abcdef0123456789abcdef"


class FakePort:
    """The two queues of a media port: what the bridge gives it, what it plays."""

    def __init__(self) -> None:
        self.rx: collections.deque[tuple[bytes, int]] = collections.deque()
        self.played: list[bytes] = []

    def queue_playout(self, utterance_id: str, frame_pcm: bytes) -> bool:
        self.played.append(frame_pcm)
        return True


class Worker:
    """A worker's audio socket holding some calls, each with a browser leg for someone."""

    def __init__(self, path: Path, legs: dict[str, BrowserLeg], *, joins: bool = True) -> None:
        self.path = path
        self.legs = legs
        self.joins = joins  # whether the leg's port joins the bridge
        self.left: list[BrowserLeg] = []
        self.server: asyncio.Server | None = None

    async def claim(self, call_id: str, supervisor: str) -> BrowserLeg:
        leg = self.legs.get(call_id)
        if leg is None:
            raise LegRefused(f"holds no live call {call_id}", held=False)
        if leg.supervisor != supervisor:
            raise LegRefused(f"no browser leg is ringing for {supervisor}", held=True)
        if self.joins:
            leg.port = FakePort()
            leg.ready.set()
        return leg

    async def __aenter__(self) -> Worker:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await browserleg.serve_connection(reader, writer, self.claim, self.left.append)

        self.server = await asyncio.start_unix_server(serve, path=str(self.path))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 20))


def _leg(supervisor: str = "alice") -> BrowserLeg:
    return BrowserLeg(supervisor, 0.0)


def test_audio_flows_both_ways_and_closing_hangs_up(tmp_path: Path) -> None:
    leg = _leg()

    async def scenario() -> None:
        async with Worker(audio_path(tmp_path, 0), {CALL: leg}) as worker:
            connection = await browserleg.connect(tmp_path, 1, CALL, "alice")
            assert connection.worker == 0
            frames = [bytes([n]) * FRAME for n in range(3)]
            connection.writer.write(b"".join(frames) + b"\x07" * 100)  # and a partial frame
            await connection.writer.drain()
            port = leg.port
            assert isinstance(port, FakePort)
            for n in range(2):
                port.rx.append((bytes([50 + n]) * FRAME, 0))
            leg.rx_ready.set()
            heard = await connection.reader.readexactly(2 * FRAME)
            assert heard == bytes([50]) * FRAME + bytes([51]) * FRAME
            await connection.close()
            while not worker.left:
                await asyncio.sleep(0.01)
            assert port.played == frames  # whole frames only
            assert worker.left == [leg]

    run(scenario)


def test_the_worker_ending_the_leg_closes_the_connection(tmp_path: Path) -> None:
    leg = _leg()

    async def scenario() -> None:
        async with Worker(audio_path(tmp_path, 0), {CALL: leg}) as worker:
            connection = await browserleg.connect(tmp_path, 1, CALL, "alice")
            leg.ended = True  # as the worker marks it before closing
            leg.close()
            assert await connection.reader.read() == b""
            await asyncio.sleep(0.05)
            assert worker.left == []  # the worker ended it: not reported back as a hang-up

    run(scenario)


def test_the_worker_holding_the_call_is_found(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            Worker(audio_path(tmp_path, 0), {}),
            Worker(audio_path(tmp_path, 2), {CALL: _leg("bob")}),
        ):
            # worker 1 is down: skipped, like a worker without the call
            connection = await browserleg.connect(tmp_path, 3, CALL, "bob")
            assert connection.worker == 2
            await connection.close()

    run(scenario)


@pytest.mark.parametrize(
    ("workers", "supervisor", "message"),
    [
        (1, "mallory", "no browser leg is ringing for mallory"),  # held, someone else's
        (2, "alice", "no media worker holds a live call"),  # nobody holds it
    ],
)
def test_a_leg_not_ringing_for_you_is_refused(
    tmp_path: Path, workers: int, supervisor: str, message: str
) -> None:
    call = CALL if workers == 1 else "f" * 32

    async def scenario() -> None:
        async with Worker(audio_path(tmp_path, 0), {CALL: _leg()}):
            with pytest.raises(NotConnected, match=message):
                await browserleg.connect(tmp_path, workers, call, supervisor)

    run(scenario)


def test_a_port_that_never_joins_is_refused_not_hung(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(browserleg, "READY_S", 0.2)

    async def scenario() -> None:
        async with Worker(audio_path(tmp_path, 0), {CALL: _leg()}, joins=False) as worker:
            with pytest.raises(NotConnected, match="could not join the leg"):
                await browserleg.connect(tmp_path, 1, CALL, "alice")
            await asyncio.sleep(0.05)
            assert len(worker.left) == 1  # the worker is told, so the leg ends

    run(scenario)


@pytest.mark.parametrize(
    ("hello", "message"),
    [
        (b"not json\n", "one JSON object"),
        (b"[1]\n", "one JSON object"),
        (json.dumps({"call_id": "../x", "supervisor": "alice"}).encode() + b"\n", "call_id"),
        (json.dumps({"call_id": CALL, "supervisor": "a b"}).encode() + b"\n", "supervisor"),
        (json.dumps({"call_id": CALL}).encode() + b"\n", "supervisor"),
        (b"x" * 5000 + b"\n", "over the limit"),
        (b"", "closed before its hello"),
    ],
)
def test_a_bad_hello_gets_a_clear_refusal(tmp_path: Path, hello: bytes, message: str) -> None:
    async def scenario() -> None:
        async with Worker(audio_path(tmp_path, 0), {CALL: _leg()}) as worker:
            reader, writer = await asyncio.open_unix_connection(str(worker.path))
            writer.write(hello)
            if not hello:
                writer.write_eof()
            await writer.drain()
            reply: dict[str, Any] = json.loads(await reader.readline())
            assert reply["ok"] is False and message in reply["error"], reply
            assert await reader.read() == b""
            writer.close()
            assert worker.left == []

    run(scenario)


def test_a_silent_client_is_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browserleg, "HELLO_TIMEOUT_S", 0.2)

    async def scenario() -> None:
        async with Worker(audio_path(tmp_path, 0), {CALL: _leg()}) as worker:
            reader, writer = await asyncio.open_unix_connection(str(worker.path))
            reply = json.loads(await reader.readline())
            assert reply == {"ok": False, "held": False, "error": "no hello"}
            writer.close()

    run(scenario)
