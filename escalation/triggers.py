"""When an AI-handled call must go to a person: the trigger detector.

Pure: no audio, no clock, no I/O. The engine feeds it what happened on the call (the caller's
final transcripts and keys, the responder's turn outcomes, a model failure, a supervisor
stepping in), each with the time on one monotonic clock in seconds, and starts an escalation
when it returns a `Trigger`.

The detector fires at most once: after a trigger it is spent, and everything else it is shown
returns None, until `reset()` re-arms it when a person hands the call back to the AI.

What counts as each trigger:

- the caller asks for a person, in words ("can I talk to a person", "agent please") or with
  the line's handoff key; a negated request ("I don't want an agent") or a mention ("the agent
  said ...") is not one;
- the responder did not understand the caller on N turns in a row;
- the responder was unsure (confidence below a threshold) on M of its last K turns;
- the caller is frustrated: a score that counts frustration words and profanity, a voice raised
  above the caller's own baseline, and the caller repeating themselves, decaying over time;
- the caller names a sensitive topic of the line's policy (some, like an emergency, immediate);
- the model or its session failed (always immediate);
- a supervisor takes the call on their own initiative (always immediate).

The responder already hands off on its own for some of these; its reasons are mapped here, so
a handoff the caller has already been told about always becomes a trigger.

`Trigger.detail` is evidence for the audit trail: matched cue words, counts, scores and levels,
never the caller's sentences.
"""

from __future__ import annotations

import enum
import math
import re
import statistics
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any


class EscalationReason(enum.StrEnum):
    """Why a call went to a person; the values of `admin.models.EscalationReason`."""

    CALLER_REQUEST = "caller_request"
    DTMF_ZERO = "dtmf_zero"  # the line's handoff key, whichever digit it is
    MISUNDERSTANDING = "misunderstanding"
    LOW_CONFIDENCE = "low_confidence"
    FRUSTRATION = "frustration"
    SENSITIVE_TOPIC = "sensitive_topic"
    MODEL_FAILURE = "model_failure"
    SUPERVISOR_INITIATIVE = "supervisor_initiative"


# The handoff reasons `agent.responder.Responder` puts on its replies, and those a model gives
# when it calls the transfer_to_human tool (agent/tools.HANDOFF_REASONS).
RESPONDER_HANDOFFS: Mapping[str, EscalationReason] = {
    "caller_asked": EscalationReason.CALLER_REQUEST,
    "dtmf_0": EscalationReason.DTMF_ZERO,
    "repeated_misunderstanding": EscalationReason.MISUNDERSTANDING,
    "no_response": EscalationReason.MISUNDERSTANDING,  # reprompted until it gave up
    "cannot_help": EscalationReason.MISUNDERSTANDING,
    "sensitive_topic": EscalationReason.SENSITIVE_TOPIC,
    "caller_upset": EscalationReason.FRUSTRATION,
}

# A line may switch off its own rules, but never these: a broken model cannot go on helping,
# and a supervisor's decision is not the detector's to overrule.
_ALWAYS_ON = frozenset({EscalationReason.MODEL_FAILURE, EscalationReason.SUPERVISOR_INITIATIVE})
_KEYS = frozenset("0123456789*#ABCD")


# --- what the detector observes --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallerUtterance:
    """A final transcript of the caller's words; `level_dbfs` is their mean speech level."""

    text: str
    level_dbfs: float | None = None

    def __post_init__(self) -> None:
        level = self.level_dbfs
        if level is not None and not (math.isfinite(level) and level <= 0):
            raise ValueError(f"a speech level is a finite dBFS value at most 0, not {level}")


@dataclass(frozen=True, slots=True)
class CallerDigit:
    """A DTMF key the caller pressed."""

    digit: str

    def __post_init__(self) -> None:
        if len(self.digit) != 1 or self.digit not in _KEYS:
            raise ValueError(f"a DTMF digit is one of 0-9, *, #, A-D, not {self.digit!r}")


