"""What Parley adds on top of a hosted model, per frame and per turn. Prints numbers; asserts
nothing.

A local WebSocket server plays the provider's side (OpenAI Realtime GA events, or Gemini Live
messages) with no model behind it and answers at once, so what is measured is the adapter's
own work on the call path, in the media worker's event loop:

  1. per caller frame: `send_audio` (resampling up where the model wants 24 kHz, base64, JSON,
     the WebSocket write) — p50 / p99 over N frames;
  2. per turn: from the server writing the first audio of an answer to the adapter yielding
     it as 16 kHz agent audio (the read, JSON, base64, resampling down) — p50 / p99 over T
     turns, each answer 1 s of 24 kHz audio in 100 ms messages.

Usage: python bench/model_overhead.py [--frames 3000] [--turns 200]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection, serve

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as `python bench/…` from anywhere

from agent.gemini_live import GeminiLiveSession, GeminiOptions  # noqa: E402
from agent.openai_realtime import OpenAIOptions, OpenAIRealtimeSession  # noqa: E402
from agent.session import AgentAudio, CallerAudio, DuplexSession, EventKind, SessionEvent  # noqa: E402
from bench.machine import describe  # noqa: E402

ANSWER = (np.sin(2 * np.pi * 220 * np.arange(24_000) / 24_000) * 8000).astype("<i2").tobytes()
PIECE = 4800  # bytes: 100 ms at 24 kHz
NO_RENEWAL = OpenAIOptions(renew_after_s=1e9)


def _pct(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


class Provider:
    """The provider's side: takes whatever comes, and on `answer()` streams ANSWER."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.ws: ServerConnection | None = None
        self.connected = asyncio.Event()
        self.sent_at: list[float] = []

    async def serve(self, ws: ServerConnection) -> None:
        if self.kind == "gemini":
            await ws.recv()  # setup
            await ws.send(json.dumps({"setupComplete": {}}))
        else:
            await ws.send(json.dumps({"type": "session.created", "event_id": "e0", "session": {}}))
        self.ws = ws
        self.connected.set()
        async for _ in ws:
            pass

    async def answer(self, turn: int) -> None:
        assert self.ws is not None
        for offset in range(0, len(ANSWER), PIECE):
            data = base64.b64encode(ANSWER[offset : offset + PIECE]).decode()
            if self.kind == "gemini":
                part = {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": data}}
                message: dict[str, Any] = {"serverContent": {"modelTurn": {"parts": [part]}}}
            else:
                message = {
                    "type": "response.output_audio.delta", "event_id": f"e{turn}.{offset}",
                    "response_id": f"r{turn}", "item_id": f"i{turn}", "output_index": 0,
                    "content_index": 0, "delta": data,
                }  # fmt: skip
            if offset == 0:
                self.sent_at.append(time.perf_counter())
            await self.ws.send(json.dumps(message))
        if self.kind == "gemini":
            done: dict[str, Any] = {"serverContent": {"turnComplete": True}}
        else:
            done = {
                "type": "response.output_audio.done", "event_id": f"d{turn}",
                "response_id": f"r{turn}", "item_id": f"i{turn}", "output_index": 0,
                "content_index": 0,
            }  # fmt: skip
        await self.ws.send(json.dumps(done))


async def measure(
    name: str, make: Callable[[str], DuplexSession], kind: str, frames: int, turns: int
) -> None:
    provider = Provider(kind)
    async with serve(provider.serve, "127.0.0.1", 0, max_size=2**24) as server:
        port = server.sockets[0].getsockname()[1]
        session = make(f"ws://127.0.0.1:{port}/v1/realtime")
        await session.start()
        await provider.connected.wait()
        voice = (np.sin(2 * np.pi * 200 * np.arange(320) / 16000) * 6000).astype("<i2").tobytes()
        per_frame: list[float] = []
        for n in range(frames):
            started = time.perf_counter()
            await session.send_audio(CallerAudio(voice, n))
            per_frame.append((time.perf_counter() - started) * 1e6)
            if n % 50 == 0:
                await asyncio.sleep(0)  # let the socket drain, as the 20 ms clock would
        outputs = session.outputs()
        per_turn: list[float] = []
        for turn in range(turns):
            await provider.answer(turn)
            first: float | None = None
            async for item in outputs:
                if isinstance(item, AgentAudio) and first is None:
                    first = time.perf_counter()
                if isinstance(item, SessionEvent) and item.kind is EventKind.AGENT_UTTERANCE_DONE:
                    break
            assert first is not None
            per_turn.append((first - provider.sent_at[-1]) * 1000)
        await session.close()
    print(
        f"  {name:12s} per caller frame {statistics.median(per_frame):6.1f} / "
        f"{_pct(per_frame, 99):6.1f} us p50/p99;  per turn, first audio in → out "
        f"{statistics.median(per_turn):5.2f} / {_pct(per_turn, 99):5.2f} ms p50/p99"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--turns", type=int, default=200)
    args = parser.parse_args()
    print(describe())
    print(f"{args.frames} caller frames of 20 ms; {args.turns} answers of 1 s (100 ms messages):")
    asyncio.run(
        measure(
            "gpt-realtime",
            lambda url: OpenAIRealtimeSession(url, api_key="k", options=NO_RENEWAL),
            "openai", args.frames, args.turns,
        )
    )  # fmt: skip
    asyncio.run(
        measure(
            "gemini-live",
            lambda url: GeminiLiveSession(url, api_key="k", options=GeminiOptions()),
            "gemini", args.frames, args.turns,
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
