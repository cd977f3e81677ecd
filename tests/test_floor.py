"""The floor state machine (agent/floor.py), on timelines of 32 ms VAD windows."""

from __future__ import annotations

import pytest

from agent.backchannel import Overlap, judge_onset
from agent.floor import Act, Floor, FloorConfig, FloorControl

W = 32  # ms per VAD window


def feed(floor: FloorControl, pattern: str, t_ms: int = 0) -> tuple[list[tuple[int, Act]], int]:
    """Feeds windows: 'v' voiced, '.' silent. Returns (window end time, act) pairs."""
    acts: list[tuple[int, Act]] = []
    for mark in pattern:
        t_ms += W
        acts += [(t_ms, act) for act in floor.window(t_ms, mark == "v", W)]
    return acts, t_ms


def state(floor: FloorControl) -> Floor:
    return floor.state  # read afresh: each act moves it


def talking() -> FloorControl:
    floor = FloorControl()
    floor.agent_audible()
    return floor


def test_nothing_is_contested_while_the_agent_is_quiet() -> None:
    floor = FloorControl()
    acts, _ = feed(floor, "vvvvvvvvvv" * 4)
    assert acts == [] and state(floor) is Floor.OPEN and not floor.agent_has_floor


def test_a_click_is_nothing_and_never_stops_the_agent() -> None:
    floor = talking()
    acts, _ = feed(floor, "v.......")
    assert acts == [] and state(floor) is Floor.AGENT
    acts, _ = feed(floor, "vv..")  # contested (64 ms), but not speech (96 ms)
    assert [a for _, a in acts] == [Act.IGNORED]
    assert floor.decided is not None and floor.decided.reason == "noise"
    assert state(floor) is Floor.AGENT


def test_the_agent_talks_on_while_the_first_words_are_decoded() -> None:
    floor = talking()
    acts, t = feed(floor, "vvvvv")
    assert state(floor) is Floor.CONTESTED
    assert acts == [(160, Act.DECODE_ONSET)]  # five windows: 160 ms of voice
    assert floor.onset_words("Yeah") == []  # may be a back-channel: keep talking
    acts, t = feed(floor, "vvv..", t)
    # A second look at 256 ms of voice (eight windows), then the overlap's end.
    assert acts == [(256, Act.DECODE_ONSET), (320, Act.DECODE_OVERLAP)]
    assert floor.onset_words("Yeah, yeah") == []
    assert state(floor) is Floor.SETTLING
    assert floor.overlap_words("Yeah, yeah.") == [Act.IGNORED]
    assert floor.decided is not None and floor.decided.reason == "backchannel"
    assert floor.decided.voiced_ms == 256 and floor.decided.onset_ms == 0
    assert state(floor) is Floor.AGENT


@pytest.mark.parametrize("first", ["Wait,", "No", "Stop.", "What?", "Sorry,", "How do I"])
def test_first_words_that_take_the_floor_stop_the_agent_at_once(first: str) -> None:
    floor = talking()
    feed(floor, "vvvvv")
    assert floor.onset_words(first) == [Act.STOP]
    assert floor.decided is not None
    assert (floor.decided.reason, floor.decided.text) == ("onset_words", first)
    assert state(floor) is Floor.OPEN
    # What the caller says next is their turn: nothing more to contest.
    acts, _ = feed(floor, "vvvvvvvv", 160)
    assert acts == []


def test_voice_longer_than_any_back_channel_takes_the_floor_whatever_it_says() -> None:
    floor = talking()
    acts, _ = feed(floor, "v" * 26)  # 832 ms
    assert acts[-1] == (832, Act.STOP)
    assert floor.decided is not None and floor.decided.reason == "too_long"


def test_an_overlap_whose_words_are_a_turn_stops_the_agent_late() -> None:
    floor = talking()
    feed(floor, "vvvvvvv..")
    assert state(floor) is Floor.SETTLING
    assert floor.overlap_words("I need a refund") == [Act.STOP]
    assert floor.decided is not None and floor.decided.reason == "words"


