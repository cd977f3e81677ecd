"""Spoken consent over real SIP calls: the caller answers the disclosure with "yes" or "no",
heard by the engine server's speech recognition (a transcription session).

One worker, one line (the embedded agent, recorded, spoken consent, a caller who declines goes
on to the agent with none of their words stored); two callers at once, one says yes, one no.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from admin.disclosure_audio import audio_dir
from telephony.consent import spoken_answer
from telephony.events import CallEvent, CallEventKind
from tests.engine_harness import silence, speak
from tests.support import (
    EngineProcess,
    PlatformConfig,
    Running,
    dial,
    events_from,
    finish_dial,
    read_wav,
    start_worker,
    sync_disclosures,
    write_wav,
)

pytestmark = pytest.mark.sip

NOTICE = "This call is answered by an automated assistant and may be recorded. Do you agree?"
QUESTION = "Do you ship internationally?"
CONSENT = {"method": "spoken", "timeout_s": 6.0, "on_decline": "agent", "transcripts": "drop"}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, engine: EngineProcess) -> PlatformConfig:
    return PlatformConfig(
        tmp_path_factory.mktemp("spoken"),
        lines=[
            {
                "name": "main",
                "numbers": ["100"],
                "agent": "embedded",
                "disclosure": "notice",
                "record_calls": True,
                "consent": CONSENT,
            },
            {
                "name": "barge",
                "numbers": ["200"],
                "agent": "embedded",
                "disclosure": "notice",
                "record_calls": True,
                "consent": {**CONSENT, "barge_in": True},
            },
        ],
        extra={
            "engine": {"url": engine.url},
            "disclosures": [
                {
                    "name": "notice",
                    "text": NOTICE,
                    "jurisdiction": "US",
                    "covers": ["ai", "recording"],
                }
            ],
        },
    )


@pytest.fixture(scope="module")
def notice_s(config: PlatformConfig) -> float:
    sync_disclosures(config)
    [wav] = audio_dir(config.tmp / "var").glob("*.wav")
    return len(read_wav(wav)) / 16000


@pytest.fixture(scope="module")
def worker(config: PlatformConfig, notice_s: float) -> Iterator[Running]:
    running = start_worker(config)
    yield running
    assert running.stop() == 0, running.log()[-3000:]


def _caller_audio(tmp: Path, name: str, answer: str, notice_s: float, *, over: str = "") -> Path:
    # Quiet through the notice (but for `over`, said into it), the answer, then (after the
    # agent's greeting) a question.
    said_over = speak(over) if over else silence(0)
    parts = [silence(800), said_over, silence(int(notice_s * 1000) - 200 - len(said_over) // 16)]
    parts += [speak(answer), silence(7500)]
    parts += [speak(QUESTION), silence(7000)]
    return write_wav(tmp / f"{name}.wav", np.concatenate(parts).astype(np.float64))


def _agent(events: list[CallEvent], name: str) -> list[dict[str, Any]]:
    return [
        dict(e.data) for e in events if e.kind is CallEventKind.AGENT and e.data["event"] == name
    ]


def test_a_spoken_yes_records_the_call_and_a_spoken_no_keeps_every_word_out(
    worker: Running, config: PlatformConfig, notice_s: float, tmp_path: Path
) -> None:
    uri = f"sip:100@127.0.0.1:{config.worker_base_port}"
    calls = {
        "yes-caller": _caller_audio(tmp_path, "yes", "Yes, that's fine.", notice_s),
        "no-caller": _caller_audio(tmp_path, "no", "No, I don't agree.", notice_s, over="Hello?"),
    }
    # A third caller, on a line that lets the caller cut the notice, answers over it.
    over = [silence(600), speak("Yes, I agree."), silence(9000)]
    calls["barging-caller"] = write_wav(tmp_path / "over.wav", np.concatenate(over).astype(float))
    running = {
        caller: dial(
            uri if caller != "barging-caller" else uri.replace("sip:100@", "sip:200@"),
            tmp_path,
            play=play,
            hold=0.5,
            max_s=60,
            name=caller,
            background=True,
            options=("--caller", caller),
        )
        for caller, play in calls.items()
    }
    results = {
        caller: finish_dial(proc, tmp_path / f"{caller}.json", timeout=90)
        for caller, proc in running.items()
    }
    assert all(result[0]["answered"] for result in results.values()), results

    # Yes: consent given by voice, its words kept as evidence, the call recorded, and the
    # agent answers the caller's question (which it heard, the "yes" not).
    events = events_from(config, "yes-caller")
    [played] = [e.data for e in events if e.kind is CallEventKind.DISCLOSURE_PLAYED]
    assert (played["consent"], played["consent_method"], played["next_step"]) == (
        "granted",
        "speech",
        "bridge",
    ), played
    assert spoken_answer(str(played["answer"])) == "granted", played  # its words, kept
    recorded = [e.data for e in events if e.kind is CallEventKind.RECORDING]
    assert [r["event"] for r in recorded] == ["started", "finished"], recorded
    asked = [str(t["text"]).lower() for t in _agent(events, "caller_transcript")]
    assert any("ship" in text for text in asked), asked
    assert not any(text.startswith("yes") for text in asked), "the answer reached the agent"
    assert [t for t in _agent(events, "agent_transcript") if t["text"]], "the agent said nothing"

    # No: declined by voice, on to the agent as the line says; nothing recorded, and none of
    # what either side said is in any event, though they talked.
    events = events_from(config, "no-caller")
    [played] = [e.data for e in events if e.kind is CallEventKind.DISCLOSURE_PLAYED]
    assert (played["consent"], played["consent_method"], played["next_step"]) == (
        "declined",
        "speech",
        "bridge",
    ), played
    # Whisper's words for it vary ("No, I don't…", "So, I don't agree."): they read as a no.
    assert spoken_answer(str(played["answer"])) == "declined", played
    assert played["talked_over"] == 1, played  # "Hello?" into the notice: it played on
    assert "barged_in" not in played
    recorded = [e.data for e in events if e.kind is CallEventKind.RECORDING]
    assert recorded == [{"event": "not_allowed", "reason": "consent declined"}], recorded
    heard = _agent(events, "caller_transcript")
    said = _agent(events, "agent_transcript")
    assert heard and said, "the caller and the agent did not talk"
    assert all(t["text"] == "" and t["no_consent"] is True for t in heard + said), heard + said
    spooled = "".join(p.read_text() for p in (config.tmp / "var" / "events").glob("*.jsonl"))
    no_call = events[0].call_id
    lines = [line for line in spooled.splitlines() if no_call in line]
    assert not [line for line in lines if "internationally" in line.lower()]
    assert not (config.tmp / "var" / "recordings" / f"{no_call}.prec").exists()

    # Barging in: the notice stopped when the caller spoke; their yes counts, but a notice
    # cut short disclosed no recording, so the call is not recorded (the caller's place is
    # unknown: all-party consent).
    events = events_from(config, "barging-caller")
    [played] = [e.data for e in events if e.kind is CallEventKind.DISCLOSURE_PLAYED]
    assert (played["barged_in"], played["consent"], played["consent_method"]) == (
        "speech",
        "granted",
        "speech",
    ), played
    assert int(str(played["heard_ms"])) < notice_s * 1000 - 1500, (played, notice_s)
    [refused] = [e.data for e in events if e.kind is CallEventKind.RECORDING]
    assert refused["event"] == "not_allowed", refused
    assert refused["reason"] == "unknown requires a recording notice, and none was played"
