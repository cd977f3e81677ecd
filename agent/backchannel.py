"""Back-channel and stop-request recognition for caller speech heard while the agent talks.

A caller who says "uh-huh" or "yeah" over the agent is listening, not taking the floor, so the
agent keeps speaking; "no, stop" or "hold on" must stop it. Both checks read the ASR text of the
overlapping speech and are pure, so the barge-in rule that uses them can be tested on strings.
"""

from __future__ import annotations

import enum
import re

# Longer than this, speech over the agent is a turn, whatever the words: a back-channel is a
# syllable or two, and ASR may have dropped words from a longer stretch.
MAX_BACKCHANNEL_MS = 1200
# "oh okay got it" is still listening; a fourth word is usually the start of a sentence.
MAX_BACKCHANNEL_WORDS = 3

_REPEATS = re.compile(r"(.)\1+")
_SEPARATORS = re.compile(r"[^a-z0-9']+")

# Longer than this, speech over the agent is judged by its words alone (see `judge_overlap`).
BRIEF_OVERLAP_MS = 500

# Folded spellings: "uh huh" and "uhhuh" both become "uhuh"; "mm-hmm", "mmhmm", "mm hm" become
# "mhm". "uh-uh" (a no) stays two words and so matches nothing.
_ONE_WORD_PAIRS = {
    ("uh", "huh"): "uhuh",
    ("m", "hm"): "mhm",
    ("um", "hum"): "mhm",
    ("uh", "hum"): "mhm",
}


def _fold(text: str) -> list[str]:
    """Words of `text` folded so that ASR spellings of one sound compare equal.

    Case, punctuation and hyphens go; letter runs collapse ("mmm hmmm" and "mm hm" agree); the
    two-part interjections become one word, since callers say them as one.
    """
    lowered = text.lower().replace("\u2019", "'").replace(".", "")
    words = [_REPEATS.sub(r"\1", w.strip("'")) for w in _SEPARATORS.split(lowered)]
    words = [w for w in words if w]
    merged: list[str] = []
    for word in words:
        pair = (merged[-1], word) if merged else None
        if pair in _ONE_WORD_PAIRS:
            merged[-1] = _ONE_WORD_PAIRS[pair]
        else:
            merged.append(word)
    return merged


# Longest first, so "all right" is read as one unit before "right" alone is tried.
_BACKCHANNEL_UNITS = sorted(
    (
        tuple(_fold(phrase))
        for phrase in (
            "uh-huh", "mm-hmm", "mhm", "mm", "hmm", "yeah", "yea", "ya", "yep", "yup", "yes",
            "okay", "ok", "kay", "right", "sure", "alright", "all right", "i see", "got it",
            "oh", "ah", "exactly", "that's right", "cool", "great", "perfect", "you're right",
            "true", "that's true", "makes sense", "fair enough",
        )
    ),
    key=len,
    reverse=True,
)  # fmt: skip

_STOP_PHRASES = tuple(
    tuple(_fold(phrase))
    for phrase in (
        "stop", "wait", "no no", "hold on", "hold up", "hang on", "one moment", "one second",
        "one sec", "just a moment", "just a second", "just a sec", "just a minute",
        "excuse me", "shut up", "be quiet", "enough", "that's enough",
    )
)  # fmt: skip
# Words a caller puts in front of a stop request ("no, wait", "yeah but hold on", "can you
# please stop") without changing what it asks.
_STOP_LEAD_INS = frozenset(
    _fold("no oh hey um uh okay ok yeah but sorry please can could would will you just")
)


def is_backchannel(
    text: str,
    duration_ms: int,
    *,
    max_ms: int = MAX_BACKCHANNEL_MS,
    max_words: int = MAX_BACKCHANNEL_WORDS,
) -> bool:
    """Whether caller speech over the agent is only an acknowledgement that should not stop it.

    Empty text is not a back-channel: with no words there is nothing to vouch for the speech.
    """
    if duration_ms < 0:
        raise ValueError(f"duration_ms must not be negative, got {duration_ms}")
    if duration_ms > max_ms:
        return False
    words = _fold(text)
    if not words or len(words) > max_words:
        return False
    return _made_of_units(tuple(words))


