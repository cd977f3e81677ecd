from __future__ import annotations

from dataclasses import dataclass

import pytest

from agent.turns import (
    Ending,
    EndReason,
    HesitationAwareTurns,
    TurnConfig,
    TurnDecision,
    TurnDetector,
    classify_ending,
    is_filled_pause,
)

TICK_MS = 20


@dataclass(frozen=True)
class Start:
    t_ms: int


@dataclass(frozen=True)
class Stop:
    t_ms: int


@dataclass(frozen=True)
class Text:
    t_ms: int
    text: str


@dataclass(frozen=True)
class Judged:
    """The engine's responder did (or did not) take `text` as a request it can answer."""

    t_ms: int
    text: str
    understood: bool = True
    number_taken: bool = False  # and took the whole number it asked for


@dataclass(frozen=True)
class Filler:
    """The audio after which the ASR wrote `text` ended in a filled pause."""

    t_ms: int
    text: str


Event = Start | Stop | Text | Judged | Filler


def play(
    events: list[Event], until_ms: int, detector: TurnDetector | None = None
) -> list[TurnDecision]:
    """Feeds events in time order with a tick every 20 ms, as the engine does per frame."""
    turns = detector or HesitationAwareTurns()
    pending = sorted(events, key=lambda e: e.t_ms)
    decisions: list[TurnDecision] = []
    for now in range(0, until_ms + 1, TICK_MS):
        while pending and pending[0].t_ms <= now:
            event = pending.pop(0)
            match event:
                case Start(t_ms):
                    turns.speech_started(t_ms)
                case Stop(t_ms):
                    turns.speech_stopped(t_ms)
                case Text(t_ms, text):
                    turns.partial_transcript(text, t_ms)
                case Judged(_, text, understood, number_taken):
                    turns.judged(text, understood=understood, number_taken=number_taken)
                case Filler(_, text):
                    turns.heard_filler(text)
        decision = turns.tick(now)
        if decision is not None:
            decisions.append(decision)
    return decisions


def test_question_then_short_silence_ends_the_turn() -> None:
    decisions = play([Start(0), Text(900, "what are your hours?"), Stop(1000)], until_ms=1300)
    assert decisions == [
        TurnDecision(reason=EndReason.QUESTION, wait_ms=200, silence_ms=200, at_ms=1200)
    ]


def test_complete_sentence_ends_after_a_short_wait() -> None:
    (decision,) = play([Start(0), Text(900, "I need a refund."), Stop(1000)], until_ms=1400)
    assert (decision.reason, decision.silence_ms) == (EndReason.COMPLETE, 260)


def test_filled_pause_is_not_the_end_and_resumed_speech_continues_the_turn() -> None:
    events: list[Event] = [
        Start(0),
        Text(1500, "my order number is um"),
        Stop(1600),
        Start(2600),  # 1.0 s later the caller finds the number
        Text(3800, "my order number is um 4 5 6 7."),
        Stop(4000),
    ]
    assert play(events, until_ms=3900) == []
    # Ending in digits, the turn waits in case more are coming (numbers are read in groups).
    (decision,) = play(events, until_ms=5400)
    assert decision.reason is EndReason.DIGITS
    assert decision.at_ms == 5300
    # The agent has the number it wanted: the turn ends as for any request it understood.
    said = "my order number is um 4 5 6 7."
    (decision,) = play([*events, Judged(3900, said, number_taken=True)], until_ms=4400)
    assert (decision.reason, decision.at_ms) == (EndReason.UNDERSTOOD, 4300)


@pytest.mark.parametrize(
    "text",
    [
        "I want to",
        "I want to ...",
        "I want to\u2026",
        "my order number is",
        "My order number is.",
        "it's about",
        "so I was calling because",
        "and the",
        "uh",
        "Hmm.",
        "I'd like to talk to someone about my",
    ],
)
def test_mid_sentence_pause_of_1_5_s_is_not_the_end(text: str) -> None:
    events: list[Event] = [Start(0), Text(800, text), Stop(1000)]
    assert play(events, until_ms=1000 + 1500) == []
    (decision,) = play(events, until_ms=1000 + 2500)
    assert decision.reason is EndReason.HESITATION
    assert decision.silence_ms == 2000


def test_hard_cap_ends_the_turn_whatever_the_text() -> None:
    patient = TurnConfig(hesitation_wait_ms=8000, hard_cap_ms=2500)
    events: list[Event] = [Start(0), Text(800, "my account number is um"), Stop(1000)]
    (decision,) = play(events, until_ms=6000, detector=HesitationAwareTurns(patient))
    assert decision == TurnDecision(
        reason=EndReason.HARD_CAP, wait_ms=2500, silence_ms=2500, at_ms=3500
    )


def test_no_transcript_uses_the_default_wait() -> None:
    (decision,) = play([Start(0), Stop(1000)], until_ms=2000)
    assert (decision.reason, decision.silence_ms) == (EndReason.NO_TRANSCRIPT, 600)


@pytest.mark.parametrize(
    ("text", "arrives_ms", "reason", "ends_at_ms"),
    [
        # Arrives inside the default wait and shortens it: ends when the shorter wait is over,
        # or at once if that is already past.
        ("what are your hours?", 1100, EndReason.QUESTION, 1200),
        ("what are your hours?", 1400, EndReason.QUESTION, 1400),
        # Arrives inside the default wait and lengthens it past the 600 ms default.
        ("my order number is", 1400, EndReason.HESITATION, 3000),
        ("I need help with billing", 1300, EndReason.UNKNOWN, 1500),
    ],
)
def test_late_transcript_is_re_evaluated(
    text: str, arrives_ms: int, reason: EndReason, ends_at_ms: int
) -> None:
    (decision,) = play([Start(0), Stop(1000), Text(arrives_ms, text)], until_ms=4000)
    assert (decision.reason, decision.at_ms) == (reason, ends_at_ms)
    assert decision.silence_ms == ends_at_ms - 1000


def test_speech_resuming_cancels_the_pending_end() -> None:
    events: list[Event] = [
        Start(0),
        Text(900, "I need a refund."),
        Stop(1000),
        Start(1200),  # 200 ms: before the 250 ms wait ran out
        Text(1900, "I need a refund. For the blue jacket."),
        Stop(2000),
    ]
    (decision,) = play(events, until_ms=3000)
    assert (decision.reason, decision.at_ms) == (EndReason.COMPLETE, 2260)


def test_breath_after_a_hesitation_keeps_the_long_wait() -> None:
    # The VAD fires on a breath and the ASR has nothing new to say about it: the caller is still
    # looking for the number, so the short no-transcript wait must not apply.
    events: list[Event] = [
        Start(0),
        Text(1500, "my order number is um"),
        Stop(1600),
        Start(2600),
        Stop(2700),
    ]
    assert play(events, until_ms=2700 + 1500) == []
    (decision,) = play(events, until_ms=5000)
    assert (decision.reason, decision.silence_ms) == (EndReason.HESITATION, 2000)


def test_resumed_speech_without_a_new_transcript_waits_at_least_the_default() -> None:
    events: list[Event] = [
        Start(0),
        Text(900, "I need a refund."),
        Stop(1000),
        Start(1100),
        Stop(1800),
    ]
    (decision,) = play(events, until_ms=3000)
    assert (decision.reason, decision.silence_ms) == (EndReason.NO_TRANSCRIPT, 600)


def test_one_decision_per_turn_and_late_partials_do_not_leak() -> None:
    turns = HesitationAwareTurns()
    turns.speech_started(0)
    turns.partial_transcript("What are your hours?", 900)
    turns.speech_stopped(1000)
    assert turns.tick(1250) is not None
    turns.partial_transcript("What are your hours? And the", 1300)
    assert turns.tick(1400) is None
    turns.speech_started(2000)
    turns.speech_stopped(2500)
    decision = turns.tick(3100)
    assert decision is not None and decision.reason is EndReason.NO_TRANSCRIPT


def test_reset_drops_the_pending_turn() -> None:
    turns = HesitationAwareTurns()
    turns.speech_started(0)
    turns.speech_stopped(500)
    turns.reset()
    assert turns.tick(5000) is None


def test_ticks_going_backwards_are_rejected_but_late_vad_events_are_not() -> None:
    turns = HesitationAwareTurns()
    turns.tick(1000)
    with pytest.raises(ValueError, match="monotonic"):
        turns.tick(999)
    # A VAD reports a stop after its hangover: the event's time lies before the last tick.
    turns.speech_started(900)
    turns.speech_stopped(980)
    turns.partial_transcript("what time do you open?", 990)
    decision = turns.tick(1400)
    assert decision is not None and decision.silence_ms == 420


def test_words_the_agent_understood_end_the_turn_sooner() -> None:
    events: list[Event] = [Start(0), Stop(1000), Text(1050, "you price match")]
    (unsure,) = play(events, until_ms=1800)
    assert (unsure.reason, unsure.silence_ms) == (EndReason.UNKNOWN, 500)
    (sure,) = play([*events, Judged(1100, "you price match")], until_ms=1800)
    assert (sure.reason, sure.silence_ms) == (EndReason.UNDERSTOOD, 300)


@pytest.mark.parametrize(
    ("text", "understood", "reason", "silence_ms"),
    [
        ("I ordered them, there is.", False, EndReason.NOT_UNDERSTOOD, 1700),
        ("I ordered them, there is.", True, EndReason.COMPLETE, 260),
        ("what's the weather on mars?", False, EndReason.NOT_UNDERSTOOD, 1700),
        ("purple elephant tuesday", False, EndReason.NOT_UNDERSTOOD, 1700),
        ("um so", False, EndReason.HESITATION, 2000),  # not shortened, not lengthened
    ],
)
def test_a_clear_ending_the_agent_could_not_make_sense_of_waits_longer(
    text: str, understood: bool, reason: EndReason, silence_ms: int
) -> None:
    events: list[Event] = [Start(0), Stop(1000), Text(1050, text), Judged(1100, text, understood)]
    (decision,) = play(events, until_ms=3500)
    assert (decision.reason, decision.silence_ms) == (reason, silence_ms)


@pytest.mark.parametrize(
    "events",
    [
        # A hesitation cue outweighs understanding: "where is my order and" is not finished.
        [Start(0), Stop(1000), Text(1050, "where is my order and"), Judged(1100, "x")],
        # Understanding of older words says nothing about the newer ones.
        [
            Start(0),
            Stop(1000),
            Text(1050, "you price match"),
            Judged(1060, "you price"),
        ],
        # The caller spoke on after the words were understood: the hint is gone.
        [
            Start(0),
            Stop(600),
            Text(650, "you price match"),
            Judged(700, "you price match"),
            Start(800),
            Stop(1000),
            Text(1050, "you price match on line orders"),
        ],
    ],
)
def test_understanding_does_not_shorten_other_waits(events: list[Event]) -> None:
    decisions = play(events, until_ms=3500)
    assert decisions and decisions[0].reason is not EndReason.UNDERSTOOD
    assert decisions[0].silence_ms >= 500


def test_config_rejects_non_positive_waits() -> None:
    with pytest.raises(ValueError, match="complete_wait_ms"):
        TurnConfig(complete_wait_ms=0)


