"""Turn-taking on the corpus (bench/turn_corpus.py), engine in-process, one clip at a time.

Each clip is fed to a fresh embedded-engine session at a phone line's pace (20 ms frames, real
time: the ASR and the turn detector run as they do on a call), then silence until the agent
has answered or 3 s have passed. Per clip, from the session's own events on its stream clock:

- a clip where the caller pauses mid-turn (hesitations, digits read in groups; expect "wait"):
  a **pause take-over** when the agent's first audio starts before the caller's last part;
- every clip: whether the agent took the turn after the caller's last words, and how long
  after (its first audio minus the end of the last spoken part: endpointing + reply, no phone);
- closers (expect "goodbye"): whether the agent said goodbye and asked to hang up;
  topic switches (expect "invite"): whether it invited the question.

Report on the held-out half only (`--split held_out`, the default): its voices were never
tuned on. Back-channels and barge-ins need the agent talking first; they are not run here.

    python bench/turn_corpus.py --out var/turn-corpus
    python bench/turn_eval.py --corpus var/turn-corpus [--split held_out] [--limit N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import wave
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.app import Knowledge
from agent.hub import ModelHub
from bench.machine import describe
from tests.engine_harness import Harness, silence

SKIPPED = {"backchannel", "barge_in"}  # need the agent talking first


def _read(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").copy()


async def one(
    hub: ModelHub, knowledge: Knowledge, clip: dict[str, Any], root: Path
) -> dict[str, Any]:
    h = Harness(hub, knowledge)
    await h.open(greet=False)
    try:
        await h.feed(_read(root / clip["path"]))
        for _ in range(150):  # up to 3 s of silence for the answer
            if h.first("response.output_audio_transcript.done") is not None:
                break
            await h.feed(silence(20))
    finally:
        await h.close()
    speech = [p for p in clip["parts"] if p["kind"] == "speech"]
    last_start, last_end = speech[-1]["start_ms"], speech[-1]["end_ms"]
    first_audio = h.first("response.output_audio.delta")
    said = h.first("response.output_audio_transcript.done")
    heard = [
        e.fields.get("transcript", "")
        for e in h.all("conversation.item.input_audio_transcription.completed")
    ]
    result: dict[str, Any] = {
        "id": clip["id"],
        "scenario": clip["scenario"],
        "expect": clip["expect"],
        "heard": " | ".join(heard),
        "reply": said.fields.get("transcript", "") if said else "",
        "first_audio_ms": first_audio.t_ms if first_audio else None,
        "hangup": h.first("parley.hangup_requested") is not None,
    }
    start = result["first_audio_ms"]
    result["pause_takeover"] = start is not None and len(speech) > 1 and start < last_start
    # Answered before the caller's words were over (a pause inside a sentence, "Okay, thank
    # you." before "Goodbye"): the caller's last words then land as a barge-in.
    result["cut_in"] = start is not None and start < last_end
    result["turn_taken"] = start is not None and start >= last_end
    result["latency_ms"] = start - last_end if result["turn_taken"] else None
    return result


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def report(results: list[dict[str, Any]]) -> None:
    waits = [r for r in results if r["expect"] == "wait"]
    taken = [r for r in results if r["turn_taken"]]
    print(f"\n{len(results)} clips")
    if waits:
        overs = [r for r in waits if r["pause_takeover"]]
        print(f"pause take-over: {len(overs)}/{len(waits)} ({100 * len(overs) / len(waits):.0f} %)")
        by = defaultdict(list)
        for r in overs:
            by[r["scenario"]].append(r["id"])
        for scenario, ids in sorted(by.items()):
            print(f"  {scenario}: {', '.join(ids)}")
    early = [r for r in results if r["cut_in"]]
    print(f"answered before the caller's words were over: {len(early)}/{len(results)} "
          f"({100 * len(early) / len(results):.0f} %)")  # fmt: skip
    print(f"turn taken after the last words: {len(taken)}/{len(results)} "
          f"({100 * len(taken) / len(results):.0f} %)")  # fmt: skip
    latencies = [float(r["latency_ms"]) for r in taken]
    if latencies:
        print(f"  last words → agent's first audio: p50 {statistics.median(latencies):.0f} ms, "
              f"p95 {_percentile(latencies, 95):.0f} ms")  # fmt: skip
    for expect, check in (
        ("goodbye", lambda r: r["hangup"]),
        ("invite", lambda r: "go ahead" in r["reply"].lower()),
    ):
        mine = [r for r in results if r["expect"] == expect]
        if mine:
            good = [r for r in mine if check(r)]
            print(f"{expect}: {len(good)}/{len(mine)}")
            for r in mine:
                if not check(r):
                    print(f"  {r['id']}: heard {r['heard']!r} → {r['reply'][:70]!r}")


async def main_async(args: argparse.Namespace) -> int:
    manifest = json.loads((args.corpus / "manifest.json").read_text())
    clips = [
        c
        for c in manifest["clips"]
        if c["split"] == args.split and c["scenario"] not in SKIPPED
        and (not args.scenario or c["scenario"] in args.scenario)
    ]  # fmt: skip
    if args.limit:
        clips = clips[: args.limit]
    print(describe())
    print(f"{len(clips)} clips of the {args.split} half, in real time…", flush=True)
    hub = ModelHub.load()
    knowledge = Knowledge({})
    results = []
    try:
        for n, clip in enumerate(clips, 1):
            result = await one(hub, knowledge, clip, args.corpus)
            results.append(result)
            mark = (
                "PAUSE TAKE-OVER"
                if result["pause_takeover"]
                else "cut in"
                if result["cut_in"]
                else (f"{result['latency_ms']} ms" if result["turn_taken"] else "no turn")
            )
            print(f"[{n}/{len(clips)}] {clip['id']}: {mark}; heard {result['heard']!r} → "
                  f"{result['reply'][:60]!r}", flush=True)  # fmt: skip
    finally:
        hub.close()
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("var/turn-corpus"))
    parser.add_argument("--split", choices=("tune", "held_out"), default="held_out")
    parser.add_argument("--scenario", action="append", help="only these scenarios (repeatable)")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write every clip's result here")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
