"""Turn-taking on the corpus (bench/turn_corpus.py), engine in-process, one clip at a time.

Each clip is fed to a fresh embedded-engine session at a phone line's pace (20 ms frames, real
time: the ASR and the turn detector run as they do on a call), then silence until the agent
has answered or 3 s have passed. Per clip, from the session's own events on its stream clock:

- a clip where the caller pauses mid-turn (hesitations, digits read in groups; expect "wait"):
  a **pause take-over** when the agent's first audio starts before the caller's last part;
- every clip: whether the agent took the turn after the caller's last words, and how long
  after (its first audio minus the end of the last spoken part: endpointing + reply, no phone);
- closers (expect "goodbye"): whether the agent said goodbye and asked to hang up;
  topic switches (expect "invite"): whether it invited the question;
- back-channels and barge-ins are played over the agent's greeting, 1.1 s into it: a
  back-channel **take-over** when the agent stopped for it (the floor went to the caller),
  and the agent's longest silence after it (0 when it talked through); a barge-in's **stop
  latency** from the first sound of the caller's voice to the agent's stop (the engine's
  `input_audio_buffer.speech_started`, when the client clears its playout).

Report on the held-out half only (`--split held_out`, the default): its voices were never
tuned on.

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

OVERLAPS = {"backchannel", "barge_in"}  # played over the agent's greeting


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


def _voice_onset_ms(audio: np.ndarray, start_ms: int, end_ms: int) -> int:
    """The first 10 ms block of a spoken part at least a tenth of the part's louder half."""
    part = audio[start_ms * 16 : end_ms * 16].astype(np.float32)
    blocks = part[: len(part) // 160 * 160].reshape(-1, 160)
    rms = np.sqrt(np.mean(blocks * blocks, axis=1))
    loud = np.flatnonzero(rms >= 0.1 * float(np.median(rms[rms >= np.percentile(rms, 50)])))
    return start_ms + (int(loud[0]) * 10 if loud.size else 0)


async def over_the_agent(
    hub: ModelHub, knowledge: Knowledge, clip: dict[str, Any], root: Path
) -> dict[str, Any]:
    """A back-channel or a barge-in played over the agent's greeting."""
    h = Harness(hub, knowledge)
    await h.open(greet=True)
    audio = _read(root / clip["path"])
    try:
        await h.feed_until("response.output_audio.delta")
        await h.feed(silence(600))
        fed_at = h.fed_ms
        await h.feed(audio)
        await h.feed(silence(1000))
    finally:
        await h.close()
    speech = [p for p in clip["parts"] if p["kind"] == "speech"]
    onset = fed_at + _voice_onset_ms(audio, speech[0]["start_ms"], speech[0]["end_ms"])
    stop = h.first("input_audio_buffer.speech_started", after_ms=fed_at)
    ignored = h.first("parley.backchannel_ignored", after_ms=fed_at)
    result: dict[str, Any] = {
        "id": clip["id"],
        "scenario": clip["scenario"],
        "expect": clip["expect"],
        "heard": str(ignored.fields.get("text", "")) if ignored else "",
        "stopped": stop is not None,
        "stop_latency_ms": stop.t_ms - onset if stop else None,
    }
    if stop is not None:
        # How long the caller then heard nothing from the agent: until its next reply, or
        # to the end of the clip and the second after it.
        after = [e for e in h.all("response.output_audio.delta") if e.t_ms > stop.t_ms]
        result["silence_ms"] = (after[0].t_ms if after else h.fed_ms) - stop.t_ms
        barge = h.first("parley.barge_in", after_ms=fed_at)
        result["heard"] = (
            f"{barge.fields.get('reason', '')}: {barge.fields.get('text', '')!r}" if barge else ""
        )
    else:
        result["silence_ms"] = 0
    return result


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def report(results: list[dict[str, Any]]) -> None:
    overlaps = [r for r in results if r["scenario"] in OVERLAPS]
    results = [r for r in results if r["scenario"] not in OVERLAPS]
    backchannels = [r for r in overlaps if r["scenario"] == "backchannel"]
    if backchannels:
        stopped = [r for r in backchannels if r["stopped"]]
        longest = max(r["silence_ms"] for r in backchannels)
        print(f"\nback-channel take-over: {len(stopped)}/{len(backchannels)} "
              f"({100 * len(stopped) / len(backchannels):.0f} %); longest agent silence after "
              f"a back-channel: {longest} ms")  # fmt: skip
        for r in stopped:
            print(f"  {r['id']}: stopped ({r['heard']}), silent {r['silence_ms']} ms")
    barges = [r for r in overlaps if r["scenario"] == "barge_in"]
    if barges:
        stops = [float(r["stop_latency_ms"]) for r in barges if r["stopped"]]
        print(f"barge-in stopped the agent: {len(stops)}/{len(barges)}", end="")
        if stops:
            print(f"; stop latency p50 {statistics.median(stops):.0f} ms, "
                  f"p95 {_percentile(stops, 95):.0f} ms, max {max(stops):.0f} ms")  # fmt: skip
        else:
            print()
    if not results:
        return
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
        if c["split"] == args.split
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
            if clip["scenario"] in OVERLAPS:
                result = await over_the_agent(hub, knowledge, clip, args.corpus)
                results.append(result)
                mark = (
                    f"stopped after {result['stop_latency_ms']} ms ({result['heard']})"
                    if result["stopped"]
                    else f"talked through ({result['heard']!r})"
                )
                print(f"[{n}/{len(clips)}] {clip['id']}: {mark}", flush=True)
                continue
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


def corpus_arguments(description: str) -> argparse.ArgumentParser:
    """The options every turn-corpus bench takes (this one and bench/turn_sip.py)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--corpus", type=Path, default=Path("var/turn-corpus"))
    parser.add_argument("--split", choices=("tune", "held_out"), default="held_out")
    parser.add_argument("--scenario", action="append", help="only these scenarios (repeatable)")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write every clip's result here")
    return parser


def main() -> int:
    parser = corpus_arguments(__doc__.splitlines()[0])
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