def is_stop_request(text: str) -> bool:
    """Whether the caller explicitly asks the agent to stop or wait ("no no", "hold on").

    Only the start of the utterance counts: "wait" opening a sentence is an interruption, while
    "I'll wait for the email" is not.
    """
    words = tuple(_fold(text))
    for start, word in enumerate(words):
        rest = words[start:]
        if any(rest[: len(phrase)] == phrase for phrase in _STOP_PHRASES):
            return True
        if word not in _STOP_LEAD_INS:
            return False
    return False


# Sounds with no words in them: a cough, a breath, a filled pause as the ASR spells it.
_NON_LEXICAL = frozenset(_fold("uh um hm mm ah oh huh er"))


def _non_lexical(word: str) -> bool:
    """A sound with no word in it, as the ASR spells it: a filler, or a lone letter other
    than "I" (Whisper spells a stammer or a hum it cannot place as "Y-y", "R U S R U")."""
    return word in _NON_LEXICAL or (len(word) == 1 and word.isalpha() and word != "i")


# A short overlap with any of these asks something of the agent ("no", "what?", "sorry?").
_TAKES_FLOOR = frozenset(
    _fold(
        "no nope nah not don't stop wait what what's sorry pardon excuse hold hang repeat "
        "again who where when why how"
    )
)


class Overlap(enum.StrEnum):
    """What caller speech over the agent was, as far as the agent's turn is concerned."""

    BACKCHANNEL = "backchannel"  # listening: the agent carries on at once
    UNSURE = "unsure"  # a brief sound that may be either: carry on only if the caller stays quiet
    TURN = "turn"  # the caller is taking the floor: the agent stops


def judge_overlap(text: str, duration_ms: int) -> Overlap:
    """Whether caller speech that paused the agent was a back-channel, a turn, or unclear.

    Acknowledgements (`is_backchannel`) and a click or cough with no words are back-channels.
    An explicit stop request, a negation or a question word, or anything longer than a
    syllable or two, is a turn. What is left is a brief sound the ASR could not place: Whisper
    tiny renders a quick "uh-huh" as "uh-uh", "aha" or a stray word, but it also mishears the
    "Sorry," that opens "Sorry, actually, ...". Those are unsure: the agent resumes if the
    caller stays quiet, and yields if they go on.
    """
    if duration_ms < 0:
        raise ValueError(f"duration_ms must not be negative, got {duration_ms}")
    if is_stop_request(text):
        return Overlap.TURN
    if is_backchannel(text, duration_ms):
        return Overlap.BACKCHANNEL
    words = _fold(text)
    if not words:
        # No words at all: a click or cough, or longer noise the agent should not die on.
        return Overlap.BACKCHANNEL if duration_ms <= BRIEF_OVERLAP_MS else Overlap.UNSURE
    if duration_ms < 800 and all(_non_lexical(w) for w in words):
        return Overlap.UNSURE  # "um" over the agent often comes before a question
    spoken_words = len(text.split())  # "M-f-a" is one garbled word, not three
    if (
        duration_ms <= BRIEF_OVERLAP_MS
        and spoken_words <= 2
        and not any(w in _TAKES_FLOOR for w in words)
    ):
        return Overlap.UNSURE
    return Overlap.TURN


def judge_onset(text: str) -> Overlap:
    """The first words of speech over the agent (its first 150-250 ms, decoded while it goes
    on): `Overlap.TURN` when they already take the floor — a stop request, a negation, a
    question word ("wait", "no", "what", "sorry") — and `Overlap.BACKCHANNEL` otherwise, which
    leaves the agent talking until the whole overlap is judged (or runs too long).

    Nothing else decides this early: from the first 250 ms of an acknowledgement Whisper tiny
    makes "I should." (I see), "You are..." (yeah), "And then..." (uh-huh); stopping on those
    costs the caller the rest of the answer, while a turn that opens some other way is
    stopped when its words are in, or at the back-channel length limit.
    """
    if is_stop_request(text) or any(w in _TAKES_FLOOR for w in _fold(text)):
        return Overlap.TURN
    return Overlap.BACKCHANNEL


def _made_of_units(words: tuple[str, ...]) -> bool:
    if not words:
        return True
    return any(
        words[: len(unit)] == unit and _made_of_units(words[len(unit) :])
        for unit in _BACKCHANNEL_UNITS
    )
