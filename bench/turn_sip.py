"""Turn-taking on the turn corpus over real SIP calls: every clip is a phone call.

    .venv/bin/python bench/turn_sip.py [--corpus var/turn-corpus] [--split held_out]
                                       [--lanes 2] [--json FILE]

`bench/turn_eval.py` feeds the corpus to the engine in process; this places a call per clip
through the whole phone path (softphone `parley dial`, G.722 → `parley worker` → the engine
server over its WebSocket) and measures what the caller hears, from the recording, with the
same timing method as `bench/voice_latency.py`. `--lanes` calls run at a time, each lane on
its own worker and in sequence (2 by default: a light load, and half the wall time).

- Turn clips (hesitations, questions, numbers, closers, topic switches) start once the
  greeting is over (`--greeting-s`); the agent's first audio after the clip's first words
  is the reply: before the last spoken part began it is a pause take-over, before the last
  words ended a cut-in, after them a turn taken, with the mouth-to-ear latency from the
  caller's last voiced frame. Closers count when the agent hangs up; topic switches when its
  reply invites the question ("go ahead").
- Back-channel and barge-in clips are played over the greeting, from `--overlap-at-s` into
  the call: a stop is the first 400 ms of agent silence after the clip's onset (within 1.5 s
  for a barge-in, before 1 s after its end for a back-channel), and the longest agent silence
  from the onset to 1 s after the clip's end is the back-channel's gap.

The report is `bench/turn_eval.py`'s, so the two read side by side. Numbers only.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import describe
from bench.turn_eval import OVERLAPS, corpus_arguments, report
from bench.voice_latency import (
    FRAME,
    RATE,
    _first_silence,
    _longest_silence,
    _voiced_frames,
    finish_dials,
    read_wav,
    start_dial,
    start_engine,
    start_workers,
)

STOP_FRAMES = 20  # 400 ms of agent silence is a stop
TAIL_S = 4.0  # silence after a turn clip, for the reply
OVERLAP_TAIL_S = 2.0


@dataclass
class Placed:
    """One clip as a call: what was played, where its parts lie in it (in 20 ms frames)."""

    clip: dict[str, Any]
    lead_s: float
    play: Path
    parts: list[tuple[int, int]]  # first and last voiced frame of each spoken part
    started_ns: int = 0
    ended_ns: int = 0


def _clip_audio(root: Path, clip: dict[str, Any]) -> np.ndarray:
    with wave.open(str(root / clip["path"]), "rb") as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64)


def place(clip: dict[str, Any], root: Path, work: Path, args: argparse.Namespace) -> Placed:
    overlap = clip["scenario"] in OVERLAPS
    lead_s = args.overlap_at_s if overlap else args.greeting_s
    tail_s = OVERLAP_TAIL_S if overlap else TAIL_S
    audio = _clip_audio(root, clip)
    pcm = np.concatenate([np.zeros(round(lead_s * RATE)), audio, np.zeros(round(tail_s * RATE))])
    play = work / f"{clip['id']}.wav"
    with wave.open(str(play), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(np.clip(pcm, -32768, 32767).astype("<i2").tobytes())
    voiced = _voiced_frames(pcm)
    parts = []
    lead = round(lead_s * 1000) // 20
    for part in clip["parts"]:
        if part["kind"] != "speech":
            continue
        lo, hi = lead + part["start_ms"] // 20, lead + part["end_ms"] // 20 + 1
        hits = np.flatnonzero(voiced[lo:hi])
        if len(hits):
            parts.append((lo + int(hits[0]), lo + int(hits[-1])))
    return Placed(clip, lead_s, play, parts)


def _call_events(events: list[dict[str, Any]], placed: Placed) -> list[dict[str, Any]]:
    """The events of the one call the lane's worker answered while this clip was dialled."""
    answered = [
        e
        for e in events
        if e["kind"] == "call.answered" and placed.started_ns <= e["t_mono_ns"] <= placed.ended_ns
    ]
    if not answered:
        return []
    call_id = answered[0]["call_id"]
    return [e for e in events if e["call_id"] == call_id]


