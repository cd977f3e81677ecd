"""A supervisor steps into an AI call from a SIP phone and out again: real processes on
loopback (a caller, Parley with its edge, a supervisor phone registered with credentials).

The caller talks (noise A) to the echo agent, which plays it back; the supervisor talks
(noise B). Who hears whom in each mode is read off the recordings by correlation. On the
embedded engine's line the caller asks a question: a whisper goes into the agent's answer, and
a hand-back note into what it says when it is back.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from admin.settings import Settings
from telephony.commands import Command, Hangup, SetMode, Whisper
from telephony.events import CallEvent, CallEventKind
from telephony.inbox import inbox_path, send_command
from telephony.phases import Mode
from telephony.recording import decrypt
from tests.engine_harness import silence, speak
from tests.support import (
    EngineProcess,
    PlatformConfig,
    Running,
    agent_events,
    answered_since,
    chirp_noise,
    dial,
    finish_dial,
    heard_in,
    parley_call,
    phone_registered,
    played_out,
    read_wav,
    received_between,
    start_phone,
    start_platform,
    wait_for,
    write_wav,
)

pytestmark = pytest.mark.sip

PASSWORD = "alice-secret-1"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, engine: EngineProcess) -> PlatformConfig:
    return PlatformConfig(
        tmp_path_factory.mktemp("supervise"),
        capacity=4,
        lines=[
            {"name": "main", "numbers": ["100"], "agent": "echo"},
            {"name": "agent", "numbers": ["300"], "agent": "embedded"},
            {
                "name": "recorded",
                "numbers": ["400"],
                "agent": "echo",
                "disclosure": "notice",
                "record_calls": True,
            },
        ],
        sip={"phones": [{"name": "alice", "password": PASSWORD}]},
        extra={
            "engine": {"url": engine.url},
            "disclosures": [
                {
                    "name": "notice",
                    "text": "This call is recorded.",
                    "jurisdiction": "US",
                    "covers": ["ai", "recording"],
                }
            ],
        },
    )


@pytest.fixture(scope="module")
def platform(config: PlatformConfig) -> Iterator[Running]:
    running = start_platform(config)
    yield running
    assert running.stop(timeout=30) == 0, running.log()[-3000:]


def _events(config: PlatformConfig, call_id: str) -> list[CallEvent]:
    return [e for e in config.events() if e.call_id == call_id]


def _modes(events: list[CallEvent]) -> list[tuple[object, object, int]]:
    """(phase, mode, when) at each of the call's phase changes."""
    return [
        (e.data["phase"], e.data["mode"], e.t_mono_ns)
        for e in events
        if e.kind is CallEventKind.PHASE
    ]


def test_a_wrong_password_is_refused(platform: Running, config: PlatformConfig, tmp: Path) -> None:
    proc = start_phone(
        config, tmp, "alice", "--password", "not-the-password", "--register-only", "--max", "10"
    )
    assert proc.wait(30) == 1
    result = json.loads((tmp / "phone.json").read_text())
    assert not result["registered"] and result["register_status"] == 403, result
    assert "check the user name and password" in (tmp / "phone.log").read_text()


