"""Small audio helpers shared by the model wrappers: sample format, resampling, WAV files.

Inside Parley audio is 16 kHz mono int16 (see agent.session); the models want float32 in
[-1, 1], and Piper speaks at 22.05 kHz, so these are the conversions every wrapper needs.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.signal import resample_poly  # type: ignore[import-untyped]

from agent.session import SAMPLE_RATE

Float32Array = npt.NDArray[np.float32]
Int16Array = npt.NDArray[np.int16]

_INT16_SCALE = 32768.0


def to_float32(pcm: npt.NDArray[np.generic]) -> Float32Array:
    """Mono samples as float32 in [-1, 1]; int16 is scaled, floats are sanitised and clipped.

    NaN/inf are zeroed and floats clipped because a single bad sample from a codec or a
    buggy producer would otherwise poison a whole model batch.
    """
    arr = np.asarray(pcm).reshape(-1)
    if arr.dtype == np.int16:
        return arr.astype(np.float32) / np.float32(_INT16_SCALE)
    if np.issubdtype(arr.dtype, np.integer):
        # Wider ints are taken as int16-range samples (e.g. after arithmetic in int32).
        wide: Float32Array = np.clip(arr.astype(np.float32) / np.float32(_INT16_SCALE), -1.0, 1.0)
        return wide
    out = np.nan_to_num(arr.astype(np.float32, copy=False), nan=0.0, posinf=1.0, neginf=-1.0)
    clipped: Float32Array = np.clip(out, -1.0, 1.0)
    return clipped


def to_int16(samples: npt.NDArray[np.generic]) -> Int16Array:
    """float [-1, 1] samples as int16 PCM (rounded, clipped); int16 input is returned as is."""
    arr = np.asarray(samples).reshape(-1)
    if arr.dtype == np.int16:
        return arr.astype(np.int16, copy=False)
    scaled: Float32Array = np.rint(to_float32(arr) * np.float32(32767.0))
    return scaled.astype(np.int16)


def resample(samples: npt.NDArray[np.generic], src_rate: int, dst_rate: int) -> Float32Array:
    """Band-limited polyphase resampling (scipy's Kaiser-windowed FIR) to `dst_rate`.

    Polyphase rather than FFT resampling: it has no circular wrap-around at the edges of a
    sentence-sized chunk and costs O(n) per chunk. The output is float32 in [-1, 1]; the
    anti-aliasing filter can overshoot a full-scale input slightly, hence the clip.
    """
    x = to_float32(samples)
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError(f"sample rates must be positive: {src_rate} -> {dst_rate}")
    if src_rate == dst_rate or x.size == 0:
        return x.copy()
    g = math.gcd(src_rate, dst_rate)
    out = resample_poly(x, dst_rate // g, src_rate // g)
    return np.clip(np.asarray(out, dtype=np.float32), -1.0, 1.0)


def trim_leading_silence(
    pcm: Int16Array, *, rate: int = SAMPLE_RATE, keep_ms: int = 10, floor: float = 0.02
) -> Int16Array:
    """`pcm` from `keep_ms` before its first sample louder than `floor` times its peak.

    Synthesised speech often starts with tens of milliseconds of near-silence; on the phone
    that is pure added latency before the caller hears the first word.
    """
    if pcm.size == 0:
        return pcm
    magnitude = np.abs(pcm.astype(np.int32))
    loud = np.flatnonzero(magnitude >= max(1.0, floor * float(magnitude.max())))
    if not len(loud):
        return pcm[:0]
    start = max(0, int(loud[0]) - keep_ms * rate // 1000)
    return pcm[start:]


def read_wav(path: Path) -> tuple[Int16Array, int]:
    """A 16-bit PCM WAV file as mono int16 samples and its sample rate (channels averaged)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        channels = w.getnchannels()
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).round().astype(np.int16)
    return data.astype(np.int16), rate


def read_wav_16k(path: Path) -> Int16Array:
    """A WAV file as Parley-format audio: 16 kHz mono int16."""
    data, rate = read_wav(path)
    if rate == SAMPLE_RATE:
        return data
    return to_int16(resample(data, rate, SAMPLE_RATE))


def write_wav(path: Path, pcm: npt.NDArray[np.generic], rate: int = SAMPLE_RATE) -> None:
    """Mono int16 WAV (float input is converted); for tests, benchmarks and debugging."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(to_int16(pcm).astype("<i2").tobytes())


def rms_dbfs(pcm: npt.NDArray[np.generic]) -> float:
    """RMS level in dBFS (-inf for empty or digital silence)."""
    x = to_float32(pcm)
    if x.size == 0:
        return -math.inf
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf
