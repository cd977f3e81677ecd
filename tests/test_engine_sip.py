"""End to end over SIP: a softphone asks the embedded engine a knowledge-base question."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.asr import WhisperAsr
from telephony.events import CallEventKind
from tests.engine_harness import silence, speak
from tests.support import (
    EngineProcess,
    PlatformConfig,
    Running,
    agent_events,
    answered_since,
    dial,
    finish_dial,
    played_out,
    read_wav,
    start_engine,
    start_worker,
    wait_for,
    write_wav,
)

pytestmark = [pytest.mark.sip, pytest.mark.slow]


@pytest.fixture(scope="module")
def engine_config(
    tmp_path_factory: pytest.TempPathFactory, engine: EngineProcess
) -> PlatformConfig:
    return PlatformConfig(
        tmp_path_factory.mktemp("engine-sip"),
        lines=[{"name": "main", "numbers": ["100"], "agent": "embedded"}],
        extra={"engine": {"url": engine.url}},
    )


@pytest.fixture(scope="module")
def worker(engine_config: PlatformConfig) -> Iterator[Running]:
    running = start_worker(engine_config)
    yield running
    assert running.stop() == 0, running.log()[-3000:]


def test_caller_hears_the_answer_to_a_knowledge_base_question(
    worker: Running, engine_config: PlatformConfig, tmp: Path
) -> None:
    """A question answered, then the moves every caller makes, in a voice of the turn
    corpus's tuning half (espeak en-us+m3): a follow-up that leans on the answer ("And for
    express?"), a filled pause the agent waits through ("I'd like to check on my order, um"
    and 1.3 s), a topic switch that gets an invitation, and "Okay, thank you. Goodbye." the
    line's goodbye and a hang-up by the agent."""
    # The greeting plays first; the caller asks once it is over.
    question = speak("How much does shipping cost?")
    hesitant = speak("I'd like to check on my order, um")
    parts = [
        silence(7000),
        question,
        silence(9000),
        speak("And for express?"),
        silence(9000),
        hesitant,
        silence(1300),
        speak("the number is one two three four five."),
        silence(8000),
        speak("Sorry, wait, I have a different question."),
        silence(6000),
        speak("Okay, thank you. Goodbye."),
        silence(12_000),
    ]
    play = np.concatenate(parts)
    since = time.monotonic_ns()
    [result] = dial(
        f"sip:100@127.0.0.1:{engine_config.worker_base_port}",
        tmp,
        play=write_wav(tmp / "question.wav", play.astype(np.float64)),
        hold=0.5,
        max_s=90,
    )
    assert result["answered"], result
    heard = read_wav(Path(result["recording"])).astype(np.int16)
    asked_at = 7000 * 16 + len(question)
    reply = WhisperAsr().transcribe(heard[asked_at : asked_at + 16000 * 8]).text.lower()
    assert "fifty dollars" in reply or "free" in reply, reply
    # Through the "um" and the pause after it, the caller hears nothing from the agent.
    um_end = sum(len(p) for p in parts[:6])
    pause = heard[um_end + 300 * 16 : um_end + 1300 * 16]
    frames = pause[: len(pause) // 320 * 320].reshape(-1, 320)
    loudest = float(np.sqrt(np.mean(frames**2, axis=1)).max())
    assert loudest < 300, f"the agent spoke into the caller's pause (frame RMS {loudest:.0f})"
    call_id = answered_since(engine_config, since)
    kinds = [e.data.get("event") for e in engine_config.events() if e.call_id == call_id]
    assert "end_of_turn" in kinds and "caller_transcript" in kinds
    said = [
        str(e.data.get("text", "")).lower()
        for e in agent_events(engine_config, call_id, "agent_transcript")
    ]
    answer = next(i for i, s in enumerate(said) if "express shipping" in s)
    assert "express shipping" in said[answer + 1], said  # the follow-up, from the answer
    caller = [
        str(e.data.get("text", ""))
        for e in agent_events(engine_config, call_id, "caller_transcript")
    ]
    # The topic switch is judged on the words Whisper heard: over this path it sometimes
    # mishears the whole phrase ("So...re? …"), which is the recognition bench's to count
    # (bench/asr_wer.py); heard right, it must be an invitation (tests/test_engine_offline.py
    # checks it unconditionally, on the engine alone).
    if any("different question" in text.lower() for text in caller):
        assert any("go ahead" in s for s in said[answer + 2 :]), (caller, said)
    assert "thanks for calling" in said[-1], said
    ended = wait_for(
        lambda: [
            e
            for e in engine_config.events()
            if e.call_id == call_id and e.kind is CallEventKind.ENDED
        ],
        "the call's end",
    )
    assert ended[0].data["reason"] == "agent:conversation_complete", ended[0].data
    # ... and the caller heard the goodbye before the line went dead.
    farewell = WhisperAsr().transcribe(heard[-16000 * 6 :]).text.lower()
    assert "great day" in farewell or "thanks for calling" in farewell, farewell


def test_engine_dying_mid_call_plays_the_apology(tmp: Path) -> None:
    (tmp / "engine").mkdir()
    engine = start_engine(tmp / "engine", prerender=False)  # it is not kept long enough
    config = PlatformConfig(
        tmp,
        lines=[{"name": "main", "numbers": ["100"], "agent": "embedded"}],
        extra={"engine": {"url": engine.url}},
    )
    worker = start_worker(config)
    try:
        since = time.monotonic_ns()
        proc = dial(
            f"sip:100@127.0.0.1:{config.worker_base_port}",
            tmp,
            play=write_wav(tmp / "quiet.wav", silence(15000).astype(np.float64)),
            hold=0.5,
            max_s=30,
            background=True,
        )
        call_id = answered_since(config, since)
        [greeting] = wait_for(
            lambda: agent_events(config, call_id, "agent_utterance_started"), "the greeting"
        )
        played_out(config, call_id, greeting.data["utterance_id"])  # idle and healthy now
        os.kill(engine.running.proc.pid, signal.SIGKILL)
        killed = time.monotonic_ns()
        [result] = finish_dial(proc, tmp / "dial.json")
    finally:
        engine.running.stop()
        assert worker.stop() == 0
    assert result["answered"]
    heard = read_wav(Path(result["recording"]))
    times = np.array(result["frame_times_ns"], dtype=np.int64)
    energy = np.sqrt(np.mean(heard[: len(times) * 320].reshape(-1, 320) ** 2, axis=1))
    after = (times > killed) & (times < killed + 3_000_000_000)
    assert (energy[after] > 300).sum() > 50, "no apology after the engine died"
    [ended] = [e for e in config.events() if e.kind is CallEventKind.ENDED]
    assert ended.data["reason"] == "session_failed"


def _over_the_greeting(
    config: PlatformConfig, tmp: Path, voice: np.ndarray, name: str
) -> tuple[dict[str, Any], np.ndarray, np.ndarray, int]:
    """Calls the engine line and plays `voice` 1.4 s into the greeting (mid-way through its
    first sentence, about 2.2 s long). Returns the call's result, the frame times and
    per-frame energy the caller heard, and the caller's voice onset (ns, the frames' clock:
    the softphone sends its first frame with the first frame it receives)."""
    lead_ms = 1400
    play = np.concatenate([silence(lead_ms), voice, silence(6000)])
    [result] = dial(
        f"sip:100@127.0.0.1:{config.worker_base_port}",
        tmp,
        play=write_wav(tmp / f"{name}.wav", play.astype(np.float64)),
        hold=0.5,
        max_s=30,
    )
    assert result["answered"]
    heard = read_wav(Path(result["recording"]))
    times = np.array(result["frame_times_ns"], dtype=np.int64)
    energy = np.sqrt(np.mean(heard[: len(times) * 320].reshape(-1, 320) ** 2, axis=1))
    onset_ns = int(times[0]) + (lead_ms + int(np.argmax(np.abs(voice) > 500)) // 16) * 1_000_000
    return result, times, energy, onset_ns


def test_talking_over_the_greeting_stops_it(
    worker: Running, engine_config: PlatformConfig, tmp: Path
) -> None:
    talk = speak("Wait, I have a question about a charge on my bill")
    _, times, energy, onset_ns = _over_the_greeting(engine_config, tmp, talk, "talk")
    before = energy[(times > onset_ns - 500_000_000) & (times < onset_ns)]
    assert (before > 300).mean() > 0.25, "the greeting was not playing when the caller spoke"
    after = times > onset_ns
    quiet = np.convolve((energy[after] < 100).astype(int), np.ones(15, int), "valid") == 15
    assert quiet.any(), "the agent never stopped"
    stop_ms = (int(times[after][int(np.argmax(quiet))]) - onset_ns) / 1e6
    # Mouth-to-ear over SIP: the engine's pause after 64 ms of voice (plus the VAD's onset lag)
    # and both legs of the phone path; how soon is measured by bench/turn_sip.py (p50 360 ms),
    # not asserted: a loaded machine stretches it (417 ms in one make test). The bound says
    # only that the agent stopped on the caller's first words, not when they were done (3 s).
    print(f"barge-in over SIP: agent audio stopped {stop_ms:.0f} ms after caller onset")
    assert stop_ms < 800, f"agent audio stopped {stop_ms:.0f} ms after the caller started"


@pytest.mark.parametrize("said", ["uh-huh", "yeah", "I see"])
def test_a_backchannel_over_sip_leaves_no_gap(
    worker: Running, engine_config: PlatformConfig, tmp: Path, said: str
) -> None:
    """Over a real call, a back-channel in a tuning-half voice (espeak en-us+m3) while the
    greeting plays: the agent talks through it — no stop, and no silence of 400 ms or more
    in what the caller hears after it until the greeting's sentence ends."""
    ack = speak(said, voice="en-us+m3", rate_wpm=150)
    since = time.monotonic_ns()
    _, times, energy, onset_ns = _over_the_greeting(engine_config, tmp, ack, "ack")
    call_id = answered_since(engine_config, since)
    assert not agent_events(engine_config, call_id, "barge_in"), "the agent stopped"
    assert agent_events(engine_config, call_id, "backchannel_ignored"), "never judged"
    window = energy[(times > onset_ns) & (times < onset_ns + 1_500_000_000)]
    quiet = window < 100
    longest = max((len(run) for run in "".join("q" if q else "." for q in quiet).split(".")),
                  default=0) * 20  # fmt: skip
    print(f"back-channel {said!r} over SIP: longest silence after it {longest} ms")
    assert longest < 400, f"a {longest} ms gap after {said!r}"
