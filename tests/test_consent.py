"""The consent rule after a disclosure, and reading the disclosure's audio (no I/O but files)."""

from __future__ import annotations

import hashlib
import wave
from pathlib import Path

import pytest

from admin.disclosure_settings import ConsentSettings
from telephony.consent import (
    ConsentMode,
    ConsentPolicy,
    ConsentRun,
    DisclosureAudioError,
    NextStep,
    Phase,
    read_pcm,
    spoken_answer,
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


# --- spoken consent -------------------------------------------------------------------------

SPOKEN = ConsentPolicy(mode=ConsentMode.SPOKEN, on_decline=NextStep.BRIDGE)


@pytest.mark.parametrize(
    ("words", "answer"),
    [
        ("Yes.", "granted"),
        ("Yeah, sure.", "granted"),
        ("Sure, go ahead.", "granted"),
        ("That's fine.", "granted"),
        ("I consent", "granted"),
        ("No problem.", "granted"),  # a no-word that says yes
        ("Why not?", "granted"),
        ("no", "declined"),
        ("No, thank you.", "declined"),
        ("I don't agree", "declined"),
        ("Please don\u2019t record this.", "declined"),
        ("I do not consent", "declined"),
        ("Yes... no, actually.", "declined"),  # a no anywhere wins
        ("No problem, but don't record.", "declined"),
        ("not okay", "declined"),
        ("Um, what?", None),
        ("Thank you.", None),  # what Whisper makes of a breath
        ("I'm not sure.", None),  # unsure is no answer yet: the wait goes on
        ("", None),
        ("...", None),
    ],
)
def test_a_spoken_answer_is_read_as_yes_no_or_nothing(words: str, answer: str | None) -> None:
    assert spoken_answer(words) == answer


def test_a_spoken_yes_during_the_notice_counts_once_the_notice_has_played() -> None:
    run = ConsentRun(SPOKEN)
    assert run.spoken("Um, what?") is None
    assert run.spoken("Yes, that's fine.") is None  # heard, not acted on while the notice plays
    assert run.spoken("No.") is None  # the first answer counts
    decision = run.played()
    assert decision is not None
    assert (decision.consent, decision.method, decision.said) == (
        "granted",
        "speech",
        "Yes, that's fine.",
    )


def test_a_spoken_no_after_the_notice_decides_at_once_and_goes_on_as_the_line_says() -> None:
    run = ConsentRun(SPOKEN)
    assert run.played() is None  # waiting for an answer
    assert run.spoken("Sorry?") is None
    decision = run.spoken("No, I don't agree.")
    assert decision is not None
    assert (decision.consent, decision.method) == ("declined", "speech")
    assert decision.next_step is NextStep.BRIDGE  # on_decline: agent


def test_a_line_with_spoken_consent_still_takes_keys_and_says_how() -> None:
    run = ConsentRun(SPOKEN)
    run.played()
    decision = run.digit("1")
    assert decision is not None and (decision.consent, decision.method) == ("granted", "dtmf")
    assert decision.said == ""


def test_no_spoken_answer_in_time_is_no_response_sought_by_speech() -> None:
    run = ConsentRun(SPOKEN)
    run.played()
    decision = run.timed_out()
    assert decision is not None and (decision.consent, decision.method) == (
        "no_response",
        "speech",
    )


def test_words_mean_nothing_to_a_keyed_or_implied_consent() -> None:
    for policy in (DTMF, ConsentPolicy()):
        run = ConsentRun(policy)
        assert run.spoken("Yes") is None
        if policy.mode is ConsentMode.DTMF:
            assert run.played() is None  # still waiting for a key


def test_the_settings_offer_the_agent_on_decline_and_say_whether_words_are_kept() -> None:
    declined_to_agent = ConsentSettings(method="spoken", on_decline="agent").policy()
    assert declined_to_agent.mode is ConsentMode.SPOKEN
    assert declined_to_agent.on_decline is NextStep.BRIDGE
    assert declined_to_agent.keep_words is False  # by default, nothing said is stored
    assert ConsentSettings(transcripts="keep").policy().keep_words is True


def test_an_answer_before_the_notice_that_asks_is_no_answer() -> None:
    # An AI notice plays first, asking nothing; the recording notice after it asks.
    run = ConsentRun(SPOKEN, asking=False)
    assert run.digit("1") is None and run.spoken("Yes.") is None
    run.asking = True
    assert run.spoken("No, I don't agree.") is None  # heard while the second notice plays
    decision = run.played()
    assert decision is not None and decision.consent == "declined"


def test_barge_in_is_off_unless_the_line_allows_it() -> None:
    assert ConsentSettings().policy().barge_in is False
    assert ConsentSettings(barge_in=True).policy().barge_in is True
