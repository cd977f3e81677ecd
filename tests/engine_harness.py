"""Drives an EngineSession in-process with synthesized caller audio, paced in real time.

Caller speech comes from espeak-ng (a voice unlike Piper's joe, so the test is not circular).
Every event the session sends is recorded with the session's stream clock (ms of caller
audio received) at the moment it was sent.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import tempfile
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.app import Knowledge
from agent.backchannel import judge_overlap
from agent.engine import EngineConfig, EngineSession
from agent.hub import ModelHub
from agent.turns import HesitationAwareTurns

FRAME = 320  # 20 ms at 16 kHz


def speak(
    text: str, *, voice: str = "en-us+m3", rate_wpm: int = 165, gain: float = 1.0
) -> np.ndarray:
    """Caller speech from espeak-ng as 16 kHz int16."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "say.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(rate_wpm), "-w", str(path), text],
            check=True,
            capture_output=True,
        )
        with wave.open(str(path), "rb") as wav:
            rate = wav.getframerate()
            pcm = wav.readframes(wav.getnframes())
    samples = _espeak_to_16k(np.frombuffer(pcm, dtype="<i2").astype(np.float32), rate)
    # espeak pads its output with silence; a caller's words run on, so trim it.
    voiced = np.flatnonzero(np.abs(samples) > 300)
    if len(voiced):
        samples = samples[max(0, voiced[0] - 800) : voiced[-1] + 800]
    out: np.ndarray = np.clip(samples * gain, -32768, 32767).astype(np.int16)
    return out


def _espeak_to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """espeak's 22.05 kHz as 16 kHz by linear interpolation: how the test callers' voices have
    always been made. Not Parley's resampler (agent/resample.py): these clips are the tests'
    inputs, and Whisper's reading of them ("my order number" vs "my origin number") shifts
    with the filter, so they stay as they were."""
    if rate == 16_000:
        return samples
    n_out = max(1, round(len(samples) * 16_000 / rate))
    out = np.interp(np.arange(n_out) * (rate / 16_000), np.arange(len(samples)), samples)
    as_pcm: np.ndarray = np.clip(out, -32768, 32767).astype("<i2").astype(np.float32)
    return as_pcm


def silence(ms: int) -> np.ndarray:
    return np.zeros(ms * 16, dtype=np.int16)


@dataclass
class Sent:
    kind: str
    fields: dict[str, Any]
    t_ms: int


@dataclass
class Harness:
    hub: ModelHub
    knowledge: Knowledge
    config: EngineConfig = field(default_factory=EngineConfig)
    events: list[Sent] = field(default_factory=list)
    session: EngineSession | None = None
    fed_ms: int = 0

    async def open(self, greet: bool = True, **options: Any) -> EngineSession:
        async def send(kind: str, fields: dict[str, Any]) -> None:
            assert self.session is not None
            self.events.append(Sent(kind, fields, self.session.t_ms))

        config = EngineConfig(**{**self.config.__dict__, "greet": greet, **options})
        self.session = EngineSession(
            models=self.hub,
            dialogue=self.knowledge.conversation({}),
            turns=HesitationAwareTurns(),
            send=send,
            judge_overlap=judge_overlap,
            config=config,
        )
        await self.session.start()
        return self.session

    async def feed(self, audio: np.ndarray, *, realtime: bool = True) -> None:
        """Feeds caller audio in 20 ms frames at the pace a phone line would."""
        assert self.session is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(0, len(audio) - FRAME + 1, FRAME):
            await self.session.audio(audio[i : i + FRAME])
            self.fed_ms += 20
            if realtime:
                delay = started + (i // FRAME + 1) * 0.02 - loop.time()
                await asyncio.sleep(max(0.0, delay))

    async def feed_until(self, kind: str, *, timeout_ms: int = 15_000) -> Sent:
        """Feeds silence until the session has sent an event of `kind`."""
        for _ in range(timeout_ms // 20):
            found = self.first(kind)
            if found is not None:
                return found
            await self.feed(silence(20))
        raise AssertionError(f"no {kind} within {timeout_ms} ms; sent: {self.kinds()}")

    def first(self, kind: str, after_ms: int = -1) -> Sent | None:
        return next((e for e in self.events if e.kind == kind and e.t_ms > after_ms), None)

    def all(self, kind: str) -> list[Sent]:
        return [e for e in self.events if e.kind == kind]

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def agent_audio(self) -> np.ndarray:
        chunks = [
            np.frombuffer(base64.b64decode(e.fields["delta"]), dtype="<i2")
            for e in self.all("response.output_audio.delta")
        ]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