@pytest.mark.parametrize(
    ("text", "ending"),
    [
        ("what are your hours?", Ending.QUESTION),
        ("what are your hours", Ending.QUESTION),
        ("so how do I reset my password", Ending.QUESTION),
        ("Do you know where it is?", Ending.QUESTION),
        ("What does it look like?", Ending.QUESTION),
        ("I need a refund.", Ending.COMPLETE),
        ("I think so.", Ending.COMPLETE),
        ("about a week or so", Ending.COMPLETE),
        ("I don't know what it is.", Ending.COMPLETE),
        ("my order number is um", Ending.HESITATION),
        ("Ummm.", Ending.HESITATION),
        ("errr", Ending.HESITATION),
        ("my order number is", Ending.HESITATION),
        ("My order number is.", Ending.HESITATION),
        ("I want to", Ending.HESITATION),
        ("it\u2019s about", Ending.HESITATION),
        ("it's", Ending.HESITATION),
        ("I was going to the", Ending.HESITATION),
        ("I called because.", Ending.HESITATION),
        ("apples and", Ending.HESITATION),
        ("it was sent to", Ending.HESITATION),
        ("it's, like", Ending.HESITATION),
        ("hold on.", Ending.HESITATION),
        ("let me check", Ending.HESITATION),
        ("and then I-", Ending.HESITATION),
        ("I need help with billing", Ending.UNKNOWN),
        ("Uh-uh.", Ending.COMPLETE),  # a no, not a filled pause
        ("uh-huh", Ending.COMPLETE),
        ("Mm-hmm?", Ending.QUESTION),
        ("and uh", Ending.HESITATION),
        ("My card number is 4-1 one one", Ending.DIGITS),  # Whisper's spelling of a group
        ("four one one one.", Ending.DIGITS),  # ASR's full stop is the pause between groups
        ("it's 4111", Ending.DIGITS),
        ("forty one eleven", Ending.DIGITS),
        ("I'd like two.", Ending.COMPLETE),  # one number word ends many a sentence
        ("I have one question", Ending.UNKNOWN),
        ("Okay, thank you.", Ending.PRE_CLOSING),  # "Goodbye." often follows
        ("That's all I needed, thanks", Ending.PRE_CLOSING),
        ("Great, thank you so much!", Ending.PRE_CLOSING),
        ("thank you for your help", Ending.PRE_CLOSING),
        ("Okay, thank you. Goodbye.", Ending.COMPLETE),
        ("That's all I needed, thanks, bye.", Ending.COMPLETE),
        ("Okay.", Ending.COMPLETE),  # an acknowledgement alone closes nothing
        ("Thanks, what about Sunday?", Ending.QUESTION),
        ("thank you um", Ending.HESITATION),
        ("", Ending.UNKNOWN),
        ("   ", Ending.UNKNOWN),
        ("?", Ending.UNKNOWN),
    ],
)
def test_classify_ending(text: str, ending: Ending) -> None:
    assert classify_ending(text) is ending


def test_thanks_waits_for_the_goodbye_that_may_follow() -> None:
    # "Okay, thank you. … Goodbye.": a 400 ms breath after the thanks is not the end ...
    events: list[Event] = [
        Start(0),
        Text(1200, "Okay, thank you."),
        Judged(1250, "Okay, thank you."),
        Stop(1300),
        Start(1700),
        Text(2500, "Okay, thank you. Goodbye."),
        Stop(2600),
    ]
    (decision,) = play(events, until_ms=3500)
    assert decision.reason is EndReason.COMPLETE and decision.at_ms >= 2600 + 250
    # ... but thanks followed by silence is answered, after the pre-closing's wait.
    (alone,) = play(events[:4], until_ms=2500)
    assert (alone.reason, alone.wait_ms) == (EndReason.PRE_CLOSING, 700)


def test_default_waits_meet_the_targets() -> None:
    config = TurnConfig()
    assert config.question_wait_ms <= config.complete_wait_ms <= 350
    assert config.hesitation_wait_ms > 1500
    assert 1000 < config.digits_wait_ms < config.hard_cap_ms  # past a pause between groups
    assert config.hard_cap_ms >= config.hesitation_wait_ms