@dataclass(frozen=True, slots=True)
class ResponderTurn:
    """How the responder's turn went: whether it understood the caller, how sure it was
    (0 to 1), and the reason it gave if it handed the call off itself."""

    understood: bool
    confidence: float
    handoff_reason: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"a responder confidence lies in [0, 1], not {self.confidence}")
        if self.handoff_reason is not None and self.handoff_reason not in RESPONDER_HANDOFFS:
            raise ValueError(
                f"unknown responder handoff reason {self.handoff_reason!r}; "
                f"known: {', '.join(RESPONDER_HANDOFFS)} (map a new one in RESPONDER_HANDOFFS)"
            )


@dataclass(frozen=True, slots=True)
class ModelFailure:
    """The model or its session failed; `kind` is a short label ("timeout", "disconnected")."""

    kind: str = "error"


@dataclass(frozen=True, slots=True)
class SupervisorInitiative:
    """A supervisor takes the call without being asked."""

    supervisor_id: str

    def __post_init__(self) -> None:
        if not self.supervisor_id:
            raise ValueError("a supervisor initiative needs the supervisor's id")


Observation = CallerUtterance | CallerDigit | ResponderTurn | ModelFailure | SupervisorInitiative


@dataclass(frozen=True, slots=True)
class Trigger:
    """The call must go to a person. `immediate`: skip the queue's niceties (an emergency).

    `detail` is the evidence (cue words, counts, scores), plain JSON-ready values only.
    """

    reason: EscalationReason
    immediate: bool
    at: float
    detail: Mapping[str, object] = field(default_factory=dict, hash=False)


# --- the line's policy -------------------------------------------------------------------------


_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def _tokens(text: str) -> tuple[str, ...]:
    return tuple(_TOKEN.findall(text.lower().replace("\u2019", "'")))


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"escalation.{name} must be a whole number of at least 1, not {value!r}")


def _check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"escalation.{name} must be a finite number above 0, not {value!r}")


def _check_fraction(name: str, value: float) -> None:
    if not 0 < value <= 1:
        raise ValueError(f"escalation.{name} must lie in (0, 1], not {value!r}")


def _check_phrases(name: str, phrases: tuple[str, ...], *, allow_empty: bool) -> None:
    if isinstance(phrases, str) or not isinstance(phrases, tuple):
        raise ValueError(f"escalation.{name} must be a list of phrases, not {phrases!r}")
    if not phrases and not allow_empty:
        raise ValueError(f"escalation.{name} needs at least one phrase")
    for phrase in phrases:
        if not isinstance(phrase, str) or not _tokens(phrase):
            raise ValueError(f"escalation.{name} holds {phrase!r}, which has no words")


@dataclass(frozen=True, slots=True)
class Topic:
    """A sensitive topic: any of its words or phrases in the caller's words escalates."""

    name: str
    phrases: tuple[str, ...]
    immediate: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a sensitive topic needs a name")
        _check_phrases(f"topics.{self.name}.phrases", self.phrases, allow_empty=False)


# "sue" alone is also a first name, so only phrases that threaten a lawsuit count.
LEGAL = Topic(
    "legal",
    (
        "lawyer", "attorney", "solicitor", "lawsuit", "legal action", "suing", "sued",
        "sue you", "sue your", "sue the", "sue them", "sue this", "going to sue", "gonna sue",
        "will sue", "i'll sue", "we'll sue",
    ),
)  # fmt: skip
EMERGENCY = Topic(
    "emergency",
    (
        "emergency", "ambulance", "suicide", "suicidal", "kill myself", "end my life",
        "chest pain", "heart attack", "can't breathe", "cannot breathe", "overdose", "911",
        "9 1 1", "nine one one",
    ),
    immediate=True,
)  # fmt: skip
DEFAULT_TOPICS = (LEGAL, EMERGENCY)

