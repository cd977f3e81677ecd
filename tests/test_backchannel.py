from __future__ import annotations

import pytest

from agent.backchannel import Overlap, is_backchannel, is_stop_request, judge_overlap


@pytest.mark.parametrize(
    "text",
    [
        "uh-huh",
        "uh huh",
        "Uh-huh.",
        "uhhuh",
        "mm-hm",
        "mm hmm",
        "Mm-hmm.",
        "mmhmm",
        "mhm",
        "Mmm.",
        "hmm",
        "yeah",
        "Yeah.",
        "YEAH!",
        "yep",
        "yup",
        "yes",
        "okay",
        "OK.",
        "O.K.",
        "ok",
        "right",
        "Right, right.",
        "sure",
        "I see.",
        "Oh, I see.",
        "got it",
        "Okay, got it.",
        "alright",
        "all right",
        "yeah yeah",
        "yes, that\u2019s right",
        "oh okay",
    ],
)
def test_acknowledgements_are_backchannels(text: str) -> None:
    assert is_backchannel(text, 400)


@pytest.mark.parametrize(
    ("text", "duration_ms"),
    [
        ("yeah but wait", 700),
        ("no stop", 500),
        ("okay what about returns", 1000),
        ("yeah I have a question", 1100),
        ("no", 300),
        ("uh-uh", 400),
        ("stop", 300),
        ("wait", 300),
        ("yeah yeah yeah yeah", 1000),
        ("okay okay got it now", 1100),
        ("sure thing, and also", 900),
        ("yes", 1500),  # long for a "yes": ASR probably dropped the rest
        ("mhm", 1201),
        ("", 300),
        ("...", 300),
        ("right now please", 800),
    ],
)
def test_other_speech_is_not_a_backchannel(text: str, duration_ms: int) -> None:
    assert not is_backchannel(text, duration_ms)


def test_duration_limit_is_inclusive_and_configurable() -> None:
    assert is_backchannel("yeah", 1200)
    assert not is_backchannel("yeah", 1201)
    assert is_backchannel("yeah", 1500, max_ms=2000)
    assert not is_backchannel("yeah okay sure", 600, max_words=2)


def test_negative_duration_is_rejected() -> None:
    with pytest.raises(ValueError, match="duration_ms"):
        is_backchannel("yeah", -1)


@pytest.mark.parametrize(
    "text",
    [
        "stop",
        "Stop!",
        "wait",
        "Wait, what?",
        "hold on",
        "Hold on a second.",
        "hang on",
        "no no",
        "No, no, no.",
        "no stop",
        "No, wait.",
        "yeah but wait",
        "okay hold on",
        "sorry, one second",
        "can you please stop",
        "just a moment",
        "excuse me",
    ],
)
def test_explicit_interruptions_are_stop_requests(text: str) -> None:
    assert is_stop_request(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no",
        "yeah",
        "uh-huh",
        "okay what about returns",
        "I'll wait for the email",
        "don't stop",
        "is there a bus stop nearby",
        "no thanks",
        "one more thing",
    ],
)
def test_other_speech_is_not_a_stop_request(text: str) -> None:
    assert not is_stop_request(text)


@pytest.mark.parametrize(
    ("text", "duration_ms", "overlap"),
    [
        ("uh-huh", 400, Overlap.BACKCHANNEL),
        ("yeah", 900, Overlap.BACKCHANNEL),
        ("", 300, Overlap.BACKCHANNEL),  # a click or a cough
        ("", 1500, Overlap.UNSURE),  # noise, or words the ASR could not read
        ("Um.", 500, Overlap.UNSURE),  # often comes before a question
        ("Uh-uh.", 400, Overlap.UNSURE),  # how Whisper tiny often hears a quick "uh-huh"
        ("Aha", 420, Overlap.UNSURE),
        ("M-f-a", 320, Overlap.UNSURE),  # a garbled syllable
        ("our", 320, Overlap.UNSURE),  # a misheard "Sorry," opening a sentence
        ("no", 300, Overlap.TURN),
        ("No, no.", 450, Overlap.TURN),
        ("wait", 250, Overlap.TURN),
        ("hold on", 450, Overlap.TURN),
        ("What?", 300, Overlap.TURN),
        ("sorry?", 350, Overlap.TURN),
        ("yeah but wait", 700, Overlap.TURN),
        ("okay what about returns", 1000, Overlap.TURN),
        ("Uh-uh, that's not it.", 900, Overlap.TURN),
        ("three words here", 450, Overlap.TURN),  # brief, but a sentence is starting
        ("cancel it", 700, Overlap.TURN),  # two words, longer than a syllable or two
        ("Um.", 900, Overlap.TURN),  # a long sound: the caller is holding the floor
    ],
)
def test_judge_overlap(text: str, duration_ms: int, overlap: Overlap) -> None:
    assert judge_overlap(text, duration_ms) is overlap


def test_judge_overlap_rejects_a_negative_duration() -> None:
    with pytest.raises(ValueError, match="duration_ms"):
        judge_overlap("yeah", -1)
