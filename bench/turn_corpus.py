"""The turn-taking evaluation corpus: caller clips in many synthetic voices, split by voice.

Each clip is one scenario (a hesitation, a back-channel, a barge-in, a closer, a topic switch,
digits read in groups, a plain question) spoken by one voice: an espeak-ng voice and variant at
its own rate and pitch, or a flite voice, some with background noise, some through G.711
μ-law. The manifest records, per clip, where each spoken part and each pause lies (ms), so a
benchmark knows where the caller paused and where they were done.

The split is by voice (`Voice.split`): a voice is in the tuning half or the held-out half,
never both (each half has both engines, men's and women's voices, noise and G.711), so a
figure reported on the held-out half comes from voices nothing was tuned on. (A separate set in
voices this machine does not have is the release's own check.)

    python bench/turn_corpus.py --out var/turn-corpus      # writes clips/*.wav + manifest.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

RATE = 16000

# (kind, parts): a part is words to say, or a pause in ms. `expect` says what a good agent does.
SCENARIOS: list[tuple[str, str, list[str | int]]] = [
    ("hesitation", "wait", ["I'd like to check on my order, um", 1300,
                            "the number is four five six seven"]),
    ("hesitation", "wait", ["Can you tell me, uh", 1500, "how long shipping takes?"]),
    ("hesitation", "wait", ["I want to, hmm", 1500, "return a jacket I bought."]),
    ("hesitation", "wait", ["My question is, er", 1500, "do you ship to Canada?"]),
    ("hesitation", "wait", ["Let me see", 1500, "I need to change my address."]),
    ("hesitation", "wait", ["I ordered a pair of boots and", 1500,
                            "they arrived in the wrong size."]),
    ("hesitation", "wait", ["So I was wondering", 1200, "what your store hours are."]),
    ("backchannel", "keep_talking", ["uh huh"]),
    ("backchannel", "keep_talking", ["mm hmm"]),
    ("backchannel", "keep_talking", ["yeah"]),
    ("backchannel", "keep_talking", ["okay"]),
    ("backchannel", "keep_talking", ["right"]),
    ("backchannel", "keep_talking", ["I see"]),
    ("backchannel", "keep_talking", ["yeah yeah"]),
    ("barge_in", "stop", ["Wait, stop, that's not what I asked."]),
    ("barge_in", "stop", ["No no, I need to talk about a refund."]),
    ("closer", "goodbye", ["Okay, thank you. Goodbye."]),
    ("closer", "goodbye", ["That's all I needed, thanks, bye."]),
    ("topic_switch", "invite", ["Sorry, wait, I have a different question."]),
    ("topic_switch", "invite", ["Actually, can I ask about something else?"]),
    ("digits", "wait", ["My card number is four one one one", 900, "one one one one", 900,
                        "two two two two", 900, "three three three three"]),
    ("digits", "wait", ["The order number is one two three", 1000, "four five"]),
    ("question", "answer", ["How do I return an item that I bought online?"]),
    ("question", "answer", ["What are your store hours?"]),
]  # fmt: skip


@dataclass(frozen=True)
class Voice:
    """How a clip is spoken. engine: espeak-ng (voice+variant, rate wpm, pitch 0-99) or flite."""

    name: str
    engine: str
    voice: str
    rate: int = 160
    pitch: int = 50
    noise_snr_db: float | None = None  # background noise at this signal-to-noise ratio
    g711: bool = False  # through μ-law and back, as a PSTN caller is heard
    split: str = "tune"  # tune | held_out (never tuned on)


# Each half has both engines, men's and women's voices, noise and G.711.
VOICES = [
    Voice("espeak-us-m3", "espeak-ng", "en-us+m3", 150, 45, split="tune"),
    Voice("espeak-scot-f4", "espeak-ng", "en-gb-scotland+f4", 175, 65, 15, split="tune"),
    Voice("espeak-nyc-m7", "espeak-ng", "en-us-nyc+m7", 185, 35, g711=True, split="tune"),
    Voice("espeak-lanc-f5", "espeak-ng", "en-gb-x-gbclan+f5", 130, 55, 20, split="tune"),
    Voice("flite-slt", "flite", "slt", g711=True, split="tune"),
    Voice("flite-awb", "flite", "awb", split="tune"),
    Voice("espeak-us-f2", "espeak-ng", "en-us+f2", 165, 60, g711=True, split="held_out"),
    Voice("espeak-gb-rp-m1", "espeak-ng", "en-gb-x-rp+m1", 140, 40, split="held_out"),
    Voice("espeak-carib-f3", "espeak-ng", "en-029+f3", 150, 55, 18, split="held_out"),
    Voice(
        "espeak-wmids-m5", "espeak-ng", "en-gb-x-gbcwmd+m5", 160, 50, g711=True, split="held_out"
    ),
    Voice("flite-rms", "flite", "rms", noise_snr_db=18, split="held_out"),
    Voice("flite-kal16", "flite", "kal16", g711=True, split="held_out"),
]


@dataclass
class Part:
    kind: str  # speech | pause
    start_ms: int
    end_ms: int
    text: str = ""


@dataclass
class Clip:
    id: str
    scenario: str
    expect: str
    voice: str
    split: str
    path: str
    text: str
    parts: list[Part] = field(default_factory=list)


def synthesize(text: str, voice: Voice, work: Path) -> np.ndarray:
    """`text` in `voice` as 16 kHz float samples (-32768..32767), leading and trailing
    silence trimmed (a caller's words run on)."""
    raw = work / "raw.wav"
    if voice.engine == "espeak-ng":
        argv = ["espeak-ng", "-v", voice.voice, "-s", str(voice.rate), "-p", str(voice.pitch),
                "-w", str(raw), text]  # fmt: skip
    else:
        argv = ["flite", "-voice", voice.voice, "-t", text, "-o", str(raw)]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    out = work / "16k.wav"
    subprocess.run(
        ["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(out)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    with wave.open(str(out), "rb") as wav:
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64)
    loud = np.flatnonzero(np.abs(samples) > 200)
    if len(loud) == 0:
        return samples
    return samples[loud[0] : loud[-1] + 1]


def _write(path: Path, samples: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(np.round(np.clip(samples, -32768, 32767)).astype("<i2").tobytes())
    return path


def through_g711(samples: np.ndarray, work: Path) -> np.ndarray:
    """As a PSTN caller is heard: down to 8 kHz μ-law (sox's codec and filters) and back."""
    ulaw, back = work / "ulaw.wav", work / "back.wav"
    subprocess.run(
        ["sox", str(_write(work / "clean.wav", samples)), "-r", "8000", "-e", "u-law", str(ulaw)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    subprocess.run(
        ["sox", str(ulaw), "-r", str(RATE), "-e", "signed-integer", "-b", "16", str(back)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    with wave.open(str(back), "rb") as wav:
        heard = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64)
    return heard[: len(samples)]


def degrade(samples: np.ndarray, voice: Voice, seed: int, work: Path) -> np.ndarray:
    out = samples
    if voice.noise_snr_db is not None:
        rng = np.random.default_rng(seed)
        noise = np.cumsum(rng.standard_normal(len(out)))  # brown: a room's rumble and hiss
        noise -= np.convolve(noise, np.ones(400) / 400, mode="same")
        speech = out[np.abs(out) > 200]
        power = float(np.mean(speech**2)) if len(speech) else 1.0
        noise *= np.sqrt(power / (10 ** (voice.noise_snr_db / 10)) / (np.mean(noise**2) or 1.0))
        out = out + noise
    if voice.g711:
        out = through_g711(out, work)
    clipped: np.ndarray = np.clip(out, -32768, 32767)
    return clipped


def build(out: Path, voices: list[Voice] | None = None, lead_ms: int = 500) -> list[Clip]:
    """Writes every scenario in every voice under `out`/clips and `out`/manifest.json."""
    clips_dir = out / "clips"
    clips_dir.mkdir(parents=True, exist_ok=True)
    clips: list[Clip] = []
    with tempfile.TemporaryDirectory(prefix="parley-corpus-") as name:
        work = Path(name)
        for voice in voices or VOICES:
            for number, (scenario, expect, parts) in enumerate(SCENARIOS):
                clip_id = f"{scenario}-{number:02d}-{voice.name}"
                pieces: list[np.ndarray] = [np.zeros(lead_ms * RATE // 1000)]
                at_ms = lead_ms
                laid: list[Part] = []
                for part in parts:
                    if isinstance(part, int):
                        piece = np.zeros(part * RATE // 1000)
                        laid.append(Part("pause", at_ms, at_ms + part))
                    else:
                        piece = synthesize(part, voice, work)
                        length = len(piece) * 1000 // RATE
                        laid.append(Part("speech", at_ms, at_ms + length, part))
                    pieces.append(piece)
                    at_ms += len(piece) * 1000 // RATE
                pieces.append(np.zeros(lead_ms * RATE // 1000))
                audio = degrade(np.concatenate(pieces), voice, seed=number, work=work)
                path = _write(clips_dir / f"{clip_id}.wav", audio)
                text = " ".join(p for p in parts if isinstance(p, str))
                clips.append(
                    Clip(clip_id, scenario, expect, voice.name, voice.split,
                         str(path.relative_to(out)), text, laid)
                )  # fmt: skip
    manifest = {
        "voices": [asdict(v) for v in voices or VOICES],
        "clips": [asdict(c) for c in clips],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return clips


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("var/turn-corpus"))
    args = parser.parse_args()
    clips = build(args.out)
    for split in ("tune", "held_out"):
        mine = [c for c in clips if c.split == split]
        voices = sorted({c.voice for c in mine})
        print(f"{split}: {len(mine)} clips in {len(voices)} voices ({', '.join(voices)})")
    print(f"written to {args.out}/clips, manifest {args.out}/manifest.json")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())