FRUSTRATION_PHRASES = (
    "ridiculous", "useless", "pointless", "hopeless", "incompetent", "unbelievable",
    "waste of time", "wasting my time", "this is a joke", "are you kidding", "you're kidding",
    "i already told you", "i already said", "i just told you", "i just said", "told you already",
    "you're not listening", "you are not listening", "not listening", "for the last time",
    "how many times", "what's wrong with you", "what is wrong with you", "sick of this",
    "fed up", "i give up", "frustrating", "frustrated", "annoying", "stupid", "terrible",
)  # fmt: skip
PROFANITY = (
    "damn", "dammit", "goddamn", "hell", "crap", "shit", "bullshit", "fuck", "fucking",
    "fucked", "freaking", "bloody", "bastard", "pissed", "screw this", "wtf",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TriggerPolicy:
    """One line's thresholds; `policy_from_settings` builds it from the line's `escalation:`.

    Frustration is a score in cues: each frustration word or profanity (two at most per
    utterance), a raised voice and a repetition count one each, and the score halves every
    `frustration_half_life_s`; the trigger fires when it reaches `frustration_threshold`.
    """

    handoff_digit: str | None = "0"  # None: the keypad cannot ask for a person
    person_words: tuple[str, ...] = ()  # who else callers ask for here ("nurse", "pharmacist")
    misunderstood_turns: int = 2  # not-understood responder turns in a row
    low_confidence_below: float = 0.5
    low_confidence_turns: int = 3  # ... on this many of
    low_confidence_window: int = 5  # ... the responder's last turns
    frustration_threshold: float = 1.75  # two cues within about 50 s; one never
    frustration_half_life_s: float = 120.0
    loud_db: float = 6.0  # above the caller's own median level counts as a raised voice
    loud_baseline_utterances: int = 3  # levels heard before the baseline is trusted
    repeat_similarity: float = 0.8  # `similarity` (0 to 1) that counts as saying it again
    repeat_lookback: int = 3  # compared with this many of the caller's previous utterances
    frustration_phrases: tuple[str, ...] = FRUSTRATION_PHRASES
    profanity: tuple[str, ...] = PROFANITY
    topics: tuple[Topic, ...] = DEFAULT_TOPICS
    disabled: frozenset[EscalationReason] = frozenset()

    def __post_init__(self) -> None:
        digit = self.handoff_digit
        if digit is not None and (len(digit) != 1 or digit not in _KEYS):
            raise ValueError(
                f"escalation.handoff_digit must be one key (0-9, *, #, A-D) or null, not {digit!r}"
            )
        _check_count("misunderstood_turns", self.misunderstood_turns)
        _check_fraction("low_confidence_below", self.low_confidence_below)
        _check_count("low_confidence_turns", self.low_confidence_turns)
        _check_count("low_confidence_window", self.low_confidence_window)
        if self.low_confidence_turns > self.low_confidence_window:
            raise ValueError(
                "escalation.low_confidence_turns cannot exceed low_confidence_window "
                f"({self.low_confidence_turns} of the last {self.low_confidence_window} turns)"
            )
        _check_positive("frustration_threshold", self.frustration_threshold)
        _check_positive("frustration_half_life_s", self.frustration_half_life_s)
        _check_positive("loud_db", self.loud_db)
        _check_count("loud_baseline_utterances", self.loud_baseline_utterances)
        _check_fraction("repeat_similarity", self.repeat_similarity)
        _check_count("repeat_lookback", self.repeat_lookback)
        _check_phrases("person_words", self.person_words, allow_empty=True)
        _check_phrases("frustration_phrases", self.frustration_phrases, allow_empty=True)
        _check_phrases("profanity", self.profanity, allow_empty=True)
        names = [topic.name for topic in self.topics]
        if len(set(names)) != len(names):
            raise ValueError(f"escalation.topics names a topic twice: {', '.join(names)}")
        if not_off := self.disabled & _ALWAYS_ON:
            raise ValueError(f"escalation.disabled cannot switch off {', '.join(sorted(not_off))}")


# --- the line's settings -----------------------------------------------------------------------


def policy_from_settings(settings: Mapping[str, Any]) -> TriggerPolicy:
    """The policy from a line's `escalation:` settings (YAML loaded into plain values).

    Keys are `TriggerPolicy`'s fields. `topics` maps a topic's name to `{phrases: [...],
    immediate: bool}` and is laid over the default topics: a name given replaces that topic,
    `null` removes it. `disabled` lists reasons the line switches off. Raises ValueError naming
    the key for an unknown key or a value of the wrong kind.
    """
    if not isinstance(settings, Mapping):
        raise ValueError(f"escalation settings must be a mapping, not {type(settings).__name__}")
    known = {f.name for f in fields(TriggerPolicy)}
    values: dict[str, Any] = {}
    for key, value in settings.items():
        if key not in known:
            raise ValueError(
                f"escalation: unknown key {key!r}; known keys: {', '.join(sorted(known))}"
            )
        values[key] = _SETTINGS[key](key, value)
    return TriggerPolicy(**values)


def _setting_digit(key: str, value: Any) -> str | None:
    # An unquoted `handoff_digit: 0` arrives from YAML as an int.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9:
        return str(value)
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f'escalation.{key} must be one key such as "0", or null, not {value!r}')


