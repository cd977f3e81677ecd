"""Real SIP calls into a media worker whose lines play a disclosure before the agent.

The worker's disclosures come from the database as `parley sync` leaves it (the audio rendered
by Piper); the agent is the echo session, so what the caller hears after the disclosure shows
that the call was bridged.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy.orm import Session

from admin.config_sync import latest_version
from admin.db import create_engine
from admin.disclosure_audio import audio_dir
from admin.ingest import FileCarrier
from admin.settings import Settings
from telephony.events import CallEvent, CallEventKind
from telephony.recording import RecordingError, RecordingStore, decrypt, recording_key
from tests.ingest_support import stored_dump
from tests.support import (
    PlatformConfig,
    Running,
    chirp_noise,
    dial,
    echo_match,
    events_from,
    finish_dial,
    read_wav,
    start_worker,
    sync_disclosures,
    write_wav,
)

pytestmark = pytest.mark.sip

NOTICE = "This call is answered by an AI assistant and recorded."
AI_NOTICE = "You are speaking with an automated assistant."
RECORDING_NOTICE = "This call may be recorded. Stay on the line to agree."
CALIFORNIA, BERLIN = "+14155550123", "+4930123456"


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
                "record_calls": True,
            },
            {
                "name": "recorded",
                "numbers": ["600"],
                "agent": "echo",
                "disclosure": "notice",
                "record_calls": True,
                "pci_pause_key": "#",
            },
            {
                "name": "places",
                "numbers": ["700"],
                "agent": "echo",
                "disclosure": "ai",
                "recording_notice": "rec",
                "record_calls": True,
            },
            {
                "name": "barge",
                "numbers": ["800"],
                "agent": "echo",
                "disclosure": "notice",
                "consent": {**dtmf, "barge_in": True},
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
        extra={
            "disclosures": [
                {
                    "name": "notice",
                    "text": NOTICE,
                    "jurisdiction": "US",
                    "covers": ["ai", "recording"],
                },
                {"name": "ai", "text": AI_NOTICE, "jurisdiction": "US", "covers": ["ai"]},
                {
                    "name": "rec",
                    "text": RECORDING_NOTICE,
                    "jurisdiction": "US",
                    "covers": ["recording"],
                },
            ]
        },
    )


@pytest.fixture(scope="module")
def rendered(config: PlatformConfig) -> dict[str, Path]:
    """`parley sync` renders each notice; its file is named by its SHA-256."""
    sync_disclosures(config)
    engine = create_engine(f"sqlite:///{config.tmp / 'var' / 'parley.db'}")
    try:
        with Session(engine) as session:
            versions = {name: latest_version(session, name) for name in ("notice", "ai", "rec")}
    finally:
        engine.dispose()
    wavs = {}
    for name, version in versions.items():
        assert version is not None, name
        wav = audio_dir(config.tmp / "var") / f"{version.audio_sha256}.wav"
        assert hashlib.sha256(wav.read_bytes()).hexdigest() == wav.stem
        wavs[name] = wav
    return wavs


@pytest.fixture(scope="module")
def notice_wav(rendered: dict[str, Path]) -> Path:
    return rendered["notice"]


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


def test_a_key_cuts_the_notice_short_where_the_line_allows_barge_in(
    worker: Running, config: PlatformConfig, notice_wav: Path, tmp_path: Path
) -> None:
    seconds = len(read_wav(notice_wav)) / 16000
    [result] = dial(_uri(config, "800"), tmp_path, dtmf="1", dtmf_at=1.0, hold=3.0)
    assert result["answered"]
    played = _disclosure(_call_events(config, result))
    assert (played["consent"], played["consent_method"], played["barged_in"]) == (
        "granted",
        "dtmf",
        "dtmf",
    )
    assert played["interrupted"] is False  # the caller did not hang up
    assert played["heard_ms"] < (seconds - 1.0) * 1000, (played, seconds)
    length_ms = (played["end_mono_ns"] - played["start_mono_ns"]) / 1e6
    assert length_ms < (seconds - 1.0) * 1000, length_ms
    # The notice is over when cut: on 300 (no barge-in) the same key waits for its end.
    [kept] = dial(_uri(config, "300"), tmp_path, dtmf="1", dtmf_at=1.0, hold=5.0, name="kept")
    whole = _disclosure(_call_events(config, kept))
    assert "barged_in" not in whole
    assert (whole["end_mono_ns"] - whole["start_mono_ns"]) / 1e6 > (seconds - 0.3) * 1000


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


# --- the caller's place ----------------------------------------------------------------------


def _plays(events: list[CallEvent]) -> list[dict[str, Any]]:
    return [dict(e.data) for e in events if e.kind is CallEventKind.DISCLOSURE_PLAYED]


def test_the_callers_place_picks_the_notices_and_whether_the_call_is_recorded(
    worker: Running,
    config: PlatformConfig,
    rendered: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ai, rec = read_wav(rendered["ai"]), read_wav(rendered["rec"])
    chirp = chirp_noise(1.5)
    lead_s = (len(ai) + len(rec)) / 16000 + 1.0
    play = write_wav(tmp_path / "talk.wav", np.concatenate([np.zeros(int(16000 * lead_s)), chirp]))

    # From California (all-party consent, bot disclosure): the AI notice, then the recording
    # notice, then the agent; staying on the line is consent, and the call is recorded.
    # Both callers at once: from California and from Berlin.
    calls = {
        caller: dial(
            _uri(config, "700"),
            tmp_path,
            play=play,
            options=("--caller", caller),
            name=name,
            background=True,
        )
        for caller, name in ((CALIFORNIA, "ca"), (BERLIN, "eu"))
    }
    [ca] = finish_dial(calls[CALIFORNIA], tmp_path / "ca.json")
    [eu] = finish_dial(calls[BERLIN], tmp_path / "eu.json")
    assert ca["answered"] and eu["answered"], (ca, eu)
    heard = read_wav(Path(ca["recording"]))
    (ai_score, ai_lag), (rec_score, rec_lag) = echo_match(ai, heard), echo_match(rec, heard)
    assert ai_score > 0.8 and rec_score > 0.8, (ai_score, rec_score)
    assert rec_lag >= ai_lag + len(ai) - 800, "the recording notice overlapped the AI notice"
    assert echo_match(chirp, heard)[0] > 0.8, "the call did not go on to the agent"
    events = events_from(config, CALIFORNIA)
    first, second = _plays(events)
    assert (first["disclosure"], first["covers"], first["consent"]) == (
        "ai",
        ["ai"],
        "not_required",
    )
    assert (second["disclosure"], second["covers"]) == ("rec", ["recording"])
    assert (second["consent"], second["consent_method"]) == ("granted", "implied")
    assert second["sha256"] == rendered["rec"].stem
    assert first["jurisdiction"] == second["jurisdiction"]
    assert first["jurisdiction"]["places"] == ["US", "US-CA"]
    assert first["jurisdiction"]["recording"] == "all_party"
    assert first["jurisdiction"]["ai_notice_required"] is True
    assert [r["event"] for r in _recording_events(events)] == ["started", "finished"]

    # From Berlin (EU: an explicit yes, which this line never asks for): the AI notice only,
    # then the agent; the call is not recorded, and the event says why.
    heard = read_wav(Path(eu["recording"]))
    assert echo_match(ai, heard)[0] > 0.8
    assert echo_match(rec, heard)[0] < 0.5, "the recording notice played to an EU caller"
    assert echo_match(chirp, heard)[0] > 0.8, "the call did not go on to the agent"
    events = events_from(config, BERLIN)
    [only] = _plays(events)
    assert (only["disclosure"], only["consent"]) == ("ai", "granted")
    assert only["jurisdiction"]["rules"] == ["US", "EU"]
    [refused] = _recording_events(events)
    assert refused["event"] == "not_allowed"
    assert "EU" in refused["reason"] and "explicit" in refused["reason"], refused
    assert not _store(config, monkeypatch).path(events[0].call_id).exists()


# --- recordings -----------------------------------------------------------------------------


def _recording_events(events: list[CallEvent]) -> list[dict[str, Any]]:
    return [dict(e.data) for e in events if e.kind is CallEventKind.RECORDING]


def _store(config: PlatformConfig, monkeypatch: pytest.MonkeyPatch) -> RecordingStore:
    """The worker's recording folder and key, as its settings give them."""
    monkeypatch.setenv("PARLEY_CONFIG", str(config.write()))
    return Settings().recording_store()


