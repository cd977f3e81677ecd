"""Voice-to-voice latency, barge-in and turn-taking of the embedded engine, over real SIP calls.

    .venv/bin/python bench/voice_latency.py [--calls 1,10,20] [--turns N] [--quick]

Starts its own `parley engine` and, per run, its own media workers (`parley worker`, ceil(N/4)
of them, line "main" → agent "embedded"), then places N concurrent calls from ceil(N/4)
softphone processes (`parley dial --count k --timeline --record`), dialled straight at the
workers (not through the Kamailio edge). Every caller plays the same scripted WAV (espeak-ng
speech, as in tests/engine_harness.speak):

    greeting silence · a sentence with a filled pause ("My order number is … um … one two
    three four five") · N knowledge-base questions, each followed by silence for the answer ·
    a question whose answer the caller talks over (barge-in) · a question whose answer the
    caller back-channels ("uh-huh").

Everything is measured on the caller's side, from the audio:

- caller timing: the softphone queues the whole WAV when call media becomes active and the
  conference clock pulls one 20 ms frame per tick; the same tick delivers one received frame.
  Received frames carry their capture time (`--timeline`), so caller frame k went out at the
  time of received frame k (checked: a call receives exactly its sent frames plus the hold
  time; a slip of the softphone's clock delays both alike).
- voice-to-voice: caller's last voiced 20 ms frame of a question → first agent frame above the
  energy threshold after it. This is mouth-to-ear at the softphone: it includes the caller's
  own jitter buffer, which the design target ("on the wire") does not. The echo line's
  round trip (printed) bounds the phone path's share.
- barge-in stop: caller speech onset over agent audio → start of the first ≥ 400 ms agent
  silence after it.
- back-channel false stop: the agent was speaking when the caller said "uh-huh", and no agent
  audio came back within 1 s of the "uh-huh" ending.
- pause false takeover: agent audio starting after "My order number is" and before the
  caller's sentence ended.

The per-turn breakdown (endpointing, ASR, responder, first audio) is the mean of the workers'
`call.agent_event` / `end_of_turn` events. Numbers only, no asserts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from telephony.sipprobe import wait_answering  # noqa: E402
from tests.support import free_port_block  # noqa: E402

PARLEY = [sys.executable, "-m", "admin.cli"]
RATE = 16_000
FRAME = 320  # 20 ms
FRAME_S = 0.02
SPEECH_RMS = 300.0  # a 20 ms frame louder than this is speech (about -40 dBFS)
CALLS_PER_PROCESS = 4  # pjsua2's limit, for workers and softphones alike
# No reply can start sooner than this after the caller stops (the engine's shortest turn wait,
# 200 ms, less its back-dating to the energy's fall, plus the phone round trip); agent audio
# starting earlier belongs to an earlier turn. (Until 2026-11-25 this was 300 ms, which left
# out real answers once they came that fast.)
EARLIEST_ANSWER_MS = 150.0

QUESTIONS = [
    "How much does shipping cost?",
    "Do you price match?",
    "Do you have a rewards program?",
    "What payment methods do you accept?",
    "Do you ship internationally?",
    "How do I create an account?",
]
BARGE_QUESTION = "What is your return policy?"
BARGE_OVER = "Sorry, actually, how long does shipping take?"
BACKCHANNEL_QUESTION = "When will I get my refund?"
BACKCHANNEL = "uh-huh"


# --- the caller's script -------------------------------------------------------------------


@dataclass
class Segment:
    kind: str  # question | barge_q | barge | bc_q | backchannel | pause_head | pause_tail
    text: str
    first: int = 0  # first voiced frame (index into the played stream)
    last: int = 0  # last voiced frame


@dataclass
class Script:
    pcm: np.ndarray
    segments: list[Segment]

    @property
    def seconds(self) -> float:
        return len(self.pcm) / RATE


def _voiced_frames(pcm: np.ndarray) -> np.ndarray:
    n = len(pcm) // FRAME
    frames = pcm[: n * FRAME].astype(np.float64).reshape(n, FRAME)
    rms: np.ndarray = np.sqrt((frames**2).mean(axis=1))
    return rms > SPEECH_RMS


def build_script(turns: int, greeting_s: float, answer_s: float) -> Script:
    from tests.engine_harness import silence, speak  # imports the engine stack: once, here

    parts: list[np.ndarray] = []
    segments: list[Segment] = []
    length = 0

    def add(audio: np.ndarray, kind: str | None = None, text: str = "") -> None:
        nonlocal length
        # Keep every part frame-aligned so frame indices are exact.
        pad = (-len(audio)) % FRAME
        audio = np.concatenate([audio, np.zeros(pad, np.int16)])
        if kind is not None:
            voiced = np.flatnonzero(_voiced_frames(audio))
            start = length // FRAME
            segments.append(Segment(kind, text, start + int(voiced[0]), start + int(voiced[-1])))
        parts.append(audio)
        length += len(audio)

    answer_ms = int(answer_s * 1000)
    add(silence(int(greeting_s * 1000)))
    # First, while the agent is surely quiet: a filled pause of about a second mid-sentence.
    add(speak("My order number is"), "pause_head", "My order number is")
    add(silence(450))
    add(speak("um"), "pause_um", "um")
    add(silence(450))
    add(speak("one two three four five"), "pause_tail", "one two three four five")
    add(silence(answer_ms))
    for i in range(turns):
        q = QUESTIONS[i % len(QUESTIONS)]
        add(speak(q), "question", q)
        add(silence(answer_ms))
    # Barge-in: talk over the answer 4 s after asking (the answer runs ~6.5 s).
    add(speak(BARGE_QUESTION), "barge_q", BARGE_QUESTION)
    add(silence(4000))
    add(speak(BARGE_OVER), "barge", BARGE_OVER)
    add(silence(answer_ms))
    # Back-channel 4 s after asking (the answer runs ~8 s).
    add(speak(BACKCHANNEL_QUESTION), "bc_q", BACKCHANNEL_QUESTION)
    add(silence(4000))
    add(speak(BACKCHANNEL), "backchannel", BACKCHANNEL)
    add(silence(answer_ms))
    return Script(np.concatenate(parts).astype(np.int16), segments)


def write_wav(path: Path, pcm: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(pcm.astype("<i2").tobytes())
    return path


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16)


# --- processes -----------------------------------------------------------------------------


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


class Proc:
    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, n: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def _env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env["PARLEY_CONFIG"] = str(config)
    env["PYTHONPATH"] = str(ROOT)
    return env


def start_engine(tmp: Path, *, batching: bool = True) -> tuple[Proc, str]:
    port = free_port_block(1)
    config = tmp / "engine.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp / "var"),
                "log_level": "WARNING",
                "engine": {"host": "127.0.0.1", "port": port},
            }
        )
    )
    command = [*PARLEY, "engine", *([] if batching else ["--no-batching"])]
    engine = Proc(command, _env(config), tmp, tmp / "engine.log")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if engine.proc.poll() is not None:
            raise SystemExit(f"engine exited:\n{engine.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                models = json.loads(r.read()).get("models", {})
                # A long-running engine has its fixed replies prerendered; wait for that.
                if r.status == 200 and models.get("prerender_done"):
                    return engine, f"ws://127.0.0.1:{port}/v1/realtime"
                time.sleep(0.5)
        except OSError:
            time.sleep(0.5)
    engine.stop()
    raise SystemExit(f"engine never became healthy:\n{engine.tail()}")


@dataclass
class Workers:
    tmp: Path
    procs: list[Proc]
    base_port: int

    def uri(self, index: int, number: str = "100") -> str:
        return f"sip:{number}@127.0.0.1:{self.base_port + index}"

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for path in sorted((self.tmp / "var" / "events").glob("worker-*.jsonl")):
            for line in path.read_text().splitlines():
                if line.strip():
                    out.append(json.loads(line))
        return out

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()


def start_workers(tmp: Path, count: int, engine_url: str) -> Workers:
    block = free_port_block(2 + count + count * 40)
    config = tmp / "parley.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp / "var"),
                "log_level": "WARNING",
                "sip": {
                    "host": "127.0.0.1",
                    "port": block,
                    "call_capacity": count * CALLS_PER_PROCESS,
                    "worker_base_port": block + 2,
                    "rtp_base_port": block + 2 + count,
                    "rtp_timeout_s": 30.0,
                    "stats_interval_s": 5.0,
                },
                "lines": [
                    {"name": "main", "numbers": ["100"], "agent": "embedded"},
                    {"name": "echo", "numbers": ["101"], "agent": "echo"},
                ],
                "default_line": "main",
                "engine": {"url": engine_url},
            }
        )
    )
    env = _env(config)
    procs = [
        Proc([*PARLEY, "worker", "--index", str(i)], env, tmp, tmp / f"worker-{i}.log")
        for i in range(count)
    ]
    workers = Workers(tmp, procs, block + 2)
    try:
        for i in range(count):
            wait_answering("127.0.0.1", block + 2 + i, timeout_s=30)
    except TimeoutError:
        workers.stop()
        raise SystemExit(f"worker did not start:\n{procs[0].tail()}") from None
    return workers


def start_dial(
    uri: str, play: Path, out: Path, *, count: int, max_s: float, hold_s: float = 1.0
) -> subprocess.Popen[bytes]:
    argv = [
        *PARLEY,
        "dial",
        uri,
        "--play",
        str(play),
        "--record",
        str(out.with_suffix(".wav")),
        "--json",
        str(out),
        "--timeline",
        "-q",
        "--hold",
        str(hold_s),
        "--max",
        str(max_s),
        "--count",
        str(count),
        "--rtp-timeout",
        "15",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env["PYTHONPATH"] = str(ROOT)
    log = out.with_suffix(".log").open("wb")
    return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)


def finish_dials(procs: list[tuple[subprocess.Popen[bytes], Path]], timeout: float) -> list[Any]:
    results: list[Any] = []
    deadline = time.monotonic() + timeout
    for proc, out in procs:
        try:
            proc.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if out.exists():
            results.extend(json.loads(out.read_text()))
        else:
            print(f"  ! {out.name}: no summary: {out.with_suffix('.log').read_text()[-500:]}")
    return results


# --- analysis of one call --------------------------------------------------------------------


@dataclass
class CallMeasures:
    v2v_ms: list[float] = field(default_factory=list)
    # The same, less the caller's receive jitter-buffer delay (pjmedia's mean for the call):
    # the agent's first speech packet on the wire rather than at the ear (DESIGN.md's target).
    v2v_wire_ms: list[float] = field(default_factory=list)
    v2v_overlap: int = 0  # agent still talking when the question ended
    v2v_missing: int = 0  # no agent audio before the caller's next segment
    barge_ms: list[float] = field(default_factory=list)
    barge_wire_ms: list[float] = field(default_factory=list)  # less the caller's jitter buffer
    barge_na: int = 0  # agent was not speaking when the caller barged in
    bc_trials: int = 0
    bc_false_stops: int = 0
    bc_na: int = 0
    bc_gap_ms: list[float] = field(default_factory=list)
    pause_trials: int = 0
    pause_takeovers: int = 0
    pause_na: int = 0
    frame_gaps: int = 0
    answered: bool = False


def analyse_call(result: dict[str, Any], script: Script) -> CallMeasures:
    m = CallMeasures(answered=bool(result.get("answered")))
    if not m.answered or "recording" not in result:
        return m
    times = np.asarray(result["frame_times_ns"], dtype=np.int64)
    heard = read_wav(Path(result["recording"]))
    n = min(len(times), len(heard) // FRAME)
    times = times[:n]
    agent = _voiced_frames(heard[: n * FRAME])
    if n > 1:
        m.frame_gaps = int(np.count_nonzero(np.diff(times) > 35_000_000))

    def t_ms(frame: int) -> float:
        # Caller frame k left in the same conference tick as received frame k.
        if frame < n:
            return float(times[frame]) / 1e6
        return float(times[-1]) / 1e6 + (frame - n + 1) * 20.0

    def speaking(lo: int, hi: int) -> bool:
        lo, hi = max(0, lo), min(n, hi)
        return lo < hi and bool(agent[lo:hi].any())

    def first_speech(lo: int, hi: int) -> int | None:
        lo, hi = max(0, lo), min(n, hi)
        hits = np.flatnonzero(agent[lo:hi])
        return lo + int(hits[0]) if len(hits) else None

    def mid_answer(onset: int) -> bool:
        # Agent audio in the 300 ms before `onset`, and no 400 ms silence under way at it
        # (a pause between sentences is fine; an answer that had already ended is not).
        quiet = _first_silence(agent, onset - 15, 20)
        return speaking(onset - 15, onset + 1) and (quiet is None or quiet > onset)

    segs = script.segments
    for i, seg in enumerate(segs):
        nxt = segs[i + 1].first if i + 1 < len(segs) else n
        # (The question spoken over an answer is left out: its latency depends on the stop.)
        if seg.kind in ("question", "barge_q", "bc_q", "pause_tail"):
            end = seg.last
            if speaking(end - 10, end + 1):
                m.v2v_overlap += 1
                continue
            onset = first_speech(end + 1, nxt)
            if onset is None:
                m.v2v_missing += 1
            elif t_ms(onset) - t_ms(end) < EARLIEST_ANSWER_MS:
                m.v2v_overlap += 1  # too early to answer this question: an earlier reply
            else:
                m.v2v_ms.append(t_ms(onset) - t_ms(end))
                m.v2v_wire_ms.append(m.v2v_ms[-1] - float(result.get("jbuf_avg_delay_ms", 0.0)))
        if seg.kind == "barge":
            if not mid_answer(seg.first):
                m.barge_na += 1
            else:
                stop = _first_silence(agent, seg.first, 20)
                m.barge_ms.append(t_ms(n if stop is None else stop) - t_ms(seg.first))
                m.barge_wire_ms.append(m.barge_ms[-1] - float(result.get("jbuf_avg_delay_ms", 0.0)))
        if seg.kind == "backchannel":
            if not mid_answer(seg.first):
                m.bc_na += 1
            else:
                m.bc_trials += 1
                if not speaking(seg.last + 1, seg.last + 1 + 50):
                    m.bc_false_stops += 1
                # The longest agent silence from the back-channel's onset to 1 s after its end.
                m.bc_gap_ms.append(20.0 * _longest_silence(agent[seg.first : seg.last + 51]))
        if seg.kind == "pause_head":
            tail = next(s for s in segs[i:] if s.kind == "pause_tail")
            if speaking(seg.first - 25, seg.last + 1):
                m.pause_na += 1  # the previous answer was still playing
            else:
                m.pause_trials += 1
                if speaking(seg.last + 1, tail.last + 6):
                    m.pause_takeovers += 1
    return m


def _longest_silence(agent: np.ndarray) -> int:
    best = run = 0
    for voiced in agent:
        run = 0 if voiced else run + 1
        best = max(best, run)
    return best


def _first_silence(agent: np.ndarray, start: int, frames: int) -> int | None:
    """The first frame ≥ start that begins a run of `frames` silent frames."""
    run = 0
    for i in range(max(0, start), len(agent)):
        run = 0 if agent[i] else run + 1
        if run >= frames:
            return i - frames + 1
    return None


# --- one run -------------------------------------------------------------------------------


@dataclass
class RunResult:
    calls: int
    answered: int
    measures: CallMeasures
    breakdown: dict[str, float]
    breakdown_n: int
    tts_cached: int  # turns whose first sentence came from the engine's TTS cache
    barge_events: int
    bc_ignored_events: int
    engine_cpu_pct: float
    workers_cpu_pct: float
    callers_cpu_pct: float
    loadavg: str
    wall_s: float
    whisper: dict[str, float]  # the engine's ASR counters over the calls (its /metrics)


_WHISPER_FIGURES = {
    "parley_engine_asr_passes": "passes",
    "parley_engine_asr_utterances": "decodes",
    "parley_engine_asr_busy_seconds": "busy_s",
}


def whisper_counters(engine_url: str) -> dict[str, float]:
    """The engine's Whisper counters: generate passes, decodes, seconds busy."""
    base = engine_url.replace("ws://", "http://").split("/v1/")[0]
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        text = response.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        name = name.removesuffix("_total")  # Prometheus's name for a counter
        if name in _WHISPER_FIGURES:
            found[_WHISPER_FIGURES[name]] = float(value)
    return found