def analyse(placed: Placed, result: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    clip = placed.clip
    out: dict[str, Any] = {"id": clip["id"], "scenario": clip["scenario"], "expect": clip["expect"]}
    answered = bool(result.get("answered")) and "recording" in result and bool(placed.parts)
    times = np.asarray(result.get("frame_times_ns", []), dtype=np.int64)
    heard = read_wav(Path(result["recording"])) if answered else np.zeros(0)
    n = min(len(times), len(heard) // FRAME)
    agent = _voiced_frames(heard[: n * FRAME]) if n else np.zeros(0, bool)

    def t_ms(frame: int) -> float:
        if frame < n:
            return float(times[frame]) / 1e6
        return float(times[-1]) / 1e6 + (frame - n + 1) * 20.0 if n else 0.0

    def said(event: str) -> list[tuple[int, str]]:
        return [
            (int(e["t_mono_ns"]), str(e["data"].get("text", "")))
            for e in events
            if e["kind"] == "call.agent_event" and e["data"].get("event") == event
        ]

    caller = said("caller_transcript")
    caller_said = [text for _, text in caller]
    # The reply: the agent's first words after the caller's first (not the greeting).
    agent_said = [text for t, text in said("agent_transcript") if caller and t >= caller[0][0]]
    out["heard"] = " | ".join(caller_said)
    first, last = (placed.parts[0][0], placed.parts[-1][1]) if placed.parts else (0, 0)
    if clip["scenario"] in OVERLAPS:
        # Agent audio in the 300 ms before the onset: the clip really was over the agent.
        over = answered and first < n and bool(agent[max(0, first - 15) : first + 1].any())
        stop = _first_silence(agent, first, STOP_FRAMES) if over else None
        window = 75 if clip["scenario"] == "barge_in" else last - first + 50
        stopped = stop is not None and stop <= first + window
        out.update(
            answered=answered,
            over_agent=over,
            stopped=stopped,
            stop_latency_ms=round(t_ms(stop) - t_ms(first)) if stopped and stop else None,
            silence_ms=20 * _longest_silence(agent[first : last + 51]) if over else 0,
        )
        return out
    if answered and bool(agent[max(0, first - 15) : first + 1].any()):
        answered = False  # the greeting was still playing: not a trial (see --greeting-s)
    last_start = placed.parts[-1][0]
    hits = np.flatnonzero(agent[first:]) if answered else np.zeros(0, int)
    onset = first + int(hits[0]) if len(hits) else None
    ended = [e for e in events if e["kind"] == "call.ended"]
    out.update(
        answered=answered,
        reply=agent_said[0] if agent_said else "",
        first_audio_ms=None if onset is None else round(t_ms(onset) - t_ms(first)),
        hangup=bool(ended) and ended[0]["data"].get("reason") == "agent:conversation_complete",
        pause_takeover=onset is not None and len(placed.parts) > 1 and onset < last_start,
        cut_in=onset is not None and onset < last,
    )
    out["turn_taken"] = onset is not None and onset >= last
    out["latency_ms"] = (
        round(t_ms(onset) - t_ms(last)) if onset is not None and out["turn_taken"] else None
    )
    return out


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    manifest = json.loads((args.corpus / "manifest.json").read_text())
    clips = [c for c in manifest["clips"] if c["split"] == args.split]
    if args.scenario:
        clips = [c for c in clips if c["scenario"] in args.scenario]
    if args.limit:
        clips = clips[: args.limit]
    print(describe())
    print(f"{len(clips)} clips of the {args.split} half, one SIP call each, "
          f"{args.lanes} at a time…", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="parley-turn-sip-") as folder:
        work = args.keep or Path(folder)
        work.mkdir(parents=True, exist_ok=True)
        engine, url = start_engine(work)
        workers = None
        try:
            workers = start_workers(work, args.lanes, url)
            placed = [place(clip, args.corpus, work, args) for clip in clips]
            queue = list(enumerate(placed))
            done: list[tuple[int, Placed, dict[str, Any]]] = []
            while queue:
                batch, queue = queue[: args.lanes], queue[args.lanes :]
                dials = []
                for lane, (i, p) in enumerate(batch):
                    p.started_ns = time.monotonic_ns()
                    seconds = p.lead_s + len(p.clip["parts"]) + 30
                    out = work / f"dial-{i}.json"
                    dials.append(
                        (
                            lane,
                            i,
                            p,
                            start_dial(workers.uri(lane), p.play, out, count=1, max_s=seconds),
                            out,
                        )
                    )
                for lane, _i, p, proc, out in dials:
                    [result] = finish_dials([(proc, out)], timeout=120) or [{}]
                    p.ended_ns = time.monotonic_ns()
                    done.append((lane, p, result))
                print(f"  … {len(done)}/{len(placed)} calls", file=sys.stderr, flush=True)
            time.sleep(1.0)  # the last events reach the spool
            results = []
            for lane, p, result in done:
                lane_events = _lane_events(work, lane)
                results.append(analyse(p, result, _call_events(lane_events, p)))
        finally:
            if workers is not None:
                workers.stop()
            engine.stop()
    return results


def _lane_events(work: Path, lane: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for path in sorted((work / "var" / "events").glob(f"worker-{lane}.*jsonl")):
        events += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return events


def main() -> int:
    parser = corpus_arguments(__doc__.splitlines()[0])
    parser.add_argument("--lanes", type=int, default=2, help="calls at a time (1-4)")
    parser.add_argument("--greeting-s", type=float, default=7.0)
    parser.add_argument("--overlap-at-s", type=float, default=1.6)
    parser.add_argument("--keep", type=Path, help="work here and keep it (calls, events, logs)")
    args = parser.parse_args()
    if not 1 <= args.lanes <= 4:
        parser.error("--lanes must be 1-4")
    results = run(args)
    unanswered = [r["id"] for r in results if not r["answered"]]
    if unanswered:
        print(f"not answered or not analysable: {', '.join(unanswered)}")
    skipped = [
        r["id"]
        for r in results
        if r["scenario"] in OVERLAPS and r["answered"] and not r["over_agent"]
    ]
    if skipped:
        print(f"overlap clips that did not land on agent audio (left out): {', '.join(skipped)}")
    report([r for r in results if r["answered"] and r.get("over_agent", True)])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