def test_a_number_read_in_groups_is_not_cut_between_groups() -> None:
    """A 16-digit card number in groups of four with 900 ms between them: one turn, ended
    after the last group."""
    events: list[Event] = []
    text = "My card number is"
    groups = ["four one one one", "one one one one", "two two two two", "three three three three"]
    t = 0
    for group in groups:
        text = f"{text} {group}"
        events += [Start(t), Text(t + 1400, f"{text}."), Stop(t + 1500)]
        t += 1500 + 900
    decisions = play(events, until_ms=t + 2000)
    assert len(decisions) == 1, decisions
    [decision] = decisions
    assert decision.reason is EndReason.DIGITS and decision.at_ms > t - 900


def test_a_number_the_agent_has_in_full_ends_the_turn_at_once() -> None:
    said = "my order number is one two three four five"
    taken = Judged(1950, said, number_taken=True)
    (decision,) = play([Start(0), Text(1900, said), Stop(2000), taken], 3000)
    assert (decision.reason, decision.silence_ms) == (EndReason.UNDERSTOOD, 300)
    (waiting,) = play([Start(0), Text(1900, said), Stop(2000)], 4000)
    assert (waiting.reason, waiting.silence_ms) == (EndReason.DIGITS, 1300)
    # Understood as a question about cards, but not a number the agent asked for: more
    # groups may follow.
    card = "my card number is 4111"
    hint = Judged(1950, card)
    (still,) = play([Start(0), Text(1900, card), Stop(2000), hint], 4000)
    assert (still.reason, still.silence_ms) == (EndReason.DIGITS, 1300)


def test_a_filler_the_words_left_out_holds_the_turn() -> None:
    """Whisper wrote "I'd like to check on my order, um" as a finished sentence the agent
    understood; the audio's last stretch was a filler, so the caller's 1.3 s pause before
    "the number is ..." is not the end of the turn."""
    said = "I'd like to check on my order."
    heard: list[Event] = [Start(0), Text(1900, said), Stop(2000), Judged(1950, said)]
    (hasty,) = play(heard, 3000)
    assert hasty.reason is EndReason.COMPLETE and hasty.silence_ms < 400
    (held,) = play([*heard, Filler(1950, said)], 5000)
    assert (held.reason, held.silence_ms) == (EndReason.HESITATION, 2000)
    # The caller goes on after 1.3 s: one turn, ended after the rest.
    rest = "I'd like to check on my order. The number is four five six seven."
    events = [*heard, Filler(1950, said), Start(3300), Text(5200, rest), Stop(5300)]
    decisions = play(events, 8000)
    assert [d.at_ms > 5300 for d in decisions] == [True]


def test_a_filler_cue_about_other_words_is_ignored_and_a_taken_number_still_ends() -> None:
    said = "What are your hours?"
    (decision,) = play([Start(0), Text(900, said), Stop(1000), Filler(950, "What are")], 2000)
    assert decision.reason is EndReason.QUESTION
    number = "my order number is one two three four five"
    taken: list[Event] = [
        Start(0),
        Text(1900, number),
        Stop(2000),
        Judged(1950, number, number_taken=True),
    ]
    (done,) = play([*taken, Filler(1950, number)], 3000)
    assert (done.reason, done.silence_ms) == (EndReason.UNDERSTOOD, 300)


@pytest.mark.parametrize(
    ("text", "filler"),
    [
        ("Um...", True),
        ("uh...", True),
        ("Hmmm,", True),
        ("Uhh... um.", True),
        ("er", True),
        ("", False),
        ("Umbrella.", False),
        ("Um, my order.", False),
        ("uh-huh", False),
        ("Hmm?", True),
    ],
)
def test_is_filled_pause(text: str, filler: bool) -> None:
    assert is_filled_pause(text) is filler
