"""The engine server's models, loaded once and shared by every live call.

VAD windows from all sessions are batched into one forward pass per tick (FACTS.md: 64
windows cost 6.4 ms together against 0.87 ms each alone). ASR and TTS run on their own
single-thread executors so neither blocks the event loop or the other; CTranslate2 and
onnxruntime release the GIL while they compute.

ASR batches itself under load: a request that arrives while Whisper is busy waits, and when
Whisper comes free every waiting request of a similar length goes through one `generate`
(bench/models.py: 4 x 1 s in 86 ms instead of 148 ms). Requests made in the same turn of the
event loop start together (a session's utterance and its last stretch, decoded for a filler,
are one pass, not two in a row). An idle engine adds no other wait, and a request withdrawn
while it waited (a discarded look-ahead) costs nothing.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.asr import Transcript, WhisperAsr
from agent.tts import PiperTts
from agent.vad import BatchedVad

log = logging.getLogger(__name__)

MAX_ASR_BATCH = 8


@dataclass(frozen=True, slots=True)
class _AsrRequest:
    pcm: np.ndarray
    future: asyncio.Future[str]
    urgent: bool


@dataclass
class HubStats:
    vad_batches: int = 0
    vad_windows: int = 0
    vad_busy_s: float = 0.0
    asr_calls: int = 0  # generate passes
    asr_utterances: int = 0
    asr_busy_s: float = 0.0
    tts_calls: int = 0
    tts_busy_s: float = 0.0
    tts_cache_hits: int = 0
    prerendered: int = 0
    prerender_done: bool = False


class ModelHub:
    def __init__(
        self,
        *,
        vad: BatchedVad,
        asr: WhisperAsr,
        tts: PiperTts,
        vad_batch_ms: float = 8.0,
        batching: bool = True,
    ) -> None:
        self._vad = vad
        self._asr = asr
        self._tts = tts
        self._vad_batch_s = vad_batch_ms / 1000
        self.batching = batching
        self._pending: dict[int, tuple[np.ndarray, asyncio.Future[float]]] = {}
        self._flush_scheduled = False
        self._asr_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="asr")
        self._asr_waiting: list[_AsrRequest] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._asr_busy = False
        self._closed = False
        self._tts_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tts")
        self.stats = HubStats()
        self._tts_cache: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
        self._tts_cache_size = 1024  # ~4 s of 16 kHz audio each: ~130 MB at most

    @classmethod
    def load(
        cls,
        *,
        vad_model: Path | None = None,
        asr_model: Path | None = None,
        tts_voice: Path | None = None,
        vad_threads: int = 1,
        asr_threads: int = 2,
        batching: bool = True,
        device: str = "cpu",
    ) -> ModelHub:
        """The engine's models; Whisper on `device` (agent/device.py), the VAD and the voice
        on the CPU."""
        started = time.perf_counter()
        vad = BatchedVad(vad_model, threads=vad_threads)
        asr = WhisperAsr(asr_model, threads=asr_threads, device=device)
        tts = PiperTts(tts_voice)
        log.info("models loaded", extra={"seconds": round(time.perf_counter() - started, 2)})
        return cls(vad=vad, asr=asr, tts=tts, batching=batching)

    @property
    def device(self) -> str:
        """Where Whisper runs ("cpu", "cuda", "cuda:1")."""
        return str(getattr(self._asr, "device", "cpu"))

    # --- VAD ----------------------------------------------------------------------------

    def open_vad_stream(self) -> int:
        return self._vad.open_stream()

    def close_vad_stream(self, stream_id: int) -> None:
        pending = self._pending.pop(stream_id, None)
        if pending is not None and not pending[1].done():
            pending[1].cancel()
        self._vad.close_stream(stream_id)

    async def vad(self, stream_id: int, window: np.ndarray) -> float:
        if not self.batching:
            return self._run_vad({stream_id: window})[stream_id]
        loop = self._on_loop()
        if stream_id in self._pending:
            # One window per stream per batch: the recurrent state must advance in order.
            self._flush()
        future: asyncio.Future[float] = loop.create_future()
        self._pending[stream_id] = (window, future)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_later(self._vad_batch_s, self._flush)
        return await future

    def _on_loop(self) -> asyncio.AbstractEventLoop:
        """The running loop; a hub moved to a new one starts its batching afresh.

        A VAD flush or ASR completion scheduled on a loop that has since closed never runs:
        left as it was, the hub would wait on it for ever. (The server keeps one loop for its
        life; tests and tools that call asyncio.run more than once do not.)
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._pending, self._flush_scheduled = {}, False
            self._asr_waiting, self._asr_busy = [], False
        return loop

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        try:
            results = self._run_vad({sid: window for sid, (window, _) in batch.items()})
        except Exception as error:  # a model failure must reach every waiting session
            for _, future in batch.values():
                if not future.done():
                    future.set_exception(error)
            return
        for sid, (_, future) in batch.items():
            if not future.done():
                future.set_result(results[sid])

    def _run_vad(self, windows: dict[int, np.ndarray]) -> dict[int, float]:
        started = time.perf_counter()
        results = self._vad.process(windows)
        stats = self.stats
        stats.vad_busy_s += time.perf_counter() - started
        stats.vad_batches += 1
        stats.vad_windows += len(windows)
        return results

    # --- ASR and TTS --------------------------------------------------------------------

    async def transcribe(self, pcm: np.ndarray, *, urgent: bool = False) -> str:
        """Text of one utterance. `urgent` goes ahead of the queue: a session whose agent is
        paused on caller speech waits on it to know whether that was only a back-channel."""
        if len(pcm) < 1600:  # under 0.1 s: nothing Whisper can read
            return ""
        loop = self._on_loop()
        future: asyncio.Future[str] = loop.create_future()
        self._asr_waiting.append(_AsrRequest(pcm, future, urgent))
        if not self._asr_busy:
            # Start on the loop's next turn, so that requests made together go together.
            self._asr_busy = True
            loop.call_soon(self._next_asr_batch)
        return await future

    def _next_asr_batch(self) -> None:
        waiting = [request for request in self._asr_waiting if not request.future.done()]
        if not waiting:
            self._asr_waiting, self._asr_busy = [], False
            return
        waiting.sort(key=lambda request: not request.urgent)  # stable: arrival order otherwise
        # The first request, with the others whose length is within a factor of two of it:
        # each utterance in a batch is padded to the longest, and every one is followed by the
        # same silence, which is part of what the encoder pays for.
        padding = self._asr.padding_samples
        first = len(waiting[0].pcm) + padding
        batch, rest = [waiting[0]], []
        for request in waiting[1:]:
            similar = first / 2 <= len(request.pcm) + padding <= first * 2
            if similar and self.batching and len(batch) < MAX_ASR_BATCH:
                batch.append(request)
            else:
                rest.append(request)
        self._asr_waiting, self._asr_busy = rest, True
        started = time.perf_counter()
        job = asyncio.get_running_loop().run_in_executor(
            self._asr_pool, self._asr.transcribe_batch, [request.pcm for request in batch]
        )
        job.add_done_callback(lambda done: self._asr_batch_done(batch, done, started))

    def _asr_batch_done(
        self,
        batch: list[_AsrRequest],
        job: asyncio.Future[list[Transcript]],
        started: float,
    ) -> None:
        self.stats.asr_calls += 1
        self.stats.asr_utterances += len(batch)
        self.stats.asr_busy_s += time.perf_counter() - started
        for i, future in enumerate(request.future for request in batch):
            if future.done():
                continue
            if job.cancelled():  # the hub is closing
                future.cancel()
            elif (error := job.exception()) is not None:
                future.set_exception(error)  # a model failure reaches every waiting session
            else:
                future.set_result(job.result()[i].text.strip())
        if not self._closed:
            self._next_asr_batch()

    def sentences(self, text: str) -> list[str]:
        return self._tts.sentences(text)

    async def synthesize(self, sentence: str) -> np.ndarray:
        # Knowledge-base answers, greetings and prompts repeat word for word across calls:
        # their audio is made once.
        cached = self._tts_cache.get(sentence)
        if cached is not None:
            self._tts_cache.move_to_end(sentence)
            self.stats.tts_cache_hits += 1
            return cached
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        audio = await loop.run_in_executor(self._tts_pool, self._tts.synthesize, sentence)
        self.stats.tts_calls += 1
        self.stats.tts_busy_s += time.perf_counter() - started
        result = np.asarray(audio, dtype=np.int16)
        self._tts_cache[sentence] = result
        if len(self._tts_cache) > self._tts_cache_size:
            self._tts_cache.popitem(last=False)
        return result

    async def prerender(self, texts: Iterable[str]) -> int:
        """Synthesizes the first sentence of each fixed text (greetings, knowledge-base
        answers, procedure prompts) into the cache, one at a time so live calls' synthesis
        never queues behind more than one of them. Returns how many were made."""
        made = 0
        started = time.perf_counter()
        for text in texts:
            first = next(iter(self.sentences(text)), "")
            if first and first not in self._tts_cache:
                await self.synthesize(first)
                made += 1
                self.stats.prerendered = made
        self.stats.prerender_done = True
        log.info(
            "fixed replies prerendered",
            extra={"sentences": made, "seconds": round(time.perf_counter() - started, 2)},
        )
        return made

    def close(self) -> None:
        self._closed = True
        self._asr_pool.shutdown(wait=False, cancel_futures=True)
        self._tts_pool.shutdown(wait=False, cancel_futures=True)