def _setting_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"escalation.{key} must be a whole number, not {value!r}")
    return value


def _setting_float(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"escalation.{key} must be a number, not {value!r}")
    return float(value)


def _setting_phrases(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(p, str) for p in value):
        raise ValueError(f"escalation.{key} must be a list of words or phrases, not {value!r}")
    return tuple(value)


def _setting_topics(key: str, value: Any) -> tuple[Topic, ...]:
    if not isinstance(value, Mapping):
        raise ValueError(
            f"escalation.{key} must map topic names to {{phrases: [...], immediate: bool}}"
        )
    topics = {topic.name: topic for topic in DEFAULT_TOPICS}
    for name, spec in value.items():
        where = f"{key}.{name}"
        if spec is None:
            topics.pop(name, None)
            continue
        if not isinstance(spec, Mapping):
            raise ValueError(f"escalation.{where} must be {{phrases: [...], immediate: bool}}")
        for field_name in spec:
            if field_name not in ("phrases", "immediate"):
                raise ValueError(
                    f"escalation.{where}: unknown key {field_name!r}; known: immediate, phrases"
                )
        if "phrases" not in spec:
            raise ValueError(f"escalation.{where} needs phrases")
        immediate = spec.get("immediate", False)
        if not isinstance(immediate, bool):
            raise ValueError(f"escalation.{where}.immediate must be true or false")
        phrases = _setting_phrases(f"{where}.phrases", spec["phrases"])
        topics[str(name)] = Topic(str(name), phrases, immediate=immediate)
    return tuple(topics.values())


def _setting_disabled(key: str, value: Any) -> frozenset[EscalationReason]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"escalation.{key} must be a list of escalation reasons")
    reasons = set()
    for item in value:
        try:
            reasons.add(EscalationReason(item))
        except ValueError:
            known = ", ".join(EscalationReason)
            raise ValueError(f"escalation.{key}: unknown reason {item!r}; known: {known}") from None
    return frozenset(reasons)


_SETTINGS: dict[str, Any] = {
    "handoff_digit": _setting_digit,
    "person_words": _setting_phrases,
    "misunderstood_turns": _setting_int,
    "low_confidence_below": _setting_float,
    "low_confidence_turns": _setting_int,
    "low_confidence_window": _setting_int,
    "frustration_threshold": _setting_float,
    "frustration_half_life_s": _setting_float,
    "loud_db": _setting_float,
    "loud_baseline_utterances": _setting_int,
    "repeat_similarity": _setting_float,
    "repeat_lookback": _setting_int,
    "frustration_phrases": _setting_phrases,
    "profanity": _setting_phrases,
    "topics": _setting_topics,
    "disabled": _setting_disabled,
}


# --- the detector ------------------------------------------------------------------------------


class Phase(enum.StrEnum):
    ARMED = "armed"  # watching the call
    SPENT = "spent"  # fired; silent until reset


# How many of the caller's levels the baseline is the median of.
_BASELINE_WINDOW = 10
# Frustration words counted per utterance: a rant counts, but one long sentence cannot
# outweigh everything else.
_WORDS_PER_UTTERANCE = 2
# Cues older than this many half-lives weigh under 1/16 and leave the evidence.
_EVIDENCE_HALF_LIVES = 4


