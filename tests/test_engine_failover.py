"""Several engine servers behind one platform: a worker spreads calls over the ready ones, and
a call whose engine dies goes on with another, its conversation with it (two real engine
servers, the caller's voice from espeak, paced in real time). With no other server up, the
session fails, and the worker's fallback follows (tests/test_engine_fallback.py over SIP)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect

from agent.app import EngineOptions, build_server
from agent.failover import EnginePool, FailoverSession
from agent.health import ServerHealth, health_url
from agent.hub import ModelHub
from agent.profiles import SessionTarget, create_session
from agent.realtime import message_item
from agent.server import EngineServer
from agent.session import CallerAudio, EventKind, SessionError, SessionEvent, SessionOutput
from tests.engine_harness import silence, speak
from tests.support import free_port_block, port_open

TOKEN = "token-of-both-engines"


@pytest.fixture(scope="module")
def engines() -> Iterator[tuple[EngineServer, EngineServer]]:
    """Two engine servers on the same models (as two hosts would have their own)."""
    first, hub, knowledge = build_server(EngineOptions(prerender=False, token=TOKEN))
    second = EngineServer(
        models=hub,
        dialogue_factory=knowledge.conversation,
        turns_factory=first.turns_factory,
        judge_overlap=first.judge_overlap,
        config=first.config,
        token=TOKEN,
        lookup=knowledge.lookup,
    )
    yield first, second
    assert isinstance(hub, ModelHub)
    hub.close()


@dataclass
class Running:
    url: str
    stop: asyncio.Event
    task: asyncio.Task[None]
    health: ServerHealth


@asynccontextmanager
async def serving(*servers: EngineServer) -> AsyncIterator[list[Running]]:
    """Each server on its own port with its health prober, until the block ends."""
    running = []
    probing = asyncio.Event()
    for server in servers:
        port = free_port_block(1)
        stop = asyncio.Event()
        url = f"ws://127.0.0.1:{port}/v1/realtime"
        task = asyncio.create_task(server.serve("127.0.0.1", port, stop))
        await port_open(port)
        health = ServerHealth(health_url(url), interval_s=0.5)
        running.append(Running(url, stop, task, health))
    probers = [asyncio.create_task(r.health.run(probing)) for r in running]
    try:
        for _ in range(100):
            if all(r.health.ready for r in running):
                break
            await asyncio.sleep(0.05)
        yield running
    finally:
        probing.set()
        for r in running:
            r.stop.set()
        await asyncio.gather(*probers, *(r.task for r in running))


@dataclass
class Call:
    """One call's session, fed like a caller, its outputs recorded with when they came."""

    session: FailoverSession
    outputs: list[tuple[float, SessionOutput]] = field(default_factory=list)
    failure: SessionError | None = None
    reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.session.start()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for item in self.session.outputs():
                self.outputs.append((time.monotonic(), item))
        except SessionError as error:
            self.failure = error

    async def feed(self, audio: np.ndarray) -> None:
        """Caller audio at the pace of a phone line, 20 ms a frame."""
        start = time.monotonic()
        for n in range(len(audio) // 320):
            frame = audio[n * 320 : (n + 1) * 320].astype("<i2").tobytes()
            await self.session.send_audio(CallerAudio(frame, time.monotonic_ns()))
            await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - time.monotonic()))

    def events(self, kind: EventKind) -> list[SessionEvent]:
        return [o for _, o in self.outputs if isinstance(o, SessionEvent) and o.kind is kind]

    def said(self) -> list[str]:
        return [
            str(e.data.get("text", "")).lower() for e in self.events(EventKind.AGENT_TRANSCRIPT)
        ]

    async def until(self, kind: EventKind, *, after: int, timeout_s: float = 15) -> SessionEvent:
        """Feeds silence until the `after`+1-th event of `kind` comes."""
        for _ in range(int(timeout_s / 0.2)):
            found = self.events(kind)
            if len(found) > after:
                return found[after]
            await self.feed(silence(200))
        raise AssertionError(f"no {kind} #{after + 1}: {[type(o) for _, o in self.outputs]}")


def _pool(running: list[Running]) -> EnginePool:
    return EnginePool({r.url: r.health for r in running})


def _call(pool: EnginePool) -> Call:
    target = SessionTarget(engine_url="", engine_token=TOKEN, engines=pool)
    session = create_session("embedded", target)
    assert isinstance(session, FailoverSession)
    return Call(session)


