"""The last stretch of sound an utterance ends in (agent/hesitation.py)."""

from __future__ import annotations

import numpy as np

from agent.hesitation import MAX_MS, final_island

RATE = 16_000


def tone(ms: int, level: float = 8000.0, hz: float = 180.0) -> np.ndarray:
    t = np.arange(ms * RATE // 1000) / RATE
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def quiet(ms: int, level: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(ms)
    return (rng.standard_normal(ms * RATE // 1000) * level).astype(np.int16)


def test_a_stretch_after_a_break_is_cut_out_with_a_margin() -> None:
    words, filler = tone(1200), tone(300, hz=140)
    utterance = np.concatenate([words, quiet(150), filler, quiet(160)])
    island = final_island(utterance)
    assert island is not None
    # 50 ms before the filler's onset, 100 ms after its end (within a 10 ms block).
    assert abs(len(island) - (50 + 300 + 100) * RATE // 1000) <= 160
    start = len(words) + 150 * RATE // 1000 - 50 * RATE // 1000
    assert np.array_equal(island[:400], utterance[start : start + 400])


def test_no_break_near_the_end_gives_the_last_max_ms() -> None:
    utterance = np.concatenate([tone(2000), quiet(160)])
    island = final_island(utterance)
    assert island is not None
    assert len(island) == (50 + MAX_MS + 100) * RATE // 1000


def test_a_click_after_a_break_and_tiny_or_silent_input_give_nothing() -> None:
    assert final_island(np.concatenate([tone(1200), quiet(200), tone(40), quiet(100)])) is None
    assert final_island(tone(100)) is None
    assert final_island(np.zeros(16000, np.int16)) is None
    assert final_island(np.zeros(0, np.int16)) is None


def test_a_noise_floor_well_under_the_speech_does_not_hide_the_break() -> None:
    utterance = np.concatenate([tone(1000), quiet(150, 150.0), tone(250), quiet(160, 150.0)])
    island = final_island(utterance + quiet(len(utterance) * 1000 // RATE, 150.0))
    assert island is not None and len(island) < 500 * RATE // 1000
