"""Recorded prompts the media worker plays on its own, with no model behind it."""

from __future__ import annotations

import functools
import wave
from pathlib import Path

PROMPTS = Path(__file__).parent


@functools.cache
def fallback_prompt(*, hold: bool = False) -> bytes:
    """The apology played when the voice model is unreachable (16 kHz PCM16 mono): "please
    call back", or with `hold`, "please hold for a member of our team"."""
    name = "engine_unavailable_hold.wav" if hold else "engine_unavailable.wav"
    with wave.open(str(PROMPTS / name), "rb") as wav:
        if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (16000, 1, 2):
            raise ValueError(f"{name} must be 16 kHz mono 16-bit")
        return wav.readframes(wav.getnframes())


HOLD_LOOP_S = 6.0
_HOLD_NOTES_HZ = (392.0, 493.9, 587.3, 784.0, 587.3, 493.9)  # G major, up and back down


@functools.cache
def hold_audio() -> bytes:
    """Hold music: a soft six-note phrase looped while the caller waits for a person (16 kHz
    PCM16 mono, HOLD_LOOP_S long, about -24 dBFS). Synthesized, so no file can be missing."""
    import numpy as np

    rate = 16000
    note_s = 0.5
    t = np.arange(int(rate * note_s)) / rate
    envelope = np.minimum(1.0, t / 0.02) * np.exp(-3.0 * t)  # a plucked, bell-like decay
    notes = [np.sin(2 * np.pi * hz * t) * envelope for hz in _HOLD_NOTES_HZ]
    phrase = np.concatenate(notes)
    loop = np.zeros(int(rate * HOLD_LOOP_S))
    loop[: len(phrase)] = phrase
    return (loop * 0.063 * 32767).astype("<i2").tobytes()