class TriggerDetector:
    """One call's escalation triggers, from answer to the first trigger.

    Times are seconds on one monotonic clock and must not go backwards.
    """

    def __init__(self, policy: TriggerPolicy | None = None) -> None:
        self.policy = policy = policy or TriggerPolicy()
        self._asks = _request_patterns(tuple(" ".join(_tokens(w)) for w in policy.person_words))
        self._frustration_words = _phrase_set(policy.frustration_phrases)
        self._profanity = _phrase_set(policy.profanity)
        # Immediate topics first: an emergency outranks everything else said with it.
        self._topics = [
            (topic, _phrase_set(topic.phrases))
            for topic in sorted(policy.topics, key=lambda topic: not topic.immediate)
        ]
        self._levels: deque[float] = deque(maxlen=_BASELINE_WINDOW)
        self._last_at: float | None = None
        self._rearm()

    def _rearm(self) -> None:
        self.phase = Phase.ARMED
        self.trigger: Trigger | None = None
        self._misunderstood = 0
        self._confidences: deque[float] = deque(maxlen=self.policy.low_confidence_window)
        self._score = 0.0
        self._score_at: float | None = None
        self._evidence: list[tuple[float, dict[str, object]]] = []  # (when, cue)
        self._recent: deque[tuple[str, ...]] = deque(maxlen=self.policy.repeat_lookback)

    def reset(self) -> None:
        """Re-arm after a person handed the call back to the AI.

        Forgets the streaks, the frustration score and the caller's recent words; keeps the
        caller's speech-level baseline, which describes their voice and line, not the episode.
        """
        self._rearm()

    def frustration(self, at: float) -> float:
        """The caller's frustration score now (decayed since their last words), in cues; the
        line's `frustration_threshold` is where it would trigger."""
        if self._score_at is None or at <= self._score_at:
            return self._score
        decay: float = 0.5 ** ((at - self._score_at) / self.policy.frustration_half_life_s)
        return self._score * decay

    def observe(self, observation: Observation, at: float) -> Trigger | None:
        """The trigger `observation` fires at `at`, once per call; otherwise None."""
        self._advance(at)
        if self.phase is Phase.SPENT:
            return None
        match observation:
            case CallerUtterance():
                trigger = self._caller_said(observation, at)
            case CallerDigit():
                trigger = self._caller_keyed(observation, at)
            case ResponderTurn():
                trigger = self._responder_turned(observation, at)
            case ModelFailure():
                trigger = Trigger(
                    EscalationReason.MODEL_FAILURE, True, at, {"kind": observation.kind}
                )
            case SupervisorInitiative():
                trigger = Trigger(
                    EscalationReason.SUPERVISOR_INITIATIVE,
                    True,
                    at,
                    {"supervisor_id": observation.supervisor_id},
                )
        if trigger is not None:
            self.phase = Phase.SPENT
            self.trigger = trigger
        return trigger

    def _advance(self, at: float) -> None:
        if not math.isfinite(at):
            raise ValueError(f"a trigger time must be a finite number of seconds, not {at}")
        if self._last_at is not None and at < self._last_at:
            raise ValueError(
                f"trigger detector time went backwards ({at} s after {self._last_at} s); "
                "pass times from one monotonic clock"
            )
        self._last_at = at

    def _on(self, reason: EscalationReason) -> bool:
        return reason not in self.policy.disabled

    # --- one method per observation ---

    def _caller_said(self, said: CallerUtterance, at: float) -> Trigger | None:
        clauses = _clauses(said.text)
        # Frustration evidence builds on every utterance, whatever else fires.
        frustrated = self._frustration(said, clauses, at)
        topic = self._topic(clauses, at) if self._on(EscalationReason.SENSITIVE_TOPIC) else None
        if topic is not None and topic.immediate:
            return topic
        if self._on(EscalationReason.CALLER_REQUEST) and (cue := self._asks_for_person(clauses)):
            return Trigger(EscalationReason.CALLER_REQUEST, False, at, {"cue": cue})
        if topic is not None:
            return topic
        if frustrated and self._on(EscalationReason.FRUSTRATION):
            return self._frustration_trigger(at)
        return None

    def _caller_keyed(self, keyed: CallerDigit, at: float) -> Trigger | None:
        if keyed.digit != self.policy.handoff_digit or not self._on(EscalationReason.DTMF_ZERO):
            return None
        return Trigger(EscalationReason.DTMF_ZERO, False, at, {"digit": keyed.digit})

    def _responder_turned(self, turn: ResponderTurn, at: float) -> Trigger | None:
        if turn.handoff_reason is not None:
            reason = RESPONDER_HANDOFFS[turn.handoff_reason]
            return Trigger(reason, False, at, {"responder_reason": turn.handoff_reason})
        self._misunderstood = 0 if turn.understood else self._misunderstood + 1
        self._confidences.append(turn.confidence)
        policy = self.policy
        if self._misunderstood >= policy.misunderstood_turns and self._on(
            EscalationReason.MISUNDERSTANDING
        ):
            return Trigger(
                EscalationReason.MISUNDERSTANDING, False, at, {"turns": self._misunderstood}
            )
        low = [c for c in self._confidences if c < policy.low_confidence_below]
        if len(low) >= policy.low_confidence_turns and self._on(EscalationReason.LOW_CONFIDENCE):
            detail = {
                "low_turns": len(low),
                "window": len(self._confidences),
                "below": policy.low_confidence_below,
                "confidences": [round(c, 3) for c in self._confidences],
            }
            return Trigger(EscalationReason.LOW_CONFIDENCE, False, at, detail)
        return None

    # --- the caller's words ---

    def _asks_for_person(self, clauses: list[tuple[str, ...]]) -> str | None:
        """The words with which the caller asked for a person, if they did."""
        whole = " ".join(" ".join(clause) for clause in clauses)
        if bare := self._asks.bare.match(whole):
            return bare.group("cue")
        for clause in clauses:
            text = " ".join(clause)
            for match in self._asks.request.finditer(text):
                start = text.count(" ", 0, match.start())
                if not _negated(clause, start, _REQUEST_SCOPE, reach=6, no_adjacent=False):
                    return match.group()
        return None

    def _topic(self, clauses: list[tuple[str, ...]], at: float) -> Trigger | None:
        for topic, phrases in self._topics:
            for cue in _cues(clauses, phrases):
                detail = {"topic": topic.name, "cue": cue}
                return Trigger(EscalationReason.SENSITIVE_TOPIC, topic.immediate, at, detail)
        return None

    def _frustration(
        self, said: CallerUtterance, clauses: list[tuple[str, ...]], at: float
    ) -> bool:
        """Adds this utterance's frustration cues; whether the score has reached the threshold."""
        policy = self.policy
        if self._score_at is not None:
            self._score *= 0.5 ** ((at - self._score_at) / policy.frustration_half_life_s)
        self._score_at = at
        cues: list[dict[str, object]] = [
            {"kind": "words", "cue": cue} for cue in _cues(clauses, self._frustration_words)
        ]
        cues += [{"kind": "profanity", "cue": cue} for cue in _cues(clauses, self._profanity)]
        cues += [{"kind": "profanity", "cue": cue} for cue in _censored(said.text)]
        cues = cues[:_WORDS_PER_UTTERANCE]
        if (loud := self._loud(said.level_dbfs)) is not None:
            cues.append(loud)
        if (repeat := self._repeat(clauses)) is not None:
            cues.append(repeat)
        self._score += len(cues)
        oldest = at - _EVIDENCE_HALF_LIVES * policy.frustration_half_life_s
        self._evidence = [(when, cue) for when, cue in self._evidence if when >= oldest]
        self._evidence += [(at, {**cue, "at": at}) for cue in cues]
        return self._score >= policy.frustration_threshold

    def _loud(self, level_dbfs: float | None) -> dict[str, object] | None:
        """A voice raised above the caller's own median level, once that median is known."""
        if level_dbfs is None:
            return None
        baseline = self._levels
        known = len(baseline) >= self.policy.loud_baseline_utterances
        above = level_dbfs - statistics.median(baseline) if known else 0.0
        baseline.append(level_dbfs)
        if known and above >= self.policy.loud_db:
            return {"kind": "loud", "db_above_baseline": round(above, 1)}
        return None

    def _repeat(self, clauses: list[tuple[str, ...]]) -> dict[str, object] | None:
        """The caller saying nearly what they said in one of their last few utterances."""
        words = _content(w for clause in clauses for w in clause)
        best = max((_similarity(words, earlier) for earlier in self._recent), default=0.0)
        self._recent.append(words)
        if best >= self.policy.repeat_similarity:
            return {"kind": "repeat", "similarity": round(best, 2)}
        return None

    def _frustration_trigger(self, at: float) -> Trigger:
        detail = {
            "score": round(self._score, 2),
            "threshold": self.policy.frustration_threshold,
            "cues": [cue for _, cue in self._evidence],
        }
        return Trigger(EscalationReason.FRUSTRATION, False, at, detail)


