"""Real SIP calls into a media worker whose lines play a disclosure before the agent.

The worker's disclosures come from the database as `parley sync` leaves it (the audio rendered
by Piper); the agent is the echo session, so what the caller hears after the disclosure shows
that the call was bridged.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from admin.disclosure_audio import audio_dir
from telephony.events import CallEvent, CallEventKind
from tests.support import (
    PARLEY,
    PlatformConfig,
    Running,
    chirp_noise,
    dial,
    echo_match,
    read_wav,
    start_worker,
    write_wav,
)

pytestmark = pytest.mark.sip

NOTICE = "This call is answered by an AI assistant and recorded."


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> PlatformConfig:
    dtmf = {"method": "dtmf", "timeout_s": 2.0, "on_no_response": "hangup"}
    return PlatformConfig(
        tmp_path_factory.mktemp("disclosure"),
        lines=[
            {"name": "main", "numbers": ["100"], "agent": "echo", "disclosure": "notice"},
            {
                "name": "keyed",
                "numbers": ["300"],
                "agent": "echo",
                "disclosure": "notice",
                "consent": dtmf,
            },
            {"name": "broken", "numbers": ["400"], "agent": "echo", "disclosure": "absent"},
            {
                "name": "strict",
                "numbers": ["500"],
                "agent": "echo",
                "disclosure": "absent",
                "disclosure_missing": "refuse",
            },
        ],
        extra={"disclosures": [{"name": "notice", "text": NOTICE, "jurisdiction": "US"}]},
    )


@pytest.fixture(scope="module")
def notice_wav(config: PlatformConfig) -> Path:
    """`parley sync` renders the notice; its file is named by its SHA-256."""
    for command in (["db", "upgrade"], ["sync"]):
        done = subprocess.run(
            [*PARLEY, *command],
            env=config.env(),
            cwd=config.tmp,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")
    [wav] = audio_dir(config.tmp / "var").glob("*.wav")
    assert hashlib.sha256(wav.read_bytes()).hexdigest() == wav.stem
    return wav


@pytest.fixture(scope="module")
def worker(config: PlatformConfig, notice_wav: Path) -> Iterator[Running]:
    running = start_worker(config)
    yield running
    assert running.stop() == 0, running.log()[-3000:]


def _uri(config: PlatformConfig, number: str) -> str:
    return f"sip:{number}@127.0.0.1:{config.worker_base_port}"


def _call_events(config: PlatformConfig, result: dict[str, Any]) -> list[CallEvent]:
    """The events of the call that `result` describes (the latest call the worker started)."""
    started = [e for e in config.events() if e.kind is CallEventKind.STARTED]
    assert started, "the worker recorded no call"
    call_id = started[-1].call_id
    return [e for e in config.events() if e.call_id == call_id]


def _disclosure(events: list[CallEvent]) -> dict[str, Any]:
    found = [e.data for e in events if e.kind is CallEventKind.DISCLOSURE_PLAYED]
    assert len(found) == 1, f"expected one disclosure event, got {found}"
    return dict(found[0])


def _ended(events: list[CallEvent]) -> dict[str, Any]:
    [ended] = [e.data for e in events if e.kind is CallEventKind.ENDED]
    return dict(ended)


def test_the_caller_hears_the_disclosure_first_then_the_agent(
    worker: Running, config: PlatformConfig, notice_wav: Path, tmp_path: Path
) -> None:
    notice = read_wav(notice_wav)
    seconds = len(notice) / 16000
    # The caller stays quiet through the notice, then talks: the echo agent answers.
    chirp = chirp_noise(1.5)
    talk = np.concatenate([np.zeros(int(16000 * (seconds + 1.0))), chirp])
    play = write_wav(tmp_path / "talk.wav", talk)
    [result] = dial(_uri(config, "100"), tmp_path, play=play, hold=1.0, codec="g722")
    assert result["answered"], result
    heard = read_wav(Path(result["recording"]))
    score, lag = echo_match(notice[: 16000 * 2], heard)
    assert score > 0.8, f"the caller did not hear the rendered disclosure (corr {score:.2f})"
    assert lag < 16000 * 0.5, f"the disclosure started {lag / 16:.0f} ms after answer"
    echo_score, echo_lag = echo_match(chirp, heard)
    assert echo_score > 0.8, f"no agent audio after the disclosure (corr {echo_score:.2f})"
    assert echo_lag > lag + len(notice)  # the agent only after the whole notice

    events = _call_events(config, result)
    played = _disclosure(events)
    assert played["disclosure"] == "notice" and played["version"] == 1
    assert played["sha256"] == notice_wav.stem
    assert (played["played"], played["interrupted"]) == (True, False)
    assert (played["consent"], played["consent_method"]) == ("granted", "implied")
    length_ms = (played["end_mono_ns"] - played["start_mono_ns"]) / 1e6
    assert abs(length_ms - seconds * 1000) < 300, length_ms
    assert _ended(events)["reason"] == "hangup"


def test_dtmf_accept_connects_the_agent(
    worker: Running, config: PlatformConfig, tmp_path: Path
) -> None:
    [result] = dial(_uri(config, "300"), tmp_path, dtmf="1", dtmf_at=1.0, hold=5.0)
    assert result["answered"]
    events = _call_events(config, result)
    played = _disclosure(events)
    assert (played["consent"], played["consent_method"], played["interrupted"]) == (
        "granted",
        "dtmf",
        False,
    )
    assert played["next_step"] == "bridge"
    assert _ended(events)["reason"] == "hangup"  # the caller hung up, not the worker


def test_dtmf_decline_ends_the_call_after_a_goodbye(
    worker: Running, config: PlatformConfig, tmp_path: Path
) -> None:
    [result] = dial(_uri(config, "300"), tmp_path, dtmf="2", dtmf_at=1.0, hold=15.0, max_s=20)
    events = _call_events(config, result)
    played = _disclosure(events)
    assert (played["consent"], played["consent_method"]) == ("declined", "dtmf")
    assert _ended(events)["reason"] == "consent_declined"
    talk_s = result["ended_mono_ns"] - result["answered_mono_ns"]
    assert talk_s / 1e9 < 12, "the worker did not end the call"


def test_no_key_in_time_is_no_response_and_ends_the_call(
    worker: Running, config: PlatformConfig, tmp_path: Path
) -> None:
    [result] = dial(_uri(config, "300"), tmp_path, hold=15.0, max_s=20)
    events = _call_events(config, result)
    played = _disclosure(events)
    assert (played["consent"], played["interrupted"]) == ("no_response", False)
    assert _ended(events)["reason"] == "consent_no_response"


def test_hanging_up_during_the_disclosure_is_interrupted_no_response(
    worker: Running, config: PlatformConfig, tmp_path: Path
) -> None:
    [result] = dial(_uri(config, "100"), tmp_path, hold=0.0, max_s=1.0)
    assert result["answered"]
    events = _call_events(config, result)
    played = _disclosure(events)
    assert (played["played"], played["interrupted"], played["consent"]) == (
        True,
        True,
        "no_response",
    )
    assert played["end_mono_ns"] - played["start_mono_ns"] < 2_000_000_000


def test_a_disclosure_without_audio_is_recorded_not_played(
    worker: Running, config: PlatformConfig, tmp_path: Path
) -> None:
    # Line 400 names a disclosure that has no version: the call goes on (echo), and says so.
    chirp = chirp_noise(1.5)
    play = write_wav(tmp_path / "chirp.wav", chirp)
    [result] = dial(_uri(config, "400"), tmp_path, play=play, hold=0.6)
    played = _disclosure(_call_events(config, result))
    assert (played["played"], played["reason"], played["next_step"]) == (
        False,
        "no_version",
        "bridge",
    )
    score, _ = echo_match(chirp[8000:], read_wav(Path(result["recording"])))
    assert score > 0.8, "the call did not go on to the agent"


def test_a_line_that_refuses_calls_without_their_disclosure(
    worker: Running, config: PlatformConfig, tmp_path: Path
) -> None:
    [result] = dial(_uri(config, "500"), tmp_path, hold=5.0, max_s=10)
    events = _call_events(config, result)
    assert _disclosure(events)["next_step"] == "hangup"
    assert _ended(events)["reason"] == "disclosure_unavailable"
