"""How long a call waits when its engine server dies: two `parley engine` processes, a call's
session (the media worker's FailoverSession) on one, that process killed with SIGKILL (a
crashed host's kernel still resets the connection; a hung one is found by the keepalive),
and the time until the call is on the other. Prints numbers; asserts nothing.

Per round: `detect_ms` from the kill to the session finding the connection gone (its next read
or send), `move_ms` from there to the new session holding the replayed conversation (the
worker's `session_moved`), and `total_ms` from the kill to that event, which is how long a
caller who speaks at that moment waits before a server hears them (their words are kept and
sent again, not lost). The killed engine is restarted between rounds (its models load again).

Usage: python bench/failover.py [--rounds 5] [--voice en-gb-x-rp+m1]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import signal
import statistics
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as `python bench/…` from anywhere

from agent.failover import EnginePool, FailoverSession  # noqa: E402
from agent.health import ServerHealth, health_url, probe  # noqa: E402
from agent.profiles import SessionTarget, create_session  # noqa: E402
from agent.resample import Resampler  # noqa: E402
from agent.session import AgentAudio, CallerAudio, EventKind, SessionEvent  # noqa: E402
from bench.machine import describe  # noqa: E402

TOKEN = "bench-failover-token"
QUESTION = "How much does shipping cost?"
SILENCE = bytes(640)


class Engine:
    """One `parley engine` process on its own port."""

    def __init__(self, port: int, log_dir: Path) -> None:
        self.port = port
        self.url = f"ws://127.0.0.1:{port}/v1/realtime"
        self.log = log_dir / f"engine-{port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PARLEY_ENGINE__TOKEN": TOKEN, "PARLEY_ENGINE__PRERENDER": "false"}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "parley"), "engine", "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def wait_ready(self, timeout_s: float = 120) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if probe(health_url(self.url)):
                return time.monotonic() - started
            if self.process is not None and self.process.poll() is not None:
                raise SystemExit(f"engine on {self.port} exited; see {self.log}")
            time.sleep(0.2)
        raise SystemExit(f"engine on {self.port} not ready in {timeout_s} s; see {self.log}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


def question_audio(voice: str) -> bytes:
    """The question in an espeak-ng voice, 16 kHz PCM16, then 2 s of quiet."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", "165", "--stdout", QUESTION],
        check=True,
        capture_output=True,
    ).stdout
    with wave.open(io.BytesIO(wav)) as read:
        rate = read.getframerate()
        samples = np.frombuffer(read.readframes(read.getnframes()), dtype="<i2")
    resampler = Resampler(rate, 16_000)
    pcm = resampler.process(samples.tobytes()) + resampler.flush()
    return pcm + bytes(640 * 100)


async def one_round(
    pool: EnginePool, engines: dict[str, Engine], question: bytes, *, kill: bool
) -> dict[str, float]:
    """One call: the greeting, then the question; with `kill`, the call's engine is killed a
    fifth of a second into the question. Times from the end of the question's audio."""
    session = create_session("embedded", SessionTarget("", engine_token=TOKEN, engines=pool))
    assert isinstance(session, FailoverSession)
    await session.start()
    loop = asyncio.get_running_loop()
    moved: asyncio.Future[tuple[float, SessionEvent]] = loop.create_future()
    answered: asyncio.Future[float] = loop.create_future()
    greeted = asyncio.Event()
    said: list[str] = []
    greeting_ms = [0]

    async def read() -> None:
        async for item in session.outputs():
            if isinstance(item, AgentAudio) and not greeted.is_set():
                greeting_ms[0] += len(item.pcm) // 32
            if not isinstance(item, SessionEvent):
                continue
            if item.kind is EventKind.AGENT_UTTERANCE_DONE:
                greeted.set()
            elif item.kind is EventKind.SESSION_MOVED:
                moved.set_result((time.monotonic(), item))
            elif item.kind is EventKind.AGENT_UTTERANCE_STARTED and not answered.done():
                if greeted.is_set():
                    answered.set_result(time.monotonic())
            elif item.kind is EventKind.AGENT_TRANSCRIPT and answered.done():
                said.append(str(item.data.get("text", "")))

    reader = asyncio.create_task(read())

    async def say(pcm: bytes) -> None:  # 50 frames a second, as a phone line sends
        start = time.monotonic()
        for n in range(len(pcm) // 640):
            await session.send_audio(CallerAudio(pcm[n * 640 : (n + 1) * 640], time.monotonic_ns()))
            await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - time.monotonic()))

    # The greeting arrives faster than it plays: the caller waits until it has been heard.
    started = time.monotonic()
    while not greeted.is_set() or time.monotonic() - started < greeting_ms[0] / 1000 + 0.5:
        await say(SILENCE * 10)
    victim = engines[session.url]
    asking = asyncio.create_task(say(question))
    spoken_s = (len(question) - 640 * 100) / 32_000
    result: dict[str, float] = {}
    if kill:
        await asyncio.sleep(0.2)
        killed = time.monotonic()
        victim.kill()
        at, event = await asyncio.wait_for(moved, 30)
        result["move_ms"] = float(str(event.data["move_ms"]))
        result["total_ms"] = (at - killed) * 1000
        result["detect_ms"] = result["total_ms"] - result["move_ms"]
        question_end = killed - 0.2 + spoken_s
    else:
        question_end = time.monotonic() + spoken_s
    result["answer_ms"] = (await asyncio.wait_for(answered, 30) - question_end) * 1000
    await asking
    result["answered"] = float(any("shipping" in text.lower() for text in said))
    await session.close()
    reader.cancel()
    if kill:
        victim.start()
    return result