# --- words ---------------------------------------------------------------------------------------

# ASR marks pauses and sentence ends with punctuation; "but" turns a sentence around.
_CLAUSE_BREAK = re.compile(r"[.,;:!?\u2026]+|\s[-\u2013\u2014]+\s|\bbut\b")
# Profanity the ASR censored itself ("f***", "s**t").
_CENSORED = re.compile(r"(?<![a-z*])[a-z]\*{2,}[a-z]*(?![a-z*])")

_NEGATORS = frozenset(
    {
        "not", "no", "never", "don't", "dont", "doesn't", "didn't", "won't", "wouldn't",
        "isn't", "aren't", "wasn't", "nobody",
    }
)  # fmt: skip
# Words a negation reaches across to a request: "I don't really want to talk to a person",
# "no need to transfer me". Any other word ends its reach ("I don't want to wait, just
# transfer me" asks for a person).
_REQUEST_SCOPE = frozenset(
    {
        "i", "i'd", "i'm", "me", "you", "we", "to", "really", "even", "actually", "necessarily",
        "want", "wanna", "need", "like", "have", "got", "gotta", "think", "going", "gonna",
        "trying", "ask", "asking", "for", "let", "said", "say", "do", "does", "be",
    }
)  # fmt: skip
# Words a negation reaches across to a cue word: "not an emergency", "not that ridiculous".
_CUE_SCOPE = frozenset({"a", "an", "the", "any", "really", "very", "so", "that", "too", "quite"})


