"""Word error rate of the engine's ASR on the turn corpus (bench/turn_corpus.py).

Every spoken part of every clip in one half of the corpus is cut out (with 100 ms either
side) and transcribed by Whisper tiny.en as the engine runs it (agent/asr.py), in four ways:
with and without the filler prompt, and as the clip is (wide-band 16 kHz, or μ-law where the
voice is a G.711 caller) or forced through narrow-band G.711 (8 kHz μ-law and back, with the
same sox codec the corpus uses) the way any PSTN caller is heard. WER counts substitutions,
deletions and insertions of words against the text the voice was given; fillers ("um",
"uh", "hmm", "er") are left out of both sides and digits are compared as digit words ("4111"
= "four one one one"). The time column is the decode alone.

    python bench/asr_wer.py --corpus var/turn-corpus [--split held_out]
        [--compare NAME=DIR ...]   # another CTranslate2 Whisper model directory, e.g. base

`--compare` adds rows for another model directory (with the filler prompt), to choose a model
by accuracy and latency together.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.asr import WhisperAsr
from agent.turns import is_filled_pause
from bench.machine import describe
from bench.turn_corpus import through_g711

_DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def words(text: str) -> list[str]:
    spelled = re.sub(r"\d", lambda m: f" {_DIGITS[int(m.group())]} ", text.lower())
    return [w for w in re.findall(r"[a-z']+", spelled) if not is_filled_pause(w)]


def edits(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        diagonal, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (r != h))
    return row[-1]


def narrow_band(pcm: np.ndarray) -> np.ndarray:
    """8 kHz μ-law and back to 16 kHz, with the corpus's own G.711 (sox): what a PSTN call
    carries."""
    with tempfile.TemporaryDirectory(prefix="parley-wer-") as work:
        heard = through_g711(pcm.astype(np.float64), Path(work))
    out: np.ndarray = np.clip(np.round(heard), -32768, 32767).astype(np.int16)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("var/turn-corpus"))
    parser.add_argument("--split", choices=("tune", "held_out"), default="held_out")
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=DIR")
    args = parser.parse_args()
    manifest = json.loads((args.corpus / "manifest.json").read_text())
    parts: list[tuple[str, np.ndarray]] = []
    for clip in manifest["clips"]:
        if clip["split"] != args.split:
            continue
        with wave.open(str(args.corpus / clip["path"]), "rb") as wav:
            audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        for part in clip["parts"]:
            if part["kind"] == "speech":
                lo, hi = max(0, (part["start_ms"] - 100) * 16), (part["end_ms"] + 100) * 16
                parts.append((part["text"], audio[lo:hi].copy()))
    print(describe())
    print(f"{len(parts)} spoken parts of the {args.split} half", flush=True)
    models = {
        "tiny.en, filler prompt": WhisperAsr(threads=2),
        "tiny.en, no prompt": WhisperAsr(threads=2, prompt=None),
    }
    for spec in args.compare:
        name, _, directory = spec.partition("=")
        models[f"{name}, filler prompt"] = WhisperAsr(Path(directory), threads=2)
    reference = sum(len(words(text)) for text, _ in parts)
    print(f"{reference} reference words\n")
    print("| model | audio | WER | median ms per part |")
    print("|---|---|---|---|")
    for name, asr in models.items():
        for band, shape in (("as recorded", lambda a: a), ("forced through G.711", narrow_band)):
            errors, times = 0, []
            for text, audio in parts:
                pcm = shape(audio)
                started = time.perf_counter()
                heard = asr.transcribe(pcm).text
                times.append((time.perf_counter() - started) * 1000)
                errors += edits(words(text), words(heard))
            wer = errors / max(1, reference)
            print(f"| {name} | {band} | {wer:.3f} | {statistics.median(times):.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