async def main(rounds: int, log_dir: Path, voice: str) -> None:
    engines = {e.url: e for e in (Engine(18765, log_dir), Engine(18766, log_dir))}
    for engine in engines.values():
        engine.start()
    for engine in engines.values():
        print(f"engine {engine.port} ready in {engine.wait_ready():.1f} s", flush=True)
    question = question_audio(voice)
    health = {url: ServerHealth(health_url(url), interval_s=0.5) for url in engines}
    pool = EnginePool(health)
    stop = asyncio.Event()
    probers = [asyncio.create_task(h.run(stop)) for h in health.values()]
    results = []
    try:
        for n in range(rounds):
            while not all(h.ready for h in health.values()):
                await asyncio.sleep(0.2)
            calm = await one_round(pool, engines, question, kill=False)
            result = await one_round(pool, engines, question, kill=True)
            result["calm_answer_ms"] = calm["answer_ms"]
            result["calm_answered"] = calm["answered"]
            results.append(result)
            print(
                f"round {n + 1}/{rounds}: detect {result['detect_ms']:.1f} ms, "
                f"move {result['move_ms']:.1f} ms, total {result['total_ms']:.1f} ms; "
                f"answer {result['answer_ms']:.0f} ms after the question "
                f"(without a kill: {calm['answer_ms']:.0f} ms); the shipping answer: "
                f"{'yes' if result['answered'] else 'NO'} "
                f"(without a kill: {'yes' if calm['answered'] else 'NO'})",
                flush=True,
            )
            for engine in engines.values():
                if probe(health_url(engine.url)) is False:
                    await asyncio.to_thread(engine.wait_ready)
    finally:
        stop.set()
        await asyncio.gather(*probers)
        for engine in engines.values():
            if engine.process is not None and engine.process.poll() is None:
                engine.process.terminate()
                engine.process.wait()
    print(describe())
    answered = sum(int(r["answered"]) for r in results)
    calm_answered = sum(int(r["calm_answered"]) for r in results)
    print(f"the shipping answer: {answered} of {len(results)} with a kill, {calm_answered} without")
    for key in ("detect_ms", "move_ms", "total_ms", "answer_ms", "calm_answer_ms"):
        values = [r[key] for r in results]
        print(
            f"{key}: p50 {statistics.median(values):.1f}, max {max(values):.1f} (n={len(values)})"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--voice",
        default="en-gb-x-rp+m1",
        help="espeak-ng voice of the caller (default: one of the turn corpus's held-out half)",
    )
    parser.add_argument("--logs", type=Path, default=Path("var/bench-failover"))
    args = parser.parse_args()
    args.logs.mkdir(parents=True, exist_ok=True)
    print(f"caller voice: espeak-ng {args.voice}")
    asyncio.run(main(args.rounds, args.logs, args.voice))