def _clauses(text: str) -> list[tuple[str, ...]]:
    lowered = text.lower().replace("\u2019", "'")
    return [words for part in _CLAUSE_BREAK.split(lowered) if (words := _tokens(part))]


def _negated(
    words: tuple[str, ...], start: int, scope: frozenset[str], *, reach: int, no_adjacent: bool
) -> bool:
    """Whether a negation governs the words from `start` on.

    A negation in a "why" question is rhetorical ("why won't you let me talk to someone").
    "no" right before a request is an interjection ("no, transfer me"), but right before a
    noun it negates ("no emergency"), hence `no_adjacent`.
    """
    for i in range(start - 1, max(start - 1 - reach, -1), -1):
        word = words[i]
        if word in _NEGATORS:
            if word == "no" and i == start - 1 and not no_adjacent:
                return False
            return "why" not in words[:i]
        if word not in scope:
            return False
    return False


_Phrases = tuple[tuple[str, ...], ...]


def _phrase_set(phrases: Iterable[str]) -> _Phrases:
    # Longest first, so "you're not listening" wins over "not listening" inside it.
    return tuple(sorted({_tokens(p) for p in phrases}, key=lambda p: (-len(p), p)))


def _cues(clauses: list[tuple[str, ...]], phrases: _Phrases) -> list[str]:
    """The phrases said (not negated), each once, longest match first; a final "s" is allowed."""
    found: list[str] = []
    for words in clauses:
        taken = [False] * len(words)
        for phrase in phrases:
            n = len(phrase)
            for start in range(len(words) - n + 1):
                span = words[start : start + n]
                if any(taken[start : start + n]) or not _same(span, phrase):
                    continue
                taken[start : start + n] = [True] * n
                if _negated(words, start, _CUE_SCOPE, reach=3, no_adjacent=True):
                    continue
                cue = " ".join(phrase)
                if cue not in found:
                    found.append(cue)
    return found


