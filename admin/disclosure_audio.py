"""A disclosure's audio: its text spoken by the engine's Piper voice, stored by SHA-256.

`<data_dir>/disclosures/<sha256>.wav` (16 kHz mono 16-bit) is what callers hear; the SHA-256
is of the file's bytes, so `sha256sum` on the file matches `disclosure_versions.audio_sha256`.
Short prompts around consent (the goodbye) live in `prompts/`, named by the SHA-256 of
their text, since no database row points at them.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agent.session import SAMPLE_RATE

SENTENCE_GAP_S = 0.3  # between sentences, as a person reading a notice would pause

Render = Callable[[str], bytes]  # text -> WAV file bytes


def audio_dir(data_dir: Path) -> Path:
    return data_dir / "disclosures"


def audio_path(folder: Path, sha256: str) -> Path:
    return folder / f"{sha256}.wav"


def prompt_path(folder: Path, text: str) -> Path:
    return folder / "prompts" / f"{hashlib.sha256(text.encode()).hexdigest()}.wav"


def wav_bytes(pcm: np.ndarray) -> bytes:
    """16 kHz mono int16 samples as a WAV file (the same bytes for the same samples)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm.astype("<i2").tobytes())
    return buffer.getvalue()


def write_atomically(path: Path, data: bytes) -> None:
    """Writes `path` so that a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".render-")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def store(folder: Path, wav: bytes) -> str:
    """Keeps a disclosure's WAV under its SHA-256; returns the hash."""
    sha256 = hashlib.sha256(wav).hexdigest()
    path = audio_path(folder, sha256)
    if not path.is_file():
        write_atomically(path, wav)
    return sha256


class PiperRenderer:
    """Speaks text with the engine's Piper voice; the voice is loaded on first use."""

    def __init__(self) -> None:
        self._tts: object | None = None

    def __call__(self, text: str) -> bytes:
        from agent.tts import PiperTts

        if self._tts is None:
            self._tts = PiperTts(threads=1)
        assert isinstance(self._tts, PiperTts)
        gap = np.zeros(int(SAMPLE_RATE * SENTENCE_GAP_S), dtype=np.int16)
        parts: list[np.ndarray] = []
        for chunk in self._tts.stream(text):
            parts += [chunk, gap]
        if not parts:
            raise ValueError("the disclosure text has nothing to say")
        return wav_bytes(np.concatenate(parts[:-1]))  # no gap after the last sentence
