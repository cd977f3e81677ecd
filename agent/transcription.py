"""A transcription-only session: the caller's speech in, its words out; the engine never speaks.

What a Realtime client gets by opening a session with `session.type: "transcription"`: the
media worker uses one to hear a caller's spoken consent ("yes", "no") after a disclosure,
before any agent is on the call. The server VAD (Silero, the engine's thresholds) marks each
utterance; Whisper transcribes it; the events are the Realtime ones:
input_audio_buffer.speech_started / speech_stopped / committed, conversation.item.added, and
conversation.item.input_audio_transcription.completed (or .failed).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np

from agent.engine import RATE, VAD_WINDOW, EngineConfig, Models, Send
from agent.realtime import new_id

log = logging.getLogger(__name__)

# An answer is over once the caller has been quiet this long: longer than the agent's turn
# hangover, since nothing is waiting on it and a cut "yes, but..." would be misread.
ANSWER_HANGOVER_MS = 400
MAX_UTTERANCE_MS = 15_000


class TranscriptionSession:
    """One connection's utterances, each transcribed in order."""

    def __init__(self, *, models: Models, send: Send, config: EngineConfig | None = None) -> None:
        self.models = models
        self.send = send
        self.config = config or EngineConfig()
        self.stream = models.open_vad_stream()
        self.t_ms = 0
        self._pending = np.zeros(0, dtype=np.int16)
        self._utterance: list[np.ndarray] = []
        self._in_speech = False
        self._speech_run_ms = 0
        self._silence_run_ms = 0
        self._start_ms = 0
        self._item_id = ""
        self._decoding: set[asyncio.Task[None]] = set()
        self._last: asyncio.Task[None] | None = None  # results go out in utterance order
        self.closed = False

    async def start(self) -> None:
        """Nothing to say: a transcription session only listens."""

    async def audio(self, pcm16k: np.ndarray) -> None:
        self._pending = np.concatenate([self._pending, pcm16k])
        while len(self._pending) >= VAD_WINDOW:
            window, self._pending = self._pending[:VAD_WINDOW], self._pending[VAD_WINDOW:]
            await self._window(window)

    async def _window(self, window: np.ndarray) -> None:
        config = self.config
        window_ms = VAD_WINDOW * 1000 // RATE
        self.t_ms += window_ms
        probability = await self.models.vad(self.stream, window)
        threshold = config.offset_threshold if self._in_speech else config.onset_threshold
        voiced = probability >= threshold
        if self._in_speech or voiced:
            self._utterance.append(window)
        if voiced:
            self._speech_run_ms += window_ms
            self._silence_run_ms = 0
            if not self._in_speech and self._speech_run_ms >= config.min_speech_ms:
                await self._started()
        else:
            self._silence_run_ms += window_ms
            if not self._in_speech:
                self._speech_run_ms = 0
                self._utterance = self._utterance[-3:]  # keep the onset's lead-in
            elif self._silence_run_ms >= ANSWER_HANGOVER_MS:
                await self._stopped()
        if self._in_speech and len(self._utterance) * window_ms >= MAX_UTTERANCE_MS:
            await self._stopped()

    async def _started(self) -> None:
        self._in_speech = True
        self._item_id = new_id("item")
        self._start_ms = self.t_ms - self._speech_run_ms
        await self.send(
            "input_audio_buffer.speech_started",
            {"audio_start_ms": self._start_ms, "item_id": self._item_id},
        )

    async def _stopped(self) -> None:
        self._in_speech = False
        self._speech_run_ms = 0
        item_id = self._item_id
        end_ms = self.t_ms - self._silence_run_ms
        await self.send(
            "input_audio_buffer.speech_stopped", {"audio_end_ms": end_ms, "item_id": item_id}
        )
        await self.send("input_audio_buffer.committed", {"item_id": item_id})
        await self.send(
            "conversation.item.added",
            {"item": {"id": item_id, "type": "message", "role": "user", "status": "completed"}},
        )
        audio = np.concatenate(self._utterance)
        self._utterance = []
        task = asyncio.create_task(self._transcribe(item_id, audio, self._last))
        self._last = task
        self._decoding.add(task)
        task.add_done_callback(self._decoding.discard)

    async def _transcribe(
        self, item_id: str, audio: np.ndarray, before: asyncio.Task[None] | None
    ) -> None:
        try:
            text = await self.models.transcribe(audio)
            failure: dict[str, Any] | None = None
        except Exception as error:  # a model that fails must not end the connection
            log.exception("transcription failed")
            text, failure = "", {"type": "server_error", "message": type(error).__name__}
        if before is not None:
            await asyncio.gather(before, return_exceptions=True)
        if failure is not None:
            await self.send(
                "conversation.item.input_audio_transcription.failed",
                {"item_id": item_id, "content_index": 0, "error": failure},
            )
            return
        await self.send(
            "conversation.item.input_audio_transcription.completed",
            {"item_id": item_id, "content_index": 0, "transcript": text.strip()},
        )

    async def close(self) -> None:
        self.closed = True
        for task in list(self._decoding):
            task.cancel()
        self.models.close_vad_stream(self.stream)
