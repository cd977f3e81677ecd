"""When a call must go to a person: the trigger detector, on timelines (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from agent.tools import HANDOFF_REASONS
from escalation.triggers import (
    DEFAULT_TOPICS,
    RESPONDER_HANDOFFS,
    CallerDigit,
    CallerUtterance,
    EscalationReason,
    ModelFailure,
    Observation,
    Phase,
    ResponderTurn,
    SupervisorInitiative,
    Topic,
    Trigger,
    TriggerDetector,
    TriggerPolicy,
    policy_from_settings,
    similarity,
)

Timeline = Sequence[tuple[float, Observation]]


def fired(timeline: Timeline, policy: TriggerPolicy | None = None) -> list[Trigger]:
    """Every trigger the timeline fires, in order, from one detector."""
    detector = TriggerDetector(policy)
    return [trigger for at, seen in timeline if (trigger := detector.observe(seen, at))]


def said(text: str, at: float = 0.0, policy: TriggerPolicy | None = None) -> Trigger | None:
    return TriggerDetector(policy).observe(CallerUtterance(text), at)


def understood(confidence: float = 0.9) -> ResponderTurn:
    return ResponderTurn(understood=True, confidence=confidence)


MISSED = ResponderTurn(understood=False, confidence=0.2)


def test_the_reasons_are_the_admin_records_values() -> None:
    # admin.models.EscalationReason stores these; the detector cannot import admin.
    assert [reason.value for reason in EscalationReason] == [
        "caller_request",
        "dtmf_zero",
        "misunderstanding",
        "low_confidence",
        "frustration",
        "sensitive_topic",
        "model_failure",
        "supervisor_initiative",
    ]


# --- the caller asks for a person ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cue"),
    [
        ("Can I talk to a person?", "talk to a person"),
        ("I want to speak to someone.", "speak to someone"),
        ("Speak with a REAL person, please", "speak with a real person"),
        ("agent", "agent"),
        ("Agent, please!", "agent"),
        ("um, representative", "representative"),
        ("Operator. Operator!", "operator"),
        ("a human please", "a human"),
        ("I need a human", "need a human"),
        ("I'd like a representative.", "i'd like a representative"),
        ("Get me a real person", "get me a real person"),
        ("Can you transfer me?", "transfer me"),
        ("Connect me to an agent", "connect me to an agent"),
        ("Is there someone I can talk to?", "is there someone"),
        ("can I get a supervisor", "can i get a supervisor"),
        ("I want customer service", "want customer service"),
        # Negations that do not reach the request.
        ("I don't want a robot, get me a human", "get me a human"),
        ("I don't want to wait, just transfer me", "transfer me"),
        ("i don't want to wait just connect me to an agent", "connect me to an agent"),
        ("no connect me to an agent", "connect me to an agent"),
        ("Why won't you let me talk to a person?", "talk to a person"),
        ("Isn't there a human I can talk to?", "isn't there a human"),
        ("I don't need help with that but I want to talk to someone", "talk to someone"),
    ],
)
def test_the_caller_asking_for_a_person_in_words(text: str, cue: str) -> None:
    trigger = said(text, at=4.0)
    assert trigger == Trigger(EscalationReason.CALLER_REQUEST, False, 4.0, {"cue": cue})


@pytest.mark.parametrize(
    "text",
    [
        "I am not a robot",
        "The agent said I should call back.",
        "my insurance agent told me to call",
        "I talked to an agent yesterday",
        "I need the manager's number",
        "it's like agents always say",
        "Is this a real person?",
        "put me on hold",
        "no agent please",
        # Negated requests.
        "I don't want an agent",
        "I do not want to talk to someone",
        "I don't really want to speak to a person.",
        "No, I don't need a human.",
        "no need to transfer me",
        "You don't need to transfer me",
        "Don't transfer me, I'm fine",
        "I never said I want to speak to someone",
    ],
)
def test_mentions_and_negated_requests_are_not_a_request(text: str) -> None:
    assert said(text) is None


def test_a_line_names_the_people_its_callers_ask_for() -> None:
    assert said("I want to talk to a nurse") is None
    trigger = said("I want to talk to a nurse", policy=TriggerPolicy(person_words=("Nurse",)))
    assert trigger is not None
    assert trigger.detail == {"cue": "talk to a nurse"}


def test_the_handoff_key_asks_for_a_person() -> None:
    triggers = fired([(1.0, CallerDigit("5")), (2.0, CallerDigit("#")), (3.0, CallerDigit("0"))])
    assert triggers == [Trigger(EscalationReason.DTMF_ZERO, False, 3.0, {"digit": "0"})]


def test_the_handoff_key_is_the_lines_own_or_none() -> None:
    nine = TriggerPolicy(handoff_digit="9")
    assert fired([(1.0, CallerDigit("0"))], nine) == []
    assert [t.detail for t in fired([(1.0, CallerDigit("9"))], nine)] == [{"digit": "9"}]
    assert fired([(1.0, CallerDigit("0"))], TriggerPolicy(handoff_digit=None)) == []


# --- the responder's own handoffs ------------------------------------------------------------


@pytest.mark.parametrize(
    ("responder_reason", "reason"),
    [
        ("caller_asked", EscalationReason.CALLER_REQUEST),
        ("dtmf_0", EscalationReason.DTMF_ZERO),
        ("repeated_misunderstanding", EscalationReason.MISUNDERSTANDING),
        ("no_response", EscalationReason.MISUNDERSTANDING),
    ],
)
def test_a_responder_handoff_is_a_trigger_with_its_reason(
    responder_reason: str, reason: EscalationReason
) -> None:
    turn = ResponderTurn(understood=True, confidence=1.0, handoff_reason=responder_reason)
    assert fired([(7.0, turn)]) == [
        Trigger(reason, False, 7.0, {"responder_reason": responder_reason})
    ]


def test_every_responder_handoff_reason_is_mapped() -> None:
    # The reasons agent.responder.Responder passes to its _handoff(), and a model's reasons for
    # calling the transfer_to_human tool.
    assert set(RESPONDER_HANDOFFS) == {
        "caller_asked",
        "dtmf_0",
        "no_response",
        "repeated_misunderstanding",
    } | set(HANDOFF_REASONS)


def test_an_unknown_responder_handoff_reason_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown responder handoff reason 'bored'"):
        ResponderTurn(understood=True, confidence=1.0, handoff_reason="bored")


def test_a_handoff_the_responder_announced_fires_even_when_the_rule_is_off() -> None:
    policy = TriggerPolicy(disabled=frozenset({EscalationReason.CALLER_REQUEST}))
    assert said("agent please", policy=policy) is None
    turn = ResponderTurn(understood=True, confidence=1.0, handoff_reason="caller_asked")
    assert [t.reason for t in fired([(1.0, turn)], policy)] == [EscalationReason.CALLER_REQUEST]


# --- repeated misunderstanding and low confidence ---------------------------------------------


def test_two_misunderstood_turns_in_a_row_escalate() -> None:
    triggers = fired([(1.0, MISSED), (5.0, understood()), (9.0, MISSED), (12.0, MISSED)])
    assert triggers == [Trigger(EscalationReason.MISUNDERSTANDING, False, 12.0, {"turns": 2})]


def test_an_understood_turn_resets_the_misunderstanding_streak() -> None:
    policy = TriggerPolicy(misunderstood_turns=3, low_confidence_turns=5)
    timeline: Timeline = [(1.0, MISSED), (2.0, MISSED), (3.0, understood()), (4.0, MISSED)]
    assert fired(timeline, policy) == []
    triggers = fired([*timeline, (5.0, MISSED), (6.0, MISSED)], policy)
    assert [(t.reason, t.at) for t in triggers] == [(EscalationReason.MISUNDERSTANDING, 6.0)]


def test_low_confidence_on_three_of_the_last_five_turns_escalates() -> None:
    confidences = [0.3, 0.9, 0.2, 0.95, 0.45]
    timeline: Timeline = [(float(i), understood(c)) for i, c in enumerate(confidences)]
    assert fired(timeline[:4]) == []
    assert fired(timeline) == [
        Trigger(
            EscalationReason.LOW_CONFIDENCE,
            False,
            4.0,
            {"low_turns": 3, "window": 5, "below": 0.5, "confidences": confidences},
        )
    ]


def test_unsure_turns_that_left_the_window_no_longer_count() -> None:
    confidences = [0.3, 0.2, 0.9, 0.9, 0.9, 0.9, 0.4]  # the first two are 6 and 5 turns back
    timeline: Timeline = [(float(i), understood(c)) for i, c in enumerate(confidences)]
    assert fired(timeline) == []


def test_the_confidence_threshold_is_strict_and_per_line() -> None:
    at_threshold: Timeline = [(float(i), understood(0.5)) for i in range(5)]
    assert fired(at_threshold) == []
    policy = TriggerPolicy(
        low_confidence_below=0.8, low_confidence_turns=2, low_confidence_window=2
    )
    assert [t.at for t in fired(at_threshold, policy)] == [1.0]


# --- frustration ---------------------------------------------------------------------------------


def test_one_frustration_word_is_not_enough_and_two_are() -> None:
    assert said("This is ridiculous.") is None
    trigger = said("This is ridiculous, completely useless.", at=3.0)
    assert trigger is not None
    assert (trigger.reason, trigger.immediate) == (EscalationReason.FRUSTRATION, False)
    assert trigger.detail == {
        "score": 2.0,
        "threshold": 1.75,
        "cues": [
            {"kind": "words", "cue": "ridiculous", "at": 3.0},
            {"kind": "words", "cue": "useless", "at": 3.0},
        ],
    }


def test_frustration_builds_over_utterances_and_fades_with_time() -> None:
    builds: Timeline = [(0.0, CallerUtterance("useless")), (30.0, CallerUtterance("so stupid"))]
    triggers = fired(builds)
    assert [(t.reason, t.at) for t in triggers] == [(EscalationReason.FRUSTRATION, 30.0)]
    assert triggers[0].detail["score"] == round(1 + 0.5**0.25, 2)
    # A half-life apart, the first cue weighs a half.
    fades: Timeline = [(0.0, CallerUtterance("useless")), (120.0, CallerUtterance("so stupid"))]
    assert fired(fades) == []
    assert fired(fades, TriggerPolicy(frustration_half_life_s=600.0)) != []


def test_a_phrase_inside_a_longer_cue_counts_once() -> None:
    # "not listening" lies inside "you're not listening": one cue, not two.
    assert said("You're not listening!") is None


def test_profanity_counts_including_what_the_asr_censored() -> None:
    trigger = said("What the hell, this is f***ing useless")
    assert trigger is not None
    cues = trigger.detail["cues"]
    assert cues == [
        {"kind": "words", "cue": "useless", "at": 0.0},
        {"kind": "profanity", "cue": "hell", "at": 0.0},
    ]
    assert said("Hello, this is f***ing useless") is not None  # "hello" is not "hell"


@pytest.mark.parametrize(
    "text",
    ["I'm not frustrated, just this is not useless", "That's not that ridiculous, is it? Stupid"],
)
def test_negated_frustration_words_do_not_count(text: str) -> None:
    assert said(text) is None


def loud(db: float, text: str = "okay") -> CallerUtterance:
    return CallerUtterance(text, level_dbfs=db)


def test_a_raised_voice_counts_against_the_callers_own_baseline() -> None:
    calm: Timeline = [(0.0, loud(-30)), (5.0, loud(-28)), (10.0, loud(-32))]
    shouted: Timeline = [*calm, (15.0, loud(-21, "this is ridiculous"))]
    triggers = fired(shouted)
    assert len(triggers) == 1
    assert triggers[0].detail["cues"] == [
        {"kind": "words", "cue": "ridiculous", "at": 15.0},
        {"kind": "loud", "db_above_baseline": 9.0, "at": 15.0},
    ]
    # Raised, but less than loud_db above the baseline.
    assert fired([*calm, (15.0, loud(-26, "this is ridiculous"))]) == []


def test_a_loud_caller_is_not_raised_before_the_baseline_is_known() -> None:
    assert fired([(0.0, loud(-40)), (5.0, loud(-20, "this is ridiculous"))]) == []


def test_a_loud_line_is_the_baseline_not_a_raised_voice() -> None:
    level = [(float(i), loud(-10, "ridiculous" if i == 5 else "yes")) for i in range(6)]
    assert fired(level) == []


def test_repeating_oneself_counts() -> None:
    timeline: Timeline = [
        (0.0, CallerUtterance("I want to cancel my order")),
        (6.0, CallerUtterance("what are your hours")),
        (12.0, CallerUtterance("I already told you, I want to cancel my order")),
    ]
    triggers = fired(timeline)
    assert len(triggers) == 1
    assert triggers[0].detail["cues"] == [
        {"kind": "words", "cue": "i already told you", "at": 12.0},
        {"kind": "repeat", "similarity": 1.0, "at": 12.0},
    ]


def test_only_the_last_few_utterances_are_compared() -> None:
    older = [(float(i), CallerUtterance(f"question number {i} please")) for i in range(1, 4)]
    timeline: Timeline = [
        (0.0, CallerUtterance("I want to cancel my order")),
        *older,
        (10.0, CallerUtterance("I already told you, I want to cancel my order")),
    ]
    assert fired(timeline) == []


def test_similarity_is_the_overlap_of_content_words() -> None:
    assert similarity("Cancel my ORDER, please.", "I said I want to cancel my order") == 1.0
    assert similarity("I want to pay my bill", "I want to check my bill") == 0.5
    assert similarity("cancel the order today", "cancel the order") == 1.0
    assert similarity("change my address and phone", "change my phone number") == 2 / 3
    assert similarity("I want to cancel my order", "what are your opening hours") == 0.0
    assert similarity("yes yes", "yes yes") == 0.0  # too short to be a repetition


def test_a_different_request_in_the_same_words_is_not_a_repetition() -> None:
    timeline: Timeline = [
        (0.0, CallerUtterance("I want to pay my bill")),
        (5.0, CallerUtterance("I want to check my bill, this is useless")),
    ]
    assert fired(timeline) == []


# --- sensitive topics ------------------------------------------------------------------------


def test_a_legal_topic_escalates_without_hurry() -> None:
    trigger = said("I'm going to call my lawyer about this", at=2.0)
    assert trigger == Trigger(
        EscalationReason.SENSITIVE_TOPIC, False, 2.0, {"topic": "legal", "cue": "lawyer"}
    )


@pytest.mark.parametrize(
    ("text", "cue"),
    [
        ("I think I'm having chest pains", "chest pain"),
        ("Should I call 911?", "911"),
        ("he's talking about suicide", "suicide"),
        ("I can't breathe", "can't breathe"),
    ],
)
def test_an_emergency_escalates_immediately(text: str, cue: str) -> None:
    trigger = said(text)
    assert trigger is not None
    assert (trigger.reason, trigger.immediate) == (EscalationReason.SENSITIVE_TOPIC, True)
    assert trigger.detail == {"topic": "emergency", "cue": cue}


@pytest.mark.parametrize(
    "text", ["It's not an emergency, I just have a question", "My name is Sue", "no emergency"]
)
def test_no_topic_where_there_is_none(text: str) -> None:
    assert said(text) is None


def test_an_emergency_outranks_a_request_for_a_person() -> None:
    trigger = said("Get me a human, my dad has chest pain")
    assert trigger is not None
    assert (trigger.reason, trigger.immediate) == (EscalationReason.SENSITIVE_TOPIC, True)
    both = said("I'm calling my lawyer, this is an emergency")
    assert both is not None
    assert (both.detail, both.immediate) == ({"topic": "emergency", "cue": "emergency"}, True)
    legal = said("Get me a human, I'm calling my lawyer")
    assert legal is not None
    assert legal.reason is EscalationReason.CALLER_REQUEST


def test_a_line_defines_its_own_topics() -> None:
    policy = TriggerPolicy(topics=(Topic("billing_dispute", ("chargeback",)),))
    trigger = said("I'll file a chargeback", policy=policy)
    assert trigger is not None
    assert trigger.detail == {"topic": "billing_dispute", "cue": "chargeback"}
    assert said("I'm calling my lawyer", policy=policy) is None


# --- failures and supervisors --------------------------------------------------------------


def test_a_model_failure_escalates_immediately() -> None:
    assert fired([(3.5, ModelFailure("timeout"))]) == [
        Trigger(EscalationReason.MODEL_FAILURE, True, 3.5, {"kind": "timeout"})
    ]


def test_a_supervisor_takes_the_call() -> None:
    assert fired([(9.0, SupervisorInitiative("sup-7"))]) == [
        Trigger(EscalationReason.SUPERVISOR_INITIATIVE, True, 9.0, {"supervisor_id": "sup-7"})
    ]


# --- once per call, and the reset ----------------------------------------------------------


def test_the_detector_fires_once_until_reset() -> None:
    detector = TriggerDetector()
    first = detector.observe(CallerDigit("0"), 1.0)
    assert first is not None
    assert (detector.phase, detector.trigger) == (Phase.SPENT, first)
    later: Timeline = [
        (2.0, CallerUtterance("agent")),
        (3.0, ModelFailure()),
        (4.0, SupervisorInitiative("sup-1")),
        (5.0, CallerDigit("0")),
    ]
    for at, seen in later:
        assert detector.observe(seen, at) is None
    detector.reset()
    assert (detector.phase, detector.trigger) == (Phase.ARMED, None)
    again = detector.observe(CallerDigit("0"), 6.0)
    assert again is not None
    assert again.at == 6.0


def test_the_reset_forgets_the_streaks_and_the_score() -> None:
    detector = TriggerDetector()
    assert detector.observe(MISSED, 1.0) is None
    assert detector.observe(CallerUtterance("useless"), 2.0) is None
    assert detector.observe(CallerDigit("0"), 3.0) is not None
    detector.reset()
    assert detector.observe(MISSED, 4.0) is None  # one miss, not the second in a row
    assert detector.observe(CallerUtterance("stupid"), 5.0) is None
    trigger = detector.observe(MISSED, 6.0)
    assert trigger is not None
    assert trigger.reason is EscalationReason.MISUNDERSTANDING


def test_time_must_not_go_backwards() -> None:
    detector = TriggerDetector()
    detector.observe(understood(), 5.0)
    with pytest.raises(ValueError, match="went backwards"):
        detector.observe(understood(), 4.0)


def test_a_disabled_rule_does_not_fire() -> None:
    policy = TriggerPolicy(disabled=frozenset({EscalationReason.FRUSTRATION}))
    assert said("useless, stupid, ridiculous", policy=policy) is None
    assert said("useless, stupid, ridiculous") is not None


# --- bad observations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ResponderTurn(understood=True, confidence=1.5), "confidence"),
        (lambda: ResponderTurn(understood=True, confidence=float("nan")), "confidence"),
        (lambda: CallerUtterance("hi", level_dbfs=3.0), "dBFS"),
        (lambda: CallerDigit("00"), "DTMF digit"),
        (lambda: CallerDigit("x"), "DTMF digit"),
        (lambda: SupervisorInitiative(""), "supervisor's id"),
    ],
)
def test_bad_observations_are_refused(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


# --- the policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"handoff_digit": "10"}, "handoff_digit"),
        ({"misunderstood_turns": 0}, "misunderstood_turns"),
        ({"misunderstood_turns": True}, "misunderstood_turns"),
        ({"low_confidence_below": 0.0}, "low_confidence_below"),
        ({"low_confidence_below": 1.2}, "low_confidence_below"),
        ({"low_confidence_turns": 6}, "cannot exceed low_confidence_window"),
        ({"frustration_threshold": -1.0}, "frustration_threshold"),
        ({"frustration_half_life_s": float("inf")}, "frustration_half_life_s"),
        ({"loud_db": 0.0}, "loud_db"),
        ({"repeat_similarity": float("nan")}, "repeat_similarity"),
        ({"repeat_lookback": 0}, "repeat_lookback"),
        ({"profanity": "damn"}, "profanity must be a list"),
        ({"frustration_phrases": ("ok", "...")}, "has no words"),
        ({"topics": (*DEFAULT_TOPICS, Topic("legal", ("court",)))}, "names a topic twice"),
        ({"disabled": frozenset({EscalationReason.MODEL_FAILURE})}, "model_failure"),
    ],
)
def test_nonsense_policies_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TriggerPolicy(**changes)


def test_a_topic_needs_a_name_and_words() -> None:
    with pytest.raises(ValueError, match="needs a name"):
        Topic("", ("x",))
    with pytest.raises(ValueError, match="needs at least one phrase"):
        Topic("empty", ())


def test_the_policy_from_a_lines_settings() -> None:
    policy = policy_from_settings(
        {
            "handoff_digit": 9,  # unquoted in YAML
            "misunderstood_turns": 3,
            "low_confidence_below": 0.4,
            "person_words": ["nurse"],
            "topics": {
                "legal": None,
                "emergency": {"phrases": ["emergency", "ambulance"], "immediate": True},
                "billing_dispute": {"phrases": ["chargeback"]},
            },
            "disabled": ["frustration"],
        }
    )
    assert policy.handoff_digit == "9"
    assert (policy.misunderstood_turns, policy.low_confidence_below) == (3, 0.4)
    assert policy.person_words == ("nurse",)
    assert policy.topics == (
        Topic("emergency", ("emergency", "ambulance"), immediate=True),
        Topic("billing_dispute", ("chargeback",)),
    )
    assert policy.disabled == frozenset({EscalationReason.FRUSTRATION})
    assert policy_from_settings({}) == TriggerPolicy()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"misunderstod_turns": 3}, "unknown key 'misunderstod_turns'"),
        ({"misunderstood_turns": "two"}, "misunderstood_turns must be a whole number"),
        ({"misunderstood_turns": 2.5}, "misunderstood_turns must be a whole number"),
        ({"loud_db": "6"}, "loud_db must be a number"),
        ({"handoff_digit": [0]}, "handoff_digit"),
        ({"profanity": "damn"}, "profanity must be a list"),
        ({"topics": ["legal"]}, "topics must map topic names"),
        ({"topics": {"fraud": {"phrases": ["scam"], "urgent": True}}}, "unknown key 'urgent'"),
        ({"topics": {"fraud": {"immediate": True}}}, "topics.fraud needs phrases"),
        ({"topics": {"fraud": {"phrases": ["scam"], "immediate": "yes"}}}, "true or false"),
        ({"disabled": ["boredom"]}, "unknown reason 'boredom'"),
        ({"disabled": ["model_failure"]}, "cannot switch off model_failure"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        policy_from_settings(settings)