def test_an_unplaceable_sound_settles_on_silence_or_opens_a_turn() -> None:
    floor = talking()
    _, t = feed(floor, "vvvvv..")
    assert floor.overlap_words("Aha.") == []
    assert state(floor) is Floor.UNSURE
    acts, _ = feed(floor, "......", t)  # 64 + 192 ms of silence
    assert [a for _, a in acts] == [Act.IGNORED]
    assert floor.decided is not None and floor.decided.reason == "unsure"

    floor = talking()
    _, t = feed(floor, "vvvvv..")
    floor.overlap_words("Aha.")
    acts, _ = feed(floor, "..v", t)
    assert [a for _, a in acts] == [Act.STOP]
    assert floor.decided is not None
    assert (floor.decided.reason, floor.decided.text) == ("went_on", "Aha.")


def test_words_that_come_back_after_the_floor_moved_on_are_ignored() -> None:
    floor = talking()
    feed(floor, "vvvvvvvvv" * 3)  # too long: stopped
    assert floor.onset_words("yeah") == [] and floor.overlap_words("yeah") == []
    floor = talking()
    feed(floor, "vvvvv")
    assert floor.overlap_words("no") == []  # not settling yet: the onset decides first


def test_more_voice_while_the_words_are_decoded_is_the_same_overlap() -> None:
    floor = talking()
    _, t = feed(floor, "vvvvv..")
    assert state(floor) is Floor.SETTLING
    acts, t = feed(floor, "vvv..", t)
    assert [a for _, a in acts] == [Act.DECODE_ONSET, Act.DECODE_OVERLAP]
    assert floor.overlap_words("Mm-hmm, yeah.") == [Act.IGNORED]
    assert floor.decided is not None and floor.decided.voiced_ms == 256


def test_the_agent_finishing_hands_the_floor_to_the_caller() -> None:
    floor = talking()
    feed(floor, "vvv")
    assert state(floor) is Floor.CONTESTED
    floor.agent_quiet()
    assert state(floor) is Floor.OPEN and floor.decided is None
    # An overlap being decoded when the agent finished still gets its verdict.
    floor = talking()
    feed(floor, "vvvvvvv..")
    floor.agent_quiet()
    assert state(floor) is Floor.SETTLING
    assert floor.overlap_words("no that's wrong") == [Act.STOP]


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        FloorConfig(decide_ms=1000, max_backchannel_ms=800)
    with pytest.raises(ValueError):
        FloorConfig(hangover_ms=0)


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("", Overlap.BACKCHANNEL),
        ("Yeah", Overlap.BACKCHANNEL),
        ("Uh...", Overlap.BACKCHANNEL),
        ("Mm-hmm", Overlap.BACKCHANNEL),
        ("I", Overlap.BACKCHANNEL),  # "I see" begun
        ("I should.", Overlap.BACKCHANNEL),  # Whisper's start of "I see"
        ("Okay, got", Overlap.BACKCHANNEL),
        ("Wait", Overlap.TURN),
        ("No", Overlap.TURN),
        ("Hold on", Overlap.TURN),
        ("Why", Overlap.TURN),
        ("Bye.", Overlap.BACKCHANNEL),  # one unknown word: the whole overlap decides
        ("R U S R U", Overlap.BACKCHANNEL),  # letters: a sound Whisper could not place
        ("Yeah, hold on", Overlap.TURN),
        ("Excuse me", Overlap.TURN),
    ],
)
def test_judge_onset(text: str, verdict: Overlap) -> None:
    assert judge_onset(text) is verdict


def test_a_second_look_catches_first_words_the_first_decode_missed() -> None:
    floor = talking()
    acts, t = feed(floor, "vvvvv")
    assert floor.onset_words("") == []  # nothing legible in the first 160 ms yet
    acts, t = feed(floor, "vvv", t)
    assert acts == [(256, Act.DECODE_ONSET)]
    assert floor.onset_words("Sorry.") == [Act.STOP]
    acts, _ = feed(floor, "vvvvvvvvvv", t)
    assert acts == []  # the caller has the floor now
