"""Cost of the embedded engine's models on this CPU. Prints numbers; asserts nothing.

  1. load times of the three models
  2. VAD: one stream per call vs one batched call per tick, at 1/8/32/64 streams, and a
     tick whose batch size changes every time (streams joining and leaving)
  3. ASR: 1/3/6 s utterances, the padding trick (WhisperAsr.transcribe) vs faster-whisper's
     plain transcribe (30 s window), with 1 and 2 CTranslate2 threads; then batching
  4. TTS: first-chunk latency and real-time factor of a two-sentence reply, 1 and 2 threads

Caller speech is made with espeak-ng/flite (installed system tools). Run from the repo root:
  python bench/models.py [--reps 7]
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from agent.asr import WhisperAsr
from agent.audio import Int16Array, read_wav_16k, to_float32
from agent.session import SAMPLE_RATE
from agent.tts import PiperTts
from agent.vad import WINDOW_SAMPLES, BatchedVad

UTTERANCES = {
    1: "Yes, please.",
    3: "What are your store hours on Saturday, please?",
    6: "I ordered a blue sweater two weeks ago and it still has not arrived, "
    "can you tell me where it is?",
}
T = TypeVar("T")

REPLY = "Sure, we are open from nine to five on Saturday. Is there anything else I can help with?"


def median_ms(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def speak(text: str, folder: Path) -> Int16Array:
    wav = folder / "u.wav"
    subprocess.run(["espeak-ng", "-s", "140", "-w", str(wav), text], check=True)
    return read_wav_16k(wav)


def timed_load(make: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    obj = make()
    return obj, time.perf_counter() - start


def bench_vad(vad: BatchedVad, reps: int) -> None:
    print(f"\n## VAD (Silero, torch threads={vad.threads}, re-asserted each tick)")
    rng = np.random.default_rng(0)
    ticks = 200 * max(1, reps // 7)

    def windows(n: int) -> list[Int16Array]:
        return [(rng.standard_normal(WINDOW_SAMPLES) * 2000).astype(np.int16) for _ in range(n)]

    print(f"{'streams':>8} {'one call per stream':>22} {'one batched call':>18} {'per stream':>11}")
    for n in (1, 8, 32, 64):
        sids = [vad.open_stream() for _ in range(n)]
        data = windows(n)
        for _ in range(10):
            vad.process(dict(zip(sids, data, strict=True)))

        start = time.perf_counter()
        for _ in range(ticks):
            for sid, w in zip(sids, data, strict=True):
                vad.process({sid: w})
        t_alone = (time.perf_counter() - start) / ticks * 1000
        start = time.perf_counter()
        for _ in range(ticks):
            vad.process(dict(zip(sids, data, strict=True)))
        t_batch = (time.perf_counter() - start) / ticks * 1000
        print(f"{n:>8} {t_alone:>19.3f} ms {t_batch:>15.3f} ms {t_batch / n * 1000:>8.1f} µs")
        for sid in sids:
            vad.close_stream(sid)

    # Calls come and go: the batch size differs from one tick to the next.
    sids = [vad.open_stream() for _ in range(64)]
    data = windows(64)
    sizes = rng.integers(20, 65, size=ticks)
    start = time.perf_counter()
    for size in sizes:
        vad.process(dict(zip(sids[:size], data[:size], strict=True)))
    per_tick = (time.perf_counter() - start) / ticks * 1000
    print(f"varying batch 20-64 streams: {per_tick:.3f} ms per tick (mean {sizes.mean():.0f})")
    for sid in sids:
        vad.close_stream(sid)


def transcribe_each(asr: WhisperAsr, pcms: list[Int16Array]) -> None:
    for pcm in pcms:
        asr.transcribe(pcm)


def bench_asr(folder: Path, reps: int) -> None:
    speech = {secs: speak(text, folder) for secs, text in UTTERANCES.items()}
    print("\n## ASR (Whisper tiny.en int8, greedy)")
    print(
        f"{'threads':>7} {'utterance':>10} {'padded generate':>16} {'plain transcribe':>17}  text"
    )
    for threads in (1, 2):
        asr, load_s = timed_load(functools.partial(WhisperAsr, threads=threads))
        for pcm in speech.values():
            seconds = len(pcm) / SAMPLE_RATE
            trick = median_ms(functools.partial(asr.transcribe, pcm), reps)

            def plain(p: Int16Array = pcm, a: WhisperAsr = asr) -> str:
                segments, _ = a.whisper.transcribe(
                    to_float32(p),
                    language="en",
                    beam_size=1,
                    without_timestamps=True,
                    condition_on_previous_text=False,
                    vad_filter=False,
                )
                return " ".join(s.text.strip() for s in segments)

            plain_ms = median_ms(plain, max(3, reps // 2))
            ours, theirs = asr.transcribe(pcm).text, plain().strip()
            same = "same text" if ours == theirs else f"{ours!r} vs {theirs!r}"
            print(f"{threads:>7} {seconds:>8.1f} s {trick:>13.0f} ms {plain_ms:>14.0f} ms  {same}")
        print(f"        (load {load_s:.2f} s)")
    asr = WhisperAsr(threads=2)
    print("batching (2 threads): n utterances in one generate vs n transcribe calls")
    for group in ([1, 3, 6], [3, 3], [3, 3, 3], [3] * 6, [1, 1, 1, 1]):
        pcms = [speech[s] for s in group]
        seq = median_ms(functools.partial(transcribe_each, asr, pcms), reps)
        bat = median_ms(functools.partial(asr.transcribe_batch, pcms), reps)
        label = "+".join(f"{s}s" for s in group)
        print(f"  {label:>14}: sequential {seq:6.0f} ms, batch {bat:6.0f} ms")


def bench_tts(reps: int) -> None:
    print("\n## TTS (Piper en_US-joe-medium → 16 kHz)")
    for threads in (1, 2):
        tts, load_s = timed_load(functools.partial(PiperTts, threads=threads))
        firsts: list[float] = []
        totals: list[float] = []
        audio = 0.0
        for _ in range(reps):
            start = time.perf_counter()
            chunks: list[Int16Array] = []
            for chunk in tts.stream(REPLY):
                if not chunks:
                    firsts.append(time.perf_counter() - start)
                chunks.append(chunk)
            totals.append(time.perf_counter() - start)
            audio = sum(len(c) for c in chunks) / SAMPLE_RATE
        total = statistics.median(totals)
        print(
            f"threads {threads}: first chunk {statistics.median(firsts) * 1000:.0f} ms, "
            f"all {total * 1000:.0f} ms for {audio:.2f} s of audio "
            f"(RTF {total / audio:.3f}), load {load_s:.2f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print(f"# Parley model bench: {cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    vad, vad_s = timed_load(lambda: BatchedVad(threads=1))
    _, asr_s = timed_load(lambda: WhisperAsr(threads=2))
    _, tts_s = timed_load(PiperTts)
    print(
        f"load (in process, imports done): vad {vad_s:.2f} s, asr {asr_s:.2f} s, tts {tts_s:.2f} s"
    )
    bench_vad(vad, args.reps)
    with tempfile.TemporaryDirectory() as tmp:
        bench_asr(Path(tmp), args.reps)
    bench_tts(args.reps)


if __name__ == "__main__":
    main()