def _children_cpu(procs: list[subprocess.Popen[bytes]]) -> float:
    return sum(_cpu_s(p.pid) for p in procs if p.poll() is None)


def run_calls(
    calls: int, script: Script, play: Path, *, engine: Proc, engine_url: str, tmp: Path
) -> RunResult:
    tmp.mkdir(parents=True, exist_ok=True)
    nproc = math.ceil(calls / CALLS_PER_PROCESS)
    workers = start_workers(tmp, nproc, engine_url)
    try:
        counts = [calls // nproc + (1 if i < calls % nproc else 0) for i in range(nproc)]
        engine_cpu0 = _cpu_s(engine.pid)
        whisper0 = whisper_counters(engine_url)
        workers_cpu0 = sum(_cpu_s(p.pid) for p in workers.procs)
        started = time.monotonic()
        dials: list[tuple[subprocess.Popen[bytes], Path]] = []
        for i, count in enumerate(counts):
            out = tmp / f"dial-{i}.json"
            dials.append(
                (start_dial(workers.uri(i), play, out, count=count, max_s=script.seconds + 30), out)
            )
            time.sleep(0.4)  # softphone processes (and so their calls) start staggered
        # Sample the callers' CPU shortly before they finish (their /proc goes with them).
        time.sleep(max(0.0, script.seconds - 2))
        callers_cpu = _children_cpu([p for p, _ in dials])
        engine_cpu = _cpu_s(engine.pid) - engine_cpu0
        whisper = whisper_counters(engine_url)
        whisper = {k: v - whisper0.get(k, 0.0) for k, v in whisper.items()}
        whisper["busy_pct"] = whisper.get("busy_s", 0.0) / (time.monotonic() - started) * 100
        workers_cpu = sum(_cpu_s(p.pid) for p in workers.procs) - workers_cpu0
        busy_s = time.monotonic() - started
        load = _loadavg()
        results = finish_dials(dials, timeout=60)
        wall = time.monotonic() - started
        time.sleep(0.5)
        events = workers.events()
    finally:
        workers.stop()
    total = CallMeasures()
    for result in results:
        m = analyse_call(result, script)
        for name, value in m.__dict__.items():
            if isinstance(value, list):
                getattr(total, name).extend(value)
            elif isinstance(value, int) and not isinstance(value, bool):
                setattr(total, name, getattr(total, name) + value)
    agent_events = [e["data"] for e in events if e["kind"] == "call.agent_event"]
    turns = [d for d in agent_events if d.get("event") == "end_of_turn"]
    keys = ("endpointing_ms", "asr_ms", "responder_ms", "first_audio_ms")
    breakdown = {
        k: statistics.fmean(float(d[k]) for d in turns if k in d) if turns else float("nan")
        for k in keys
    }
    return RunResult(
        calls=calls,
        answered=sum(1 for r in results if r.get("answered")),
        measures=total,
        breakdown=breakdown,
        breakdown_n=len(turns),
        tts_cached=sum(1 for d in turns if float(d.get("first_audio_ms", 99)) < 5),
        barge_events=sum(1 for d in agent_events if d.get("event") == "barge_in"),
        bc_ignored_events=sum(1 for d in agent_events if d.get("event") == "backchannel_ignored"),
        engine_cpu_pct=engine_cpu / busy_s * 100,
        workers_cpu_pct=workers_cpu / busy_s * 100,
        callers_cpu_pct=callers_cpu / busy_s * 100,
        loadavg=load,
        wall_s=wall,
        whisper=whisper,
    )


def echo_round_trip(script_tmp: Path, engine_url: str) -> float | None:
    """The phone path's round trip (caller → worker → caller) on the echo line, in ms."""
    from tests.support import best_correlation, chirp_noise

    tmp = script_tmp / "echo"
    tmp.mkdir(parents=True, exist_ok=True)
    workers = start_workers(tmp, 1, engine_url)
    try:
        noise = chirp_noise(1.0)
        pcm = np.concatenate([np.zeros(RATE // 2), noise, np.zeros(RATE)]).astype(np.int16)
        play = write_wav(tmp / "noise.wav", pcm)
        out = tmp / "echo.json"
        proc = start_dial(workers.uri(0, "101"), play, out, count=1, max_s=15, hold_s=0.5)
        [result] = finish_dials([(proc, out)], timeout=30)
    finally:
        workers.stop()
    if not result.get("answered"):
        return None
    heard = read_wav(Path(result["recording"])).astype(np.float64)
    times = np.asarray(result["frame_times_ns"], dtype=np.int64)
    score, lag = best_correlation(noise, heard)
    if score < 0.5:
        return None
    sent_frame = RATE // 2 // FRAME
    got_frame = lag // FRAME
    if got_frame >= len(times):
        return None
    return float(times[got_frame] - times[sent_frame]) / 1e6 + (lag % FRAME) / 16.0


# --- report --------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values), q))


def _fmt(value: float, width: int = 6) -> str:
    return f"{'-':>{width}}" if math.isnan(value) else f"{value:{width}.0f}"


def _tree() -> str:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip()


def print_header(args: argparse.Namespace, script: Script) -> None:
    cpu_model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    rev = _tree()
    print(f"Parley voice latency bench (embedded engine, real SIP calls), tree {rev or '?'}")
    if args.no_batching:
        print("engine: --no-batching (every VAD window and utterance on its own)")
    print(
        f"machine: {os.cpu_count()} CPUs ({cpu_model}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}, load avg at start {_loadavg()}"
    )
    print(
        "path: softphone (parley dial, G.722) → media worker directly (not via the Kamailio "
        "edge) → engine WebSocket; one engine, ceil(N/4) workers, ceil(N/4) caller processes"
    )
    kinds = [s.kind for s in script.segments]
    print(
        f"script per call: {script.seconds:.0f} s — greeting wait {args.greeting_s:.0f} s, "
        f"{kinds.count('question')} questions + barge-in + back-channel + filled pause; "
        f"{args.answer_s:.0f} s silence after each"
    )
    print(f"speech = 20 ms frame RMS > {SPEECH_RMS:.0f}; v2v measured mouth-to-ear at the caller")


def print_rows(rows: list[RunResult], echo_ms: float | None) -> None:
    if echo_ms is not None:
        print(f"phone path round trip (echo line, 1 call, both jitter buffers): {echo_ms:.0f} ms")
    print()
    print("Voice-to-voice (ms, at the caller) and the engine's mean end_of_turn breakdown (ms)")
    print(
        "calls ans |  n   p50   p95   max miss ovl | wire p50  p95 |"
        " endpt   asr  resp  tts1 turns cached | CPU% engine workers callers | load avg"
    )
    for r in rows:
        m, b = r.measures, r.breakdown
        print(
            f"{r.calls:5} {r.answered:3} |{len(m.v2v_ms):3}{_fmt(_pct(m.v2v_ms, 50))}"
            f"{_fmt(_pct(m.v2v_ms, 95))}{_fmt(max(m.v2v_ms, default=float('nan')))}"
            f"{m.v2v_missing:5}{m.v2v_overlap:4} |"
            f"    {_fmt(_pct(m.v2v_wire_ms, 50))}{_fmt(_pct(m.v2v_wire_ms, 95))} |"
            f"{_fmt(b['endpointing_ms'])}{_fmt(b['asr_ms'])}{_fmt(b['responder_ms'])}"
            f"{_fmt(b['first_audio_ms'])}{r.breakdown_n:6}{r.tts_cached:7} |"
            f"{r.engine_cpu_pct:12.0f}{r.workers_cpu_pct:8.0f}{r.callers_cpu_pct:8.0f}"
            f" | {r.loadavg}"
        )
    print()
    print("Whisper in the engine over the calls: generate passes, decodes, decodes per pass,")
    print("time busy (share of the run's wall time: near 100 % means a queue)")
    for r in rows:
        w = r.whisper
        passes, decodes = w.get("passes", 0.0), w.get("decodes", 0.0)
        print(
            f"{r.calls:5} calls | {passes:6.0f} passes {decodes:6.0f} decodes"
            f" {decodes / passes if passes else float('nan'):5.2f} per pass"
            f" | busy {w.get('busy_s', 0.0):6.1f} s ({w.get('busy_pct', 0.0):3.0f} %)"
        )
    print()
    print("Turn-taking")
    print(
        "calls | barge-in: n  stop p50   p95  wire p50  ≤200ms  >1s  na  ev |"
        " back-channel: n  false-stop  na  ignored-ev  gap p50 | pause: n  takeover  na"
    )
    for r in rows:
        m = r.measures
        fast = sum(1 for v in m.barge_ms if v <= 200)
        slow = sum(1 for v in m.barge_ms if v > 1000)
        print(
            f"{r.calls:5} |{len(m.barge_ms):13}{_fmt(_pct(m.barge_ms, 50), 10)}"
            f"{_fmt(_pct(m.barge_ms, 95))}{_fmt(_pct(m.barge_wire_ms, 50), 10)}"
            f"{fast:8}{slow:5}{m.barge_na:4}"
            f"{r.barge_events:4} |{m.bc_trials:16}{m.bc_false_stops:12}{m.bc_na:4}"
            f"{r.bc_ignored_events:12}{_fmt(_pct(m.bc_gap_ms, 50), 9)} |"
            f"{m.pause_trials:9}{m.pause_takeovers:10}{m.pause_na:4}"
        )
    print()
    print(
        "v2v: caller's last voiced frame of a question -> first agent voiced frame after it;\n"
        "  wire = the same less the caller's mean jitter-buffer delay (pjmedia's stream stat),\n"
        "  i.e. when the agent's first speech packet reached the caller rather than its ear;\n"
        "  miss = no agent audio before the caller spoke again; ovl = left out: agent audible\n"
        "  within 200 ms before the question ended, or starting < 300 ms after it (an earlier\n"
        "  reply). endpt..tts1: engine-reported means (endpointing = stream time from the last\n"
        "  voiced VAD window to the turn decision, hangover included; tts1 = first sentence\n"
        "  synthesized; cached = turns whose first sentence came from the TTS cache, < 5 ms:\n"
        "  each run has a fresh engine that prerenders its fixed replies before calls start,\n"
        "  and a prepared reply's first sentence is cached before the turn ends).\n"
        "  CPU%: of one core, averaged over the calls.\n"
        "barge-in: caller onset over agent audio -> start of >= 400 ms agent silence at the ear;\n"
        "  wire = the same less the caller's jitter-buffer delay; ≤200ms counts at the ear;\n"
        "  >1s = agent kept talking; na = agent not audible at onset;\n"
        "  ev = barge_in events (all calls).\n"
        "back-channel: 'uh-huh' over an answer; false-stop = no agent audio within 1 s after it;\n"
        "  gap = longest agent silence from its onset to 1 s after it (ms).\n"
        "pause: agent audio between 'My order number is' and the end of '... four five';\n"
        "  na = agent still audible from before (not a trial)."
    )
    for r in rows:
        if r.answered < r.calls or r.measures.frame_gaps:
            print(
                f"note: {r.calls} calls: {r.answered} answered, "
                f"{r.measures.frame_gaps} received-frame gaps > 35 ms (softphone clock slips)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", default="1,10,20", help="concurrent calls per run, e.g. 1,10")
    parser.add_argument("--turns", type=int, default=3, help="plain questions per call")
    parser.add_argument("--quick", action="store_true", help="1,10 calls, 2 questions")
    parser.add_argument("--greeting-s", type=float, default=7.0)
    parser.add_argument("--answer-s", type=float, default=8.5)
    parser.add_argument("--keep", help="keep the work folder here (recordings, logs, events)")
    parser.add_argument(
        "--no-batching",
        action="store_true",
        help="engine without VAD/ASR batching across calls (to measure what batching gains)",
    )
    args = parser.parse_args()
    if args.quick:
        args.calls = "1,10" if args.calls == "1,10,20" else args.calls
        args.turns = min(args.turns, 2)
    call_counts = [int(c) for c in args.calls.split(",") if c.strip()]

    if args.keep:
        work = Path(args.keep)
        work.mkdir(parents=True, exist_ok=True)
        cleanup = None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="parley-vl-")
        work = Path(cleanup.name)
    script = build_script(args.turns, args.greeting_s, args.answer_s)
    play = write_wav(work / "caller.wav", script.pcm)
    tree = _tree()
    print_header(args, script)
    sys.stdout.flush()
    rows: list[RunResult] = []
    echo_ms: float | None = None
    try:
        for calls in call_counts:
            # A fresh engine per run: its TTS cache starts empty, so runs compare alike.
            tmp = work / f"run-{calls}"
            tmp.mkdir(parents=True, exist_ok=True)
            engine, url = start_engine(tmp, batching=not args.no_batching)
            try:
                if echo_ms is None:
                    echo_ms = echo_round_trip(work, url)
                rows.append(run_calls(calls, script, play, engine=engine, engine_url=url, tmp=tmp))
            finally:
                engine.stop()
            print(f"  … {calls} calls done in {rows[-1].wall_s:.0f} s", file=sys.stderr)
    finally:
        if cleanup is not None:
            cleanup.cleanup()
    print_rows(rows, echo_ms)
    if _tree() != tree:
        print(f"warning: the source tree changed during the bench ({tree} -> {_tree()})")


if __name__ == "__main__":
    main()
