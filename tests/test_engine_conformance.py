"""The engine server speaks the Realtime protocol: the official openai SDK holds a conversation."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.request
from typing import Any

import numpy as np
import pytest
from openai import AsyncOpenAI

from agent.app import fixed_replies
from agent.knowledge import SAMPLE_KB, load_knowledge_base
from agent.resample import resample
from agent.tts import PiperTts
from tests.engine_harness import silence, speak
from tests.support import PAYMENTS_KB, EngineProcess

pytestmark = pytest.mark.slow


def test_openai_sdk_realtime_client_talks_to_the_engine(engine: EngineProcess) -> None:
    async def conversation() -> dict[str, Any]:
        client = AsyncOpenAI(
            api_key="not-needed-locally",
            websocket_base_url=f"ws://127.0.0.1:{engine.port}/v1",
        )
        seen: dict[str, Any] = {"types": [], "audio_bytes": 0, "caller": "", "agent": []}
        async with client.realtime.connect(model="parley-embedded") as connection:
            await connection.session.update(
                session={
                    "type": "realtime",
                    "audio": {
                        "input": {"format": {"type": "audio/pcm", "rate": 24000}},
                        "output": {"format": {"type": "audio/pcm", "rate": 24000}},
                    },
                }
            )
            question = np.concatenate([speak("Do you price match?"), silence(1500)])
            pcm24 = resample(question.astype("<i2").tobytes(), 16000, 24000)

            async def talk() -> None:
                await asyncio.sleep(6.0)  # let the greeting finish
                for offset in range(0, len(pcm24), 960):
                    chunk = base64.b64encode(pcm24[offset : offset + 960]).decode()
                    await connection.input_audio_buffer.append(audio=chunk)
                    await asyncio.sleep(0.02)
                for _ in range(400):  # keep the line open with silence, as a phone does
                    await connection.input_audio_buffer.append(
                        audio=base64.b64encode(bytes(960)).decode()
                    )
                    await asyncio.sleep(0.02)

            talker = asyncio.create_task(talk())
            try:
                async with asyncio.timeout(40):
                    async for event in connection:
                        seen["types"].append(event.type)
                        if event.type == "response.output_audio.delta":
                            seen["audio_bytes"] += len(base64.b64decode(event.delta))
                        elif event.type == "conversation.item.input_audio_transcription.completed":
                            seen["caller"] = event.transcript
                        elif event.type == "response.output_audio_transcript.done":
                            seen["agent"].append(event.transcript)
                            if seen["caller"]:
                                break
            finally:
                talker.cancel()
        return seen

    seen = asyncio.run(conversation())
    assert seen["types"][0] == "session.created"
    assert "session.updated" in seen["types"]
    assert "input_audio_buffer.speech_started" in seen["types"]
    assert "price" in seen["caller"].lower()
    assert seen["audio_bytes"] > 24000 * 2  # over a second of 24 kHz agent audio
    assert any("price" in text.lower() for text in seen["agent"][1:]), seen["agent"]


def test_healthz_reports_the_model_hub_and_prerendering(engine: EngineProcess) -> None:
    deadline = time.monotonic() + 120
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{engine.port}/healthz", timeout=5) as r:
            health = json.loads(r.read())
        models = health["models"]
        if models["prerender_done"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert health["status"] == "ok"
    assert models["prerender_done"], models
    # The test engine's knowledge bases (the sample and tests/kb/payments): greeting, handoff,
    # goodbye, fallback, their answers and prompts (a call may have synthesized the greeting or
    # an answer first; those count as calls).
    replies = [
        text
        for folder in (SAMPLE_KB, PAYMENTS_KB)
        for text in fixed_replies(load_knowledge_base(folder))
    ]
    first_sentences = {PiperTts.sentences(text)[0] for text in replies}
    assert len(first_sentences) - 3 <= models["prerendered"] <= len(first_sentences), models
    assert models["tts_calls"] >= models["prerendered"]
