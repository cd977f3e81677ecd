"""Recorded prompts the media worker plays on its own, with no model behind it."""

from __future__ import annotations

import functools
import wave
from pathlib import Path

PROMPTS = Path(__file__).parent


@functools.cache
def fallback_prompt() -> bytes:
    """The apology played when the voice model is unreachable (16 kHz PCM16 mono)."""
    with wave.open(str(PROMPTS / "engine_unavailable.wav"), "rb") as wav:
        if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (16000, 1, 2):
            raise ValueError("engine_unavailable.wav must be 16 kHz mono 16-bit")
        return wav.readframes(wav.getnframes())
