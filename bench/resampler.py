"""The streaming resampler (agent/resample.py) on the call path of a 24 kHz model. Prints
numbers; asserts nothing.

  1. CPU per 20 ms frame, each direction (16 → 24 kHz for the caller, 24 → 16 kHz for the
     model's answer), p50 / p99 over many frames;
  2. what it holds back: for each 20 ms frame in, how much audio is not out yet (the
     latency it adds to a frame, at worst and on average);
  3. the same for the linear interpolation it replaced (stateless, nothing held back).

Usage: python bench/resampler.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as `python bench/…` from anywhere

from agent.resample import Resampler  # noqa: E402
from bench.machine import describe  # noqa: E402


def _speechlike(rate: int, seconds: float) -> bytes:
    rng = np.random.default_rng(7)
    t = np.arange(int(rate * seconds)) / rate
    voiced = np.sin(2 * np.pi * 140 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    noise = rng.normal(0, 0.2, len(t))
    return (np.clip(voiced + noise, -1, 1) * 12000).astype("<i2").tobytes()


def _linear(pcm: bytes, src: int, dst: int) -> bytes:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    n_out = max(1, round(len(samples) * dst / src))
    positions = np.arange(n_out, dtype=np.float64) * (src / dst)
    out = np.interp(positions, np.arange(len(samples)), samples)
    return bytes(np.clip(out, -32768, 32767).astype("<i2").tobytes())


def _pct(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def _stray_db(src: int, dst: int, quality: str) -> float:
    """What should not be there, against the tone that should: a 3 kHz tone's images above
    8 kHz going up, a 10 kHz tone folded into the band going down (dB)."""
    hz = 3000 if dst > src else 10_000
    t = np.arange(src) / src
    tone = (np.sin(2 * np.pi * hz * t) * 8000).astype("<i2").tobytes()
    stream = Resampler(src, dst, quality=quality)
    frame = src * 20 // 1000 * 2
    out = b"".join(stream.process(tone[i : i + frame]) for i in range(0, len(tone), frame))
    y = np.frombuffer(out, dtype="<i2").astype(np.float64)[dst // 10 :]
    power = np.abs(np.fft.rfft(y * np.hanning(len(y)))) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / dst)
    reference = (
        np.abs(
            np.fft.rfft(
                np.sin(2 * np.pi * 1000 * np.arange(len(y)) / dst) * 8000 * np.hanning(len(y))
            )
        )
        ** 2
    )
    if dst > src:
        wanted = power[(freqs > hz - 100) & (freqs < hz + 100)].sum()
        return float(10 * np.log10(power[freqs > 8000].sum() / wanted))
    return float(10 * np.log10(power[freqs < 8000].sum() / reference.sum()))


def run(src: int, dst: int, seconds: float, quality: str) -> None:
    frame = src * 20 // 1000 * 2
    pcm = _speechlike(src, seconds)
    stream = Resampler(src, dst, quality=quality)
    cost_us: list[float] = []
    held_ms: list[float] = []
    into = out = 0
    for offset in range(0, len(pcm) - frame + 1, frame):
        chunk = pcm[offset : offset + frame]
        started = time.perf_counter()
        got = stream.process(chunk)
        cost_us.append((time.perf_counter() - started) * 1e6)
        into += len(chunk) // 2
        out += len(got) // 2
        held_ms.append((into / src - out / dst) * 1000)
    stray = "images" if dst > src else "aliases"
    print(
        f"  {src // 1000} -> {dst // 1000} kHz, soxr {quality:>3}: "
        f"{statistics.median(cost_us):5.1f} / {_pct(cost_us, 99):5.1f} us p50/p99 per frame, "
        f"holds back {statistics.mean(held_ms):4.1f} ms on average ({max(held_ms):4.1f} at most), "
        f"{stray} {_stray_db(src, dst, quality):7.1f} dB"
    )


def run_linear(src: int, dst: int, seconds: float) -> None:
    frame = src * 20 // 1000 * 2
    pcm = _speechlike(src, seconds)
    linear_us: list[float] = []
    for offset in range(0, len(pcm) - frame + 1, frame):
        started = time.perf_counter()
        _linear(pcm[offset : offset + frame], src, dst)
        linear_us.append((time.perf_counter() - started) * 1e6)
    print(
        f"  {src // 1000} -> {dst // 1000} kHz, linear per chunk (replaced): "
        f"{statistics.median(linear_us):5.1f} / {_pct(linear_us, 99):5.1f} us, holds nothing, "
        "restarts at every chunk"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    print(describe())
    print("20 ms frames of speech-like audio:")
    for src, dst in ((16_000, 24_000), (24_000, 16_000)):
        for quality in ("QQ", "LQ", "HQ"):
            run(src, dst, args.seconds, quality)
        run_linear(src, dst, args.seconds)


if __name__ == "__main__":
    main()
