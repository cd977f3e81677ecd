"""Pure helpers of the engine session, on synthetic audio (no models)."""

from __future__ import annotations

import numpy as np

from agent.engine import VAD_WINDOW, _energy_tail_ms

BLOCK_MS = 16


def _tone(samples: int, rms: float) -> np.ndarray:
    t = np.arange(samples)
    tone: np.ndarray = (np.sin(2 * np.pi * 220 * t / 16_000) * rms * np.sqrt(2)).astype(np.int16)
    return tone


def _windows(audio: np.ndarray) -> list[np.ndarray]:
    return [audio[i : i + VAD_WINDOW] for i in range(0, len(audio), VAD_WINDOW)]


def test_speech_that_fades_inside_the_last_voiced_window_ends_there() -> None:
    # 10 voiced windows; the last 48 ms (3 blocks) of the tenth are near-silent, then 5 windows
    # the VAD already called silence.
    speech = _tone(10 * VAD_WINDOW, 3000)
    speech[-3 * 256 :] = 0
    windows = _windows(np.concatenate([speech, np.zeros(5 * VAD_WINDOW, np.int16)]))
    assert _energy_tail_ms(windows, trailing=5) == 3 * BLOCK_MS


def test_speech_loud_to_the_end_is_not_moved() -> None:
    windows = [*_windows(_tone(8 * VAD_WINDOW, 3000)), np.zeros(VAD_WINDOW, np.int16)]
    assert _energy_tail_ms(windows, trailing=1) == 0


def test_a_quiet_tail_counts_relative_to_the_utterance() -> None:
    # A soft talker: a tail at 20 % of the speech level is still speech.
    speech = _tone(8 * VAD_WINDOW, 800)
    speech[-256:] = _tone(256, 160)
    assert _energy_tail_ms(_windows(speech), trailing=0) == 0


def test_at_most_the_last_two_windows_are_given_back() -> None:
    speech = np.concatenate([_tone(6 * VAD_WINDOW, 3000), np.zeros(3 * VAD_WINDOW, np.int16)])
    assert _energy_tail_ms(_windows(speech), trailing=0) == 2 * VAD_WINDOW * 1000 // 16_000


def test_too_little_audio_is_left_alone() -> None:
    assert _energy_tail_ms(_windows(np.zeros(2 * VAD_WINDOW, np.int16)), trailing=0) == 0