def test_a_consenting_caller_is_recorded_in_stereo_after_the_disclosure(
    worker: Running,
    config: PlatformConfig,
    notice_wav: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    notice = read_wav(notice_wav)
    seconds = len(notice) / 16000
    chirp = chirp_noise(1.5)
    talk = np.concatenate([np.zeros(int(16000 * (seconds + 1.0))), chirp])
    play = write_wav(tmp_path / "talk.wav", talk)
    [result] = dial(_uri(config, "600"), tmp_path, play=play, hold=1.0, codec="g722")
    assert result["answered"], result
    events = _call_events(config, result)
    assert _disclosure(events)["consent"] == "granted"
    recorded = _recording_events(events)
    assert [r["event"] for r in recorded] == ["started", "finished"]
    finished = recorded[-1]
    store = _store(config, monkeypatch)
    path = store.folder / finished["file"]
    stored = path.read_bytes()
    assert hashlib.sha256(stored).hexdigest() == finished["file_sha256"]
    audio = decrypt(path, key=store.key)
    assert hashlib.sha256(audio.pcm).hexdigest() == finished["pcm_sha256"]
    assert audio.pcm[:3200] not in stored  # the file holds no plaintext audio
    stereo = np.frombuffer(audio.pcm, dtype="<i2").reshape(-1, 2).astype(np.float64)
    caller, agent = stereo[:, 0], stereo[:, 1]
    assert abs(len(caller) / 16000 - finished["duration_ms"] / 1000) < 0.05
    # The caller on the left, what the caller heard (the echo agent) on the right, in time.
    caller_score, caller_lag = echo_match(chirp, caller)
    agent_score, agent_lag = echo_match(chirp, agent)
    assert caller_score > 0.8 and agent_score > 0.8, (caller_score, agent_score)
    assert 0 <= agent_lag - caller_lag < 16000 * 0.3, (caller_lag, agent_lag)
    # Recording began with consent, after the notice: none of the notice is in it.
    notice_score, _ = echo_match(notice[: 16000 * 2], agent)
    assert notice_score < 0.5, notice_score
    with pytest.raises(RecordingError):
        decrypt(path, key=recording_key(b"not the worker's key"))


def test_a_caller_who_declines_is_never_recorded(
    worker: Running, config: PlatformConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [result] = dial(_uri(config, "300"), tmp_path, dtmf="2", dtmf_at=1.0, hold=15.0, max_s=20)
    events = _call_events(config, result)
    assert _disclosure(events)["consent"] == "declined"
    assert _recording_events(events) == []
    call_id = events[0].call_id
    assert not _store(config, monkeypatch).path(call_id).exists()


def test_a_pci_pause_by_key_is_silence_and_keeps_the_digits_out_of_every_event(
    worker: Running,
    config: PlatformConfig,
    notice_wav: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seconds = len(read_wav(notice_wav)) / 16000
    talk = chirp_noise(seconds + 10.0, seed=11)  # 16 keys take a few seconds to send
    play = write_wav(tmp_path / "long.wav", talk)
    # '#' pauses, a card number keyed in, '#' resumes (the line's pause key).
    [result] = dial(
        _uri(config, "600"), tmp_path, play=play, dtmf="#4111111111111111#",
        dtmf_at=seconds + 2.0, hold=0.5,
    )  # fmt: skip
    assert result["answered"], result
    events = _call_events(config, result)
    recorded = _recording_events(events)
    assert [r["event"] for r in recorded] == ["started", "paused", "resumed", "finished"]
    assert recorded[1]["by"] == recorded[2]["by"] == "dtmf"
    [pause] = recorded[-1]["pauses"]
    assert pause["by"] == "dtmf" and pause["end_ms"] - pause["start_ms"] > 500
    pressed = [e.data for e in events if e.kind is CallEventKind.DTMF]
    assert pressed == [{"digit": "#"}] + [{"masked": True, "pci": True}] * 16 + [{"digit": "#"}]
    spooled = "".join(p.read_text() for p in (config.tmp / "var" / "events").glob("*.jsonl"))
    assert "4111111111111111" not in spooled
    assert re.search(r'"digits?":"[0-9]', spooled) is None  # no keyed digit, of any call
    # Stored: the spool (a copy) through the ingester into a database of its own, dumped whole.
    dumped = _stored_dump(config.tmp / "var" / "events", tmp_path)
    assert events[0].call_id in dumped  # the call is there...
    assert "4111111111111111" not in dumped  # ...its keyed card number is not
    assert '"masked": true, "pci": true' in dumped  # (event data is dumped as JSON objects)
    assert re.search(r'"digits?": ?"[0-9]', dumped) is None
    store = _store(config, monkeypatch)
    audio = decrypt(store.folder / recorded[-1]["file"], key=store.key)
    stereo = np.frombuffer(audio.pcm, dtype="<i2").reshape(-1, 2)
    start, end = pause["start_ms"] * 16, pause["end_ms"] * 16
    assert not stereo[start + 960 : end - 960].any(), "the paused stretch is not silence"
    assert np.abs(stereo[:start, 0]).max() > 1000, "the caller was not recorded before it"
    assert np.abs(stereo[end + 1600 :, 0]).max() > 1000, "nor after it"


def _stored_dump(spool_folder: Path, tmp: Path) -> str:
    """Every row the ingester stores from a copy of the worker's spool, as one text."""
    copy = tmp / "events"
    copy.mkdir()
    for segment in spool_folder.glob("*.jsonl"):
        shutil.copy(segment, copy / segment.name)
    return stored_dump(FileCarrier(copy), tmp)