def test_monitor_barge_takeover_and_hand_back_from_the_keypad(
    platform: Running, config: PlatformConfig, tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    caller_says = chirp_noise(19.0, seed=7)  # 16 s after the recording notice
    supervisor_says = chirp_noise(14.0, seed=11)
    phone = start_phone(
        config, tmp, "alice", "--password", PASSWORD, "--answer-after", "0.3",
        "--play", str(write_wav(tmp / "supervisor.wav", supervisor_says)),
        "--keys", "1.5:1,4.5:3,7.5:4,10.5:5", "--max", "40",
    )  # fmt: skip
    phone_registered(tmp)
    since = time.monotonic_ns()
    caller = dial(
        f"sip:400@127.0.0.1:{config.sip_port}",  # recorded, after a short notice
        tmp,
        play=write_wav(tmp / "caller.wav", caller_says),
        hold=0.5,
        background=True,
    )
    call_id = answered_since(config, since)
    wait_for(  # through the recording notice, to the agent
        lambda: [e for e in _events(config, call_id) if e.kind is CallEventKind.RECORDING],
        "the recording to start",
    )
    parley_call(config, "supervise", call_id, "alice")

    assert phone.wait(60) == 0, (tmp / "phone.log").read_text()[-2000:]
    [heard_by_caller] = finish_dial(caller, tmp / "dial.json")
    supervisor = json.loads((tmp / "phone.json").read_text())["calls"][0]
    assert [k["digits"] for k in supervisor["dtmf_sent"]] == ["1", "3", "4", "5"]
    assert supervisor["ended_by"] == "far_end", supervisor  # handing back hangs up on them
    assert heard_by_caller["reason"] != "rtp_timeout", heard_by_caller

    events = _events(config, call_id)
    modes = _modes(events)
    assert [(p, m) for p, m, _ in modes] == [
        ("disclosing", None),
        ("with_agent", None),
        ("with_agent", None),  # the supervisor joined: briefing
        ("with_human", "monitor"),
        ("with_human", "barge"),
        ("with_human", "takeover"),
        ("with_agent", None),  # handed back
    ], modes
    sup = [e.data["event"] for e in events if e.kind is CallEventKind.SUPERVISOR]
    assert sup == ["ringing", "answered", "ended"], sup

    caller_rec = read_wav(Path(heard_by_caller["recording"]))
    phone_rec = read_wav(tmp / "phone.wav")
    settle = 300_000_000
    (_, _, monitor), (_, _, barge), (_, _, takeover), (_, _, back) = [
        (p, m, t) for p, m, t in modes[3:]
    ]

    def caller_window(start: int, end: int) -> np.ndarray:
        return received_between(caller_rec, heard_by_caller["frame_times_ns"], start + settle, end)

    def phone_window(start: int, end: int) -> np.ndarray:
        return received_between(phone_rec, supervisor["frame_times_ns"], start + settle, end)

    # Monitor: the supervisor hears the call; nobody hears the supervisor.
    assert heard_in(caller_says, phone_window(monitor, barge)) > 0.5
    assert heard_in(supervisor_says, caller_window(monitor, barge)) < 0.3
    assert heard_in(caller_says, caller_window(monitor, barge)) > 0.8  # the agent goes on
    # Barge: all hear all.
    assert heard_in(supervisor_says, caller_window(barge, takeover)) > 0.4
    assert heard_in(caller_says, phone_window(barge, takeover)) > 0.4
    # Takeover: the agent is out; caller and supervisor talk.
    assert heard_in(supervisor_says, caller_window(takeover, back)) > 0.8
    assert heard_in(caller_says, caller_window(takeover, back)) < 0.3
    assert heard_in(caller_says, phone_window(takeover, back)) > 0.8
    # Handed back: the agent again.
    after = caller_window(back, heard_by_caller["ended_mono_ns"])
    assert heard_in(caller_says, after) > 0.8
    assert heard_in(supervisor_says, after) < 0.3

    # The recording: the caller on the left throughout; on the right what the caller heard —
    # the supervisor once they barged in and while they took over, never while monitoring.
    [started] = [
        e.data for e in events if e.kind is CallEventKind.RECORDING and e.data["event"] == "started"
    ]
    [finished] = [
        e.data
        for e in events
        if e.kind is CallEventKind.RECORDING and e.data["event"] == "finished"
    ]
    monkeypatch.setenv("PARLEY_CONFIG", str(config.write()))
    store = Settings().recording_store()
    audio = decrypt(store.folder / str(finished["file"]), key=store.key)
    stereo = np.frombuffer(audio.pcm, dtype="<i2").reshape(-1, 2).astype(np.float64)
    origin = int(str(started["start_mono_ns"]))

    def recorded(start: int, end: int, channel: int) -> np.ndarray:
        first = max(0, (start + settle - origin) * 16 // 1_000_000)
        last = max(first, (end - origin) * 16 // 1_000_000)
        return stereo[first:last, channel]

    assert heard_in(caller_says, recorded(monitor, back, 0)) > 0.8
    assert heard_in(supervisor_says, recorded(monitor, barge, 1)) < 0.3
    assert heard_in(supervisor_says, recorded(barge, takeover, 1)) > 0.4
    assert heard_in(supervisor_says, recorded(takeover, back, 1)) > 0.8


def test_a_supervisor_who_hangs_up_mid_takeover_leaves_the_caller_with_the_agent(
    platform: Running, config: PlatformConfig, tmp: Path
) -> None:
    caller_says = chirp_noise(9.0, seed=7)
    phone = start_phone(
        config, tmp, "alice", "--password", PASSWORD, "--answer-after", "0.2",
        "--keys", "0.8:4", "--hangup-after", "3.0", "--max", "30",
    )  # fmt: skip
    phone_registered(tmp)
    since = time.monotonic_ns()
    caller = dial(
        f"sip:100@127.0.0.1:{config.sip_port}",
        tmp,
        play=write_wav(tmp / "caller.wav", caller_says),
        hold=0.5,
        background=True,
    )
    call_id = answered_since(config, since)
    parley_call(config, "supervise", call_id, "alice")
    assert phone.wait(40) == 0, (tmp / "phone.log").read_text()[-2000:]
    [heard_by_caller] = finish_dial(caller, tmp / "dial.json")
    assert heard_by_caller["reason"] != "rtp_timeout", heard_by_caller

    events = _events(config, call_id)
    modes = [(e.data["phase"], e.data["mode"]) for e in events if e.kind is CallEventKind.PHASE]
    assert modes[-2:] == [("with_human", "takeover"), ("with_agent", None)], modes
    [ended] = [
        e for e in events if e.kind is CallEventKind.SUPERVISOR and e.data["event"] == "ended"
    ]
    assert ended.data["by"] == "supervisor"
    [call_ended] = [e for e in events if e.kind is CallEventKind.ENDED]
    assert call_ended.t_mono_ns > ended.t_mono_ns + 2_000_000_000  # the caller stayed on
    back = [e for e in events if e.kind is CallEventKind.PHASE][-1].t_mono_ns
    caller_rec = read_wav(Path(heard_by_caller["recording"]))
    after = received_between(
        caller_rec, heard_by_caller["frame_times_ns"], back + 300_000_000, call_ended.t_mono_ns
    )
    assert heard_in(caller_says, after) > 0.8  # the agent (echo) has the caller again


WHISPER = "Offer them a twenty percent loyalty discount"
NOTE = "Your replacement tent ships tomorrow morning"


def _command(config: PlatformConfig, command: Command) -> dict[str, Any]:
    """Straight to the worker's inbox: no `parley call` start-up where the call is timed."""
    reply = asyncio.run(send_command(inbox_path(config.tmp / "var" / "run", 0), command))
    assert reply.ok, reply.error
    return reply.data


def _speech_frames(recording: np.ndarray, times_ns: list[int], start_ns: int, end_ns: int) -> float:
    """The share of 20 ms frames received between two moments that carry speech energy."""
    window = received_between(recording, times_ns, start_ns, end_ns)
    energy = np.sqrt(np.mean(window[: len(window) // 320 * 320].reshape(-1, 320) ** 2, axis=1))
    return float((energy > 300).mean())


def test_a_whisper_shapes_the_agents_next_answer_and_a_hand_back_note_its_return(
    platform: Running, config: PlatformConfig, tmp: Path
) -> None:
    supervisor_says = chirp_noise(30.0, seed=11)
    phone = start_phone(
        config, tmp, "alice", "--password", PASSWORD, "--answer-after", "0.2",
        "--play", str(write_wav(tmp / "supervisor.wav", supervisor_says)), "--max", "60",
    )  # fmt: skip
    # The greeting plays first (4.9 s); the caller asks once it is over, then listens.
    question = speak("Do you ship internationally?")
    since = time.monotonic_ns()
    caller = dial(
        f"sip:300@127.0.0.1:{config.sip_port}",
        tmp,
        play=write_wav(
            tmp / "caller.wav",
            np.concatenate([silence(5200), question, silence(30000)]).astype(np.float64),
        ),
        hold=0.5,
        max_s=45,
        background=True,
    )
    phone_registered(tmp)
    call_id = answered_since(config, since)
    parley_call(config, "supervise", call_id, "alice")
    wait_for(
        lambda: [
            e
            for e in _events(config, call_id)
            if e.kind is CallEventKind.SUPERVISOR and e.data["event"] == "answered"
        ],
        "the supervisor answered",
    )
    _command(config, SetMode(call_id=call_id, actor="test", mode=Mode.WHISPER))
    whispered = time.monotonic_ns()
    _command(config, Whisper(call_id=call_id, actor="test", text=WHISPER))

    # The agent's next answer says the whisper, phrased for the caller.
    [applied] = wait_for(
        lambda: agent_events(config, call_id, "instruction_applied"), "the whisper in an answer", 30
    )
    # instruction_applied is sent just ahead of the answer's utterance_started: wait for it.
    answers = wait_for(
        lambda: agent_events(config, call_id, "agent_utterance_started", whispered),
        "the whispered answer to start",
    )
    assert answers[0].data["utterance_id"] == applied.data["item_id"], answers
    assert "twenty percent loyalty discount" in str(applied.data["text"]).lower(), applied
    answer_end = played_out(config, call_id, applied.data["item_id"])

    _command(config, SetMode(call_id=call_id, actor="test", mode=Mode.TAKEOVER))
    time.sleep(1.5)  # the supervisor talks to the caller for a moment
    parley_call(config, "hand-back", call_id, "--note", NOTE)

    # Back on the call, the agent says so at once, with the note.
    [resumed] = wait_for(
        lambda: agent_events(config, call_id, "agent_resumed"), "the agent resumed"
    )
    assert resumed.data["note"] is True
    [returned] = wait_for(
        lambda: agent_events(config, call_id, "agent_transcript", resumed.t_mono_ns),
        "what the agent said on its return",
    )
    assert "replacement tent ships tomorrow morning" in str(returned.data["text"]).lower()
    returned_end = played_out(config, call_id, returned.data["utterance_id"])
    _command(config, Hangup(call_id=call_id, actor="test", reason="done"))

    assert phone.wait(30) == 0, (tmp / "phone.log").read_text()[-2000:]
    [heard_by_caller] = finish_dial(caller, tmp / "dial.json")
    supervisor = json.loads((tmp / "phone.json").read_text())["calls"][0]
    assert supervisor["ended_by"] == "far_end", supervisor  # handing back hangs up on them
    events = _events(config, call_id)
    modes = _modes(events)
    assert [(p, m) for p, m, _ in modes] == [
        ("with_agent", None),
        ("with_agent", None),  # the supervisor joined: briefing
        ("with_human", "whisper"),
        ("with_human", "takeover"),
        ("with_agent", None),  # handed back
    ], modes
    (_, _, whisper), (_, _, takeover), (_, _, handed_back) = modes[2:]
    assert not [
        e
        for e in events
        if e.kind is CallEventKind.PLAYOUT_FLUSHED
        and e.data["utterance_id"] == applied.data["item_id"]
    ], "the caller did not hear all of the whispered answer"

    caller_rec = read_wav(Path(heard_by_caller["recording"]))
    frame_times = heard_by_caller["frame_times_ns"]
    settle = 300_000_000

    def caller_window(start: int, end: int) -> np.ndarray:
        return received_between(caller_rec, frame_times, start + settle, end)

    # Whisper: the agent talks to the caller, who never hears the supervisor; in the
    # takeover the same recording does carry the supervisor's voice.
    assert heard_in(supervisor_says, caller_window(whisper, takeover)) < 0.3
    assert _speech_frames(caller_rec, frame_times, applied.t_mono_ns, answer_end) > 0.4
    # (0.72 was seen on a loaded machine over a short window: clearly there, against < 0.1
    # for the supervisor's noise when absent.)
    assert heard_in(supervisor_says, caller_window(takeover, handed_back)) > 0.6
    # Handed back: the agent speaks again, and the supervisor is gone.
    assert _speech_frames(caller_rec, frame_times, resumed.t_mono_ns, returned_end) > 0.4
    assert (
        heard_in(supervisor_says, caller_window(handed_back, heard_by_caller["ended_mono_ns"]))
        < 0.3
    )