def _same(span: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    return span[:-1] == phrase[:-1] and span[-1] in (phrase[-1], phrase[-1] + "s")


def _censored(text: str) -> list[str]:
    # Tokens lose the asterisks, so look in the words as said.
    return list(dict.fromkeys(_CENSORED.findall(text.lower())))


def similarity(a: str, b: str) -> float:
    """How nearly `a` and `b` say the same, 0 to 1: the share of the shorter one's content words
    that the other says too (the overlap coefficient).

    Containment, not a symmetric ratio, because callers repeat themselves with more words
    around ("I already told you, I want to cancel my order"), or fewer ("cancel my order").
    """
    return _similarity(_content(_tokens(a)), _content(_tokens(b)))


# Words that carry no request of their own, so that "I want to pay my bill" and "I want to check
# my bill" are not the same request said twice.
_FUNCTION_WORDS = frozenset(
    {
        "um", "uh", "erm", "er", "hm", "hmm", "mm", "ah", "oh", "okay", "ok", "yes", "yeah", "no",
        "please", "just", "so", "well", "i", "i'm", "i'd", "i've", "me", "my", "you", "your",
        "you're", "we", "our", "it", "it's", "a", "an", "the", "this", "that", "to", "of", "for",
        "on", "in", "at", "with", "about", "and", "or", "but", "is", "are", "was", "be", "do",
        "does", "did", "can", "could", "would", "will", "want", "wanna", "need", "like", "said",
        "say", "told", "tell", "already", "again",
    }
)  # fmt: skip
# Too few content words to call a repetition: "yes", "no thanks", "bill".
_REPEAT_MIN_WORDS = 2


def _content(words: Iterable[str]) -> tuple[str, ...]:
    return tuple(word for word in words if word not in _FUNCTION_WORDS)


def _similarity(a: tuple[str, ...], b: tuple[str, ...]) -> float:
    shorter = min(len(a), len(b))
    if shorter < _REPEAT_MIN_WORDS:
        return 0.0
    return sum((Counter(a) & Counter(b)).values()) / shorter


# --- asking for a person -----------------------------------------------------------------------

# Whisper's spellings of the people callers ask for.
_PERSON_NOUNS = (
    "agent", "agents", "human", "humans", "human being", "person", "representative",
    "representatives", "representitive", "representive", "rep", "reps", "operator",
    "operators", "opperator", "manager", "supervisor", "associate", "customer service",
    "customer support", "customer care", "real people", "live people", "actual people",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _RequestPatterns:
    request: re.Pattern[str]  # a request anywhere in a clause
    bare: re.Pattern[str]  # the whole utterance is the noun: "agent please", "a human"


@lru_cache(maxsize=32)
def _request_patterns(extra_nouns: tuple[str, ...]) -> _RequestPatterns:
    # Longest first, so "customer service" is taken whole.
    ordered = sorted({*_PERSON_NOUNS, *extra_nouns}, key=lambda noun: (-len(noun), noun))
    nouns = "|".join(re.escape(noun) for noun in ordered)
    det = "(?:(?:a|an|the|some|any|your|one of your|one of the) )?"
    adj = "(?:(?:real|live|actual|proper|human) )?"
    noun = f"(?:{nouns})"
    anyone = f"(?:someone|somebody|anyone|anybody|{nouns})"
    request = "|".join(
        (
            f"(?:talk|speak|chat) (?:to|with) {det}{adj}{anyone}",
            "transfer me|put me through",
            f"(?:connect|put|send|pass) me (?:on )?(?:to|with|through to) {det}{adj}{anyone}",
            f"(?:get|give|find) me {det}{adj}{anyone}",
            "(?:want|wanna|need|(?:i'd|would|we'd) like|prefer|request|requesting|ask for|"
            f"asking for) (?:to have )?{det}{adj}{noun}",
            "(?:is there|are there|isn't there|do you have|don't you have|have you got|"
            f"(?:can|could|may) i (?:get|have)) {det}{adj}{anyone}",
        )
    )
    filler = "(?:um|uh|hey|hi|hello|yes|yeah|ok|okay|just|please)"
    bare = f"^(?:{filler} )*(?P<cue>(?:an? )?{adj}{noun})(?: (?:please|now|{noun}))*$"
    return _RequestPatterns(re.compile(rf"(?<!\S)(?:{request})(?!\S)"), re.compile(bare))
