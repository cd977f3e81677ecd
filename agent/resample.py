"""One streaming resampler for every place audio changes rate (a hosted model's 24 kHz, a
browser's 48 kHz): soxr, with its filter state carried from one chunk to the next.

Resampling each chunk on its own (as linear interpolation per chunk did) restarts the filter at
every chunk's edge: a click every 20 ms and no anti-aliasing on the way down. A stream keeps the
filter's history, so the chunks join as if the audio had been resampled whole.

What a filter holds back is latency on a live stream, so the quality is chosen per path
(`bench/resampler.py` measured each on 20 ms frames, docs/benchmarks.md):

- audio that arrives in bursts ahead of real time (a model's answer coming down to 16 kHz):
  high quality, aliases at -84 dB; it holds back ~21 ms, which `flush()` gives back at the
  utterance's end and which the burst hides;
- a live stream going up (the caller, 16 → 24 kHz, to a hosted model): quick cubic
  interpolation, 0.1 ms held back, images above 8 kHz at -36 dB (nothing a model hears);
- a live stream coming down (a 24 kHz client's caller into the engine): low quality, aliases
  at -84 dB, ~11 ms held back.
"""

from __future__ import annotations

import numpy as np
import soxr  # type: ignore[import-untyped]

QUALITY = "HQ"  # bursts ahead of real time; 'VHQ' holds back more for no gain on speech
LIVE_UP = "QQ"  # a live stream to a higher rate
LIVE_DOWN = "LQ"  # a live stream to a lower rate


class Resampler:
    """PCM16 mono from `src_rate` to `dst_rate`, chunk by chunk; bytes in, bytes out."""

    def __init__(self, src_rate: int, dst_rate: int, *, quality: str = QUALITY) -> None:
        if src_rate <= 0 or dst_rate <= 0:
            raise ValueError(f"sample rates must be positive, not {src_rate} → {dst_rate}")
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self._quality = quality
        self._stream = self._new_stream()
        self._odd = b""  # half a sample left over from the last chunk

    def _new_stream(self) -> soxr.ResampleStream | None:
        if self.src_rate == self.dst_rate:
            return None
        return soxr.ResampleStream(
            self.src_rate, self.dst_rate, 1, dtype="float32", quality=self._quality
        )

    def process(self, pcm: bytes) -> bytes:
        """The resampled audio this chunk completes (possibly none yet)."""
        if self._odd:
            pcm, self._odd = self._odd + pcm, b""
        if len(pcm) % 2:
            pcm, self._odd = pcm[:-1], pcm[-1:]
        if self._stream is None:
            return pcm
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        return _pcm16(self._stream.resample_chunk(samples))

    def flush(self) -> bytes:
        """What the filter still holds (the end of an utterance); the stream then starts anew."""
        self._odd = b""
        if self._stream is None:
            return b""
        tail = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        self._stream = self._new_stream()
        return _pcm16(tail)

    def reset(self) -> None:
        """Forget what is held (audio cut off: a barge-in), without giving it out."""
        self._odd = b""
        self._stream = self._new_stream()


def _pcm16(samples: np.ndarray) -> bytes:
    """Rounded and clipped, without dither (soxr's own int16 output adds some: silence in
    would not be silence out)."""
    return bytes(np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes())


def resample(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """A whole clip at once (a file, a prompt): the stream's output and its tail."""
    stream = Resampler(src_rate, dst_rate)
    return stream.process(pcm) + stream.flush()
