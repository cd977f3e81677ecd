"""The consent rule after a disclosure, and reading the disclosure's audio (no I/O but files)."""

from __future__ import annotations

import hashlib
import wave
from pathlib import Path

import pytest

from telephony.consent import (
    ConsentMode,
    ConsentPolicy,
    ConsentRun,
    DisclosureAudioError,
    NextStep,
    Phase,
    read_pcm,
)

DTMF = ConsentPolicy(mode=ConsentMode.DTMF, on_decline=NextStep.HANGUP)


def test_implied_consent_is_granted_when_the_disclosure_has_played() -> None:
    run = ConsentRun(ConsentPolicy())
    assert run.digit("1") is None  # keys mean nothing under implied consent
    decision = run.played()
    assert decision is not None
    assert (decision.consent, decision.method, decision.interrupted) == (
        "granted",
        "implied",
        False,
    )
    assert decision.next_step is NextStep.BRIDGE


def test_hanging_up_during_the_disclosure_is_interrupted_without_consent() -> None:
    run = ConsentRun(ConsentPolicy())
    decision = run.hung_up()
    assert (decision.consent, decision.interrupted) == ("no_response", True)
    assert run.played() is decision  # nothing changes after the decision


def test_a_key_pressed_during_the_disclosure_is_acted_on_once_it_has_played() -> None:
    run = ConsentRun(DTMF)
    assert run.digit("1") is None
    assert run.phase is Phase.PLAYING  # keys never cut the disclosure short
    assert run.digit("2") is None  # the first answer counts
    decision = run.played()
    assert decision is not None
    assert (decision.consent, decision.method, decision.next_step) == (
        "granted",
        "dtmf",
        NextStep.BRIDGE,
    )


def test_dtmf_decline_after_the_disclosure_follows_the_policy() -> None:
    run = ConsentRun(
        ConsentPolicy(
            mode=ConsentMode.DTMF, on_decline=NextStep.TRANSFER, transfer_to="sip:desk@pbx"
        )
    )
    assert run.played() is None
    assert run.phase is Phase.WAITING
    assert run.digit("5") is None  # not an answer
    decision = run.digit("2")
    assert decision is not None
    assert (decision.consent, decision.next_step) == ("declined", NextStep.TRANSFER)


def test_no_key_in_time_is_no_response() -> None:
    run = ConsentRun(ConsentPolicy(mode=ConsentMode.DTMF, on_no_response=NextStep.BRIDGE))
    assert run.played() is None
    decision = run.timed_out()
    assert decision is not None
    assert (decision.consent, decision.interrupted, decision.next_step) == (
        "no_response",
        False,
        NextStep.BRIDGE,
    )
    hung_up_waiting = ConsentRun(DTMF)
    hung_up_waiting.played()
    assert hung_up_waiting.hung_up().interrupted is False


def test_a_policy_that_cannot_work_is_refused() -> None:
    with pytest.raises(ValueError, match="differ"):
        ConsentPolicy(accept_digit="1", decline_digit="1")
    with pytest.raises(ValueError, match="transfer_to"):
        ConsentPolicy(on_decline=NextStep.TRANSFER)


def _wav(path: Path, *, rate: int = 16000, frames: bytes = b"\x01\x00" * 1600) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(frames)
    return path


def test_read_pcm_checks_the_file_is_the_recorded_audio(tmp_path: Path) -> None:
    path = _wav(tmp_path / "notice.wav")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert read_pcm(path, sha256=sha) == b"\x01\x00" * 1600
    with pytest.raises(DisclosureAudioError) as mismatch:
        read_pcm(path, sha256="0" * 64)
    assert mismatch.value.reason == "audio_mismatch"
    with pytest.raises(DisclosureAudioError) as missing:
        read_pcm(tmp_path / "gone.wav")
    assert missing.value.reason == "audio_missing"
    with pytest.raises(DisclosureAudioError) as rate:
        read_pcm(_wav(tmp_path / "8k.wav", rate=8000))
    assert rate.value.reason == "audio_unreadable"
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not a wav file")
    with pytest.raises(DisclosureAudioError) as unreadable:
        read_pcm(garbage)
    assert unreadable.value.reason == "audio_unreadable"
