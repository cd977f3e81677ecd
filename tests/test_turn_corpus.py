"""The turn-taking corpus (bench/turn_corpus.py): every scenario in every voice, split by
voice, with each spoken part and pause where the manifest says."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np

from bench.turn_corpus import SCENARIOS, VOICES, Part, Voice, build


def test_the_halves_share_no_voice_and_each_has_every_kind_of_caller() -> None:
    halves = {split: [v for v in VOICES if v.split == split] for split in ("tune", "held_out")}
    assert not {v.name for v in halves["tune"]} & {v.name for v in halves["held_out"]}
    for voices in halves.values():
        assert {v.engine for v in voices} == {"espeak-ng", "flite"}
        assert any(v.g711 for v in voices) and any(v.noise_snr_db for v in voices)
    assert len(VOICES) * len(SCENARIOS) >= 2 * 60  # at least 60 clips reported on
    kinds = {kind for kind, _, _ in SCENARIOS}
    assert kinds >= {"hesitation", "backchannel", "barge_in", "closer", "topic_switch", "digits"}


def test_clips_are_where_the_manifest_says(tmp_path: Path) -> None:
    voices = [
        Voice("t-espeak", "espeak-ng", "en-us+f2", 170, 60, 15, split="tune"),
        Voice("h-flite", "flite", "slt", g711=True, split="held_out"),
    ]
    clips = build(tmp_path, voices)
    assert len(clips) == 2 * len(SCENARIOS)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert {c["split"] for c in manifest["clips"] if c["voice"] == "h-flite"} == {"held_out"}
    hesitation = next(c for c in clips if c.scenario == "hesitation" and c.voice == "h-flite")
    with wave.open(str(tmp_path / hesitation.path), "rb") as wav:
        assert wav.getframerate() == 16000
        audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(float)
    [first, pause, second] = hesitation.parts
    assert (first.kind, pause.kind, second.kind) == ("speech", "pause", "speech")
    assert pause.end_ms - pause.start_ms == 1300 and second.end_ms * 16 <= len(audio)

    def level(part: Part) -> float:
        start, end = part.start_ms * 16, part.end_ms * 16
        return float(np.sqrt(np.mean(audio[start:end] ** 2)))

    assert level(first) > 10 * level(pause) and level(second) > 10 * level(pause)