def test_calls_spread_over_the_ready_servers_and_skip_one_that_is_down() -> None:
    up, also_up, down = (ServerHealth(f"http://127.0.0.1:{p}/healthz") for p in (1, 2, 3))
    up.ready = also_up.ready = True
    pool = EnginePool({"ws://a/": up, "ws://b/": also_up, "ws://c/": down})
    chosen = []
    for _ in range(4):
        url = pool.choose()
        assert url is not None
        pool.opened(url)
        chosen.append(url)
    assert sorted(chosen) == ["ws://a/", "ws://a/", "ws://b/", "ws://b/"]  # the fewest first
    pool.closed("ws://a/")
    assert pool.choose() == "ws://a/"
    pool.failed("ws://a/")  # a session lost it: no new call goes there
    assert not up.ready and pool.choose() == "ws://b/"
    assert pool.choose(exclude=["ws://b/"]) is None
    up.observe(True, time.monotonic())  # the next probe finds it back
    assert pool.choose(exclude=["ws://b/"]) == "ws://a/"
    with pytest.raises(ValueError):
        EnginePool({})


def test_a_call_whose_engine_dies_goes_on_with_the_other_and_its_conversation(
    engines: tuple[EngineServer, EngineServer],
) -> None:
    """The caller asks about shipping on one engine; that engine dies; the caller's follow-up
    ("And for express?"), spoken while the engine is dying, is answered by the other, from
    the conversation it was given: no second greeting, no word of the follow-up lost."""

    async def main() -> None:
        async with serving(*engines) as running:
            pool = _pool(running)
            call = _call(pool)
            await call.open()
            first = call.session.url
            await call.until(EventKind.AGENT_UTTERANCE_DONE, after=0)  # the greeting
            await call.feed(speak("How much does shipping cost?"))
            answer = await call.until(EventKind.AGENT_TRANSCRIPT, after=1)
            assert "shipping" in str(answer.data["text"]).lower(), call.said()
            await call.until(EventKind.AGENT_UTTERANCE_DONE, after=1)
            await call.feed(silence(600))

            dying = next(r for r in running if r.url == first)
            dying.stop.set()  # its connections close with it, as a killed host's would
            await call.feed(speak("And for express?"))
            moved = await call.until(EventKind.SESSION_MOVED, after=0)
            assert moved.data["from"] == first and moved.data["to"] == call.session.url
            assert call.session.url != first and pool.sessions == {first: 0, call.session.url: 1}
            assert moved.data["turns"] == 3  # greeting, question, answer
            print(f"call moved in {moved.data['move_ms']} ms")

            follow_up = await call.until(EventKind.AGENT_TRANSCRIPT, after=2)
            assert "express shipping" in str(follow_up.data["text"]).lower(), call.said()
            assert call.failure is None
            assert len(call.events(EventKind.AGENT_TRANSCRIPT)) == 3, call.said()  # no greeting
            await call.session.close()
            assert call.reader is not None
            await asyncio.wait_for(call.reader, 5)
            assert pool.sessions[call.session.url] == 0

    asyncio.run(main())


def test_with_no_other_engine_up_the_session_fails_with_why(
    engines: tuple[EngineServer, EngineServer],
) -> None:
    async def main() -> None:
        async with serving(engines[0]) as running:
            call = _call(_pool(running))
            await call.open()
            await call.until(EventKind.AGENT_UTTERANCE_STARTED, after=0)
            running[0].stop.set()
            for _ in range(50):
                if call.failure is not None:
                    break
                await call.feed(silence(100))
            assert call.failure is not None and not call.failure.retryable
            assert "no engine server took the call" in str(call.failure)
            assert not running[0].health.ready
            assert not call.events(EventKind.SESSION_MOVED)
            await call.session.close()

    asyncio.run(main())


def test_a_user_message_joins_the_conversation_and_is_answered_on_response_create(
    engines: tuple[EngineServer, EngineServer],
) -> None:
    """As in the Realtime API: `conversation.item.create` adds, `response.create` answers (the
    replay a moved call relies on); a session told `greet: false` says nothing first."""

    async def main() -> None:
        async with serving(engines[0]) as running:
            url = running[0].url
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with connect(url, additional_headers=headers) as ws:
                update = {"type": "realtime", "metadata": {"greet": "false"}}
                await ws.send(json.dumps({"type": "session.update", "session": update}))
                for item in (
                    message_item("user", "How much does shipping cost?"),
                    message_item("assistant", "Standard shipping is free over fifty dollars."),
                    message_item("user", "And for express?"),
                ):
                    await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
                quiet = await _kinds_within(ws, 1.5)
                assert "response.created" not in quiet, quiet  # no greeting, no answer yet
                await ws.send(json.dumps({"type": "response.create"}))
                said = await _transcript(ws)
                assert "express shipping" in said.lower(), said

    asyncio.run(main())


async def _kinds_within(ws: ClientConnection, seconds: float) -> list[str]:
    kinds = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            async for message in ws:
                kinds.append(json.loads(message)["type"])
    return kinds


async def _transcript(ws: ClientConnection) -> str:
    async with asyncio.timeout(15):
        async for message in ws:
            event = json.loads(message)
            if event["type"] == "response.output_audio_transcript.done":
                return str(event["transcript"])
    raise AssertionError("no answer")
