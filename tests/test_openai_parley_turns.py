"""GPT-realtime with Parley's own turn-taking (`turn_detection: parley`): the model's VAD is off,
a real engine server hears the caller beside it and decides the turns; the adapter commits the
input buffer and asks for the answer at a turn's end, and cuts the answer when the caller
starts to speak. Everything sent to the model validates against the openai package's types."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator

import numpy as np
import pytest

from agent.app import EngineOptions, build_server
from agent.openai_realtime import OpenAIOptions, OpenAIRealtimeSession
from agent.profiles import ModelTarget, SessionTarget, create_session
from agent.server import EngineServer
from agent.session import CallerAudio, ClearPlayout, EventKind, SessionEvent, SessionOutput
from agent.turn_source import EngineTurns
from tests.engine_harness import silence, speak
from tests.openai_realtime_server import Connection, OpenAIRealtimeServer
from tests.support import free_port_block, port_open

TOKEN = "engine-token-for-turns"


@pytest.fixture(scope="module")
def engine() -> Iterator[EngineServer]:
    server, hub, _ = build_server(EngineOptions(prerender=False, token=TOKEN))
    yield server
    hub.close()


async def _say(session: OpenAIRealtimeSession, audio: np.ndarray) -> None:
    """Caller audio at a phone line's pace."""
    start = time.monotonic()
    for n in range(len(audio) // 320):
        pcm = audio[n * 320 : (n + 1) * 320].astype("<i2").tobytes()
        await session.send_audio(CallerAudio(pcm, time.monotonic_ns()))
        await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - time.monotonic()))


def test_parleys_turn_taking_tells_the_model_when_to_answer_and_when_to_stop(
    engine: EngineServer,
) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        port = free_port_block(1)
        serving = asyncio.create_task(engine.serve("127.0.0.1", port, stop))
        await port_open(port)
        engine_url = f"ws://127.0.0.1:{port}/v1/realtime"
        try:
            async with OpenAIRealtimeServer().running() as server:
                target = SessionTarget(
                    engine_url,
                    engine_token=TOKEN,
                    model=ModelTarget(
                        url=server.url, model="gpt-realtime", turn_detection="parley"
                    ),
                )
                session = create_session("realtime", target)
                assert isinstance(session, OpenAIRealtimeSession)
                assert isinstance(session.turns, EngineTurns)
                await session.start()
                conn = await server.next_connection()
                try:
                    await _conversation(session, conn)
                finally:
                    await session.close()
                assert conn.invalid == []
        finally:
            stop.set()
            await serving

    asyncio.run(main())


async def _conversation(session: OpenAIRealtimeSession, conn: Connection) -> None:
    update = await conn.receive("session.update")
    assert update["session"]["audio"]["input"]["turn_detection"] is None  # Parley decides
    await conn.receive("response.create")  # the greeting
    outputs: list[SessionOutput] = []

    async def read() -> None:
        async for item in session.outputs():
            outputs.append(item)

    reader = asyncio.create_task(read())
    # The caller asks; nothing is committed while they speak, then the turn ends.
    question = speak("How much does shipping cost?")
    asking = asyncio.create_task(_say(session, np.concatenate([question, silence(3000)])))
    await asyncio.sleep(len(question) / 16000 * 0.8)
    assert conn.drain("input_audio_buffer.commit") == [], "committed mid-sentence"
    committed_at = time.monotonic()
    await conn.receive("input_audio_buffer.commit", timeout_s=10)
    await conn.receive("response.create", timeout_s=2)
    waited = time.monotonic() - committed_at
    assert waited < 5, f"the turn's end took {waited:.1f} s"
    await asking
    # The model answers (a long answer, streamed as the API does); the caller cuts in.
    await conn.send(
        {"type": "response.created", "response": {"id": "resp_2", "status": "in_progress"}}
    )
    ids = {"response_id": "resp_2", "item_id": "item_2", "output_index": 0, "content_index": 0}
    tone = (np.sin(2 * np.pi * 220 * np.arange(2400) / 24000) * 8000).astype("<i2").tobytes()
    for _ in range(10):
        await conn.send({"type": "response.output_audio.delta", **ids, "delta": _b64(tone)})
    await _say(session, np.concatenate([speak("Wait, wait, I have a question"), silence(600)]))
    await conn.receive("response.cancel", timeout_s=5)
    assert any(isinstance(item, ClearPlayout) for item in outputs), outputs
    started = [
        o
        for o in outputs
        if isinstance(o, SessionEvent) and o.kind is EventKind.CALLER_SPEECH_STARTED
    ]
    assert started, outputs
    reader.cancel()


def _b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode()


def test_without_an_engine_the_parley_turns_fail_the_session_with_why() -> None:
    async def main() -> None:
        async with OpenAIRealtimeServer().running() as server:
            turns = EngineTurns(f"ws://127.0.0.1:{free_port_block(1)}/v1/realtime")
            session = OpenAIRealtimeSession(
                server.url, api_key="", options=OpenAIOptions(turn_detection="parley"), turns=turns
            )
            with pytest.raises(Exception, match="engine unreachable"):
                await session.start()
            await session.close()

    asyncio.run(main())
