"""The streaming resampler: chunks join as if the audio were resampled whole, and nothing
above the lower rate's Nyquist frequency folds back into the band on the way down."""

from __future__ import annotations

import numpy as np
import pytest

from agent.resample import Resampler, resample


def _tone(hz: float, rate: int, seconds: float, amplitude: float = 8000) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * hz * t) * amplitude).astype("<i2").tobytes()


def _samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


@pytest.mark.parametrize("quality", ["HQ", "LQ", "QQ"])
@pytest.mark.parametrize(("src", "dst", "frame"), [(16000, 24000, 640), (24000, 16000, 960)])
def test_twenty_ms_chunks_give_what_the_whole_clip_gives(
    src: int, dst: int, frame: int, quality: str
) -> None:
    pcm = _tone(440, src, 1.0) + _tone(1250, src, 1.0)
    stream = Resampler(src, dst, quality=quality)
    chunked = b"".join(stream.process(pcm[i : i + frame]) for i in range(0, len(pcm), frame))
    chunked += stream.flush()
    whole_stream = Resampler(src, dst, quality=quality)
    whole = whole_stream.process(pcm) + whole_stream.flush()
    assert len(chunked) == len(whole)
    assert abs(len(whole) // 2 - len(pcm) // 2 * dst / src) <= 2  # duration kept
    assert np.max(np.abs(_samples(chunked) - _samples(whole))) <= 1  # bit-for-bit but rounding


def test_no_click_where_chunks_meet() -> None:
    """Linear interpolation chunk by chunk restarted at each edge; a stream does not: the
    sample-to-sample step of a resampled tone stays what the tone's own slope allows."""
    stream = Resampler(16000, 24000)
    pcm = _tone(300, 16000, 2.0)
    out = b"".join(stream.process(pcm[i : i + 640]) for i in range(0, len(pcm), 640))
    steps = np.abs(np.diff(_samples(out)[200:]))
    slope = 2 * np.pi * 300 / 24000 * 8000  # the tone's steepest step at 24 kHz
    assert steps.max() < slope * 1.1


def test_going_down_filters_what_the_lower_rate_cannot_carry() -> None:
    """A 10 kHz tone at 24 kHz cannot exist at 16 kHz (Nyquist 8 kHz): it must vanish, not
    fold back to 6 kHz as plain decimation or interpolation would have it."""
    stream = Resampler(24000, 16000)
    pcm = _tone(10_000, 24000, 1.0)
    out = _samples(b"".join(stream.process(pcm[i : i + 960]) for i in range(0, len(pcm), 960)))
    kept = _samples(resample(_tone(1000, 24000, 1.0), 24000, 16000))
    assert np.sqrt(np.mean(out[400:] ** 2)) < 0.01 * np.sqrt(np.mean(kept[400:] ** 2))


def test_a_speech_band_tone_comes_through_at_its_pitch_and_level() -> None:
    out = _samples(resample(_tone(1000, 24000, 1.0), 24000, 16000))[800:-800]
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * 16000 / len(out) - 1000) < 5
    assert 0.95 < np.sqrt(np.mean(out**2)) / (8000 / np.sqrt(2)) < 1.05


def test_the_same_rate_passes_audio_through_untouched() -> None:
    stream = Resampler(16000, 16000)
    pcm = _tone(440, 16000, 0.1)
    assert stream.process(pcm) == pcm
    assert stream.flush() == b""


def test_an_odd_byte_waits_for_its_other_half() -> None:
    stream = Resampler(16000, 16000)
    assert stream.process(b"\x01\x02\x03") == b"\x01\x02"
    assert stream.process(b"\x04") == b"\x03\x04"


def test_reset_drops_what_is_held() -> None:
    stream = Resampler(16000, 24000)
    stream.process(_tone(440, 16000, 0.02))
    stream.reset()
    silence = bytes(640 * 10)
    out = b"".join(stream.process(silence[i : i + 640]) for i in range(0, len(silence), 640))
    assert not any(out), "audio from before the reset came out after it"


def test_bad_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        Resampler(0, 16000)
