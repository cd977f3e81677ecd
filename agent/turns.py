"""End-of-turn policy: decides when the caller has finished speaking.

Silence alone is a poor end-of-turn signal on the phone: callers pause mid-sentence to find an
order number, and a fixed timeout either cuts them off or makes every answer sluggish. The policy
here waits according to how the transcript so far *ends*:

- a complete sentence or a question ends the turn after a short silence;
- a hesitation (a filled pause, a trailing conjunction, preposition or article, an unfinished
  phrase) gets a long wait, so a mid-sentence pause of up to 1.5 s is not taken as the end;
- so does audio that ended in a filled pause the words left out (`heard_filler`: the engine
  decodes the utterance's last stretch of sound on its own, see agent/hesitation.py), whatever
  the words say, unless the agent already has the number it asked for;
- digits still coming (people read long numbers in groups, "four one one one, one one one
  one, …") get a wait longer than the pause between groups, unless the agent already has the
  number it asked for;
- the agent's own reading of the words adjusts that: words with no cue either way wait less
  when the reply prepared for them answers a request, and words the agent could not make
  sense of wait as long as no words at all, whatever their punctuation (ASR adds a full stop
  at every pause, and a misheard "my order number is" reads as a sentence);
- with no transcript yet, a middle wait, re-evaluated as soon as a transcript arrives;
- whatever the text, a hard cap on silence ends the turn.

Everything is driven by timestamps passed in, so the policy is tested on timelines; the engine
owns the clock, the VAD and the ASR.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Protocol


class Ending(enum.StrEnum):
    """How a transcript ends, as far as turn-taking is concerned."""

    COMPLETE = "complete"
    QUESTION = "question"
    HESITATION = "hesitation"
    DIGITS = "digits"  # a run of digits: a number being read, perhaps in groups
    PRE_CLOSING = "pre_closing"  # thanks and nothing else: a goodbye often follows
    UNKNOWN = "unknown"


class EndReason(enum.StrEnum):
    """Why a turn was ended; also the label for endpointing-latency metrics."""

    COMPLETE = "complete"
    QUESTION = "question"
    HESITATION = "hesitation"
    DIGITS = "digits"
    PRE_CLOSING = "pre_closing"
    UNKNOWN = "unknown"
    UNDERSTOOD = "understood"
    NOT_UNDERSTOOD = "not_understood"
    NO_TRANSCRIPT = "no_transcript"
    HARD_CAP = "hard_cap"


@dataclass(frozen=True, slots=True)
class TurnConfig:
    """Silence waits in milliseconds, counted from the `speech_stopped` timestamp.

    If the VAD reports `speech_stopped` only after its own hangover, that hangover is already
    spent before these waits start; pass the time of the last voiced frame where the VAD has it.
    """

    # Questions are the clearest hand-over on the phone, and the caller is waiting for an answer;
    # the usual gap between turns in conversation is about 200 ms. The engine has the reply
    # ready by then (it is prepared while this wait runs), and a caller who goes on anyway
    # barges in and stops it.
    question_wait_ms: int = 200
    # A finished statement is nearly as clear, but lists ("I need a refund. And ...") often follow
    # a full stop, so allow a little more. Still inside the 400 ms voice-to-voice p50 budget
    # together with the phone path.
    complete_wait_ms: int = 250
    # Words with no cue either way (typical of unpunctuated streaming ASR): we have ruled out the
    # common mid-sentence cues, so wait less than with no transcript, but more than after a
    # clear ending, to cover a breath between clauses (300 to 500 ms).
    unknown_wait_ms: int = 500
    # The same words when the agent understood them as a request it can answer ("you price
    # match", as Whisper often writes a question): a sentence that already makes a whole
    # request is usually finished, but without the ASR's full stop allow a breath more than
    # after a statement.
    understood_wait_ms: int = 300
    # Words the agent could not make sense of, whatever their punctuation: the agent will only
    # ask the caller to say it again, so answering fast gains little, while a caller still
    # finding their words is cut off: Whisper makes sentences of hesitant starts ("I ordered
    # them, there is." for "my order number is"; "I want to do them." for "I want to, hmm";
    # "My quest, join us here." for "My question is, er"). Wait through a 1.5 s hesitation,
    # with VAD jitter, as after a filler: on the corpus's tuning half a 600 ms wait here was
    # the cause of 8 of the 11 pause take-overs left once fillers were heard.
    not_understood_wait_ms: int = 1700
    # No words yet (ASR lagging behind the VAD): inter-clause pauses rarely exceed 600 ms, and a
    # transcript arriving meanwhile shortens or lengthens this.
    no_transcript_wait_ms: int = 600
    # Must exceed the 1.5 s hesitation target with margin for VAD timestamp jitter and a
    # `speech_stopped` that lands a frame or two early.
    hesitation_wait_ms: int = 2000
    # A number read in groups: the pause between groups runs 0.5-1 s ("four one one one,
    # one one one one"), so wait past it — unless the agent has the whole number it asked for
    # (the responder's reading says so), which then waits as any understood request.
    digits_wait_ms: int = 1300
    # Thanks with nothing after it ("Okay, thank you.", "That's all I needed, thanks"): the
    # first half of a closing, which callers finish with "goodbye" after a breath (220-440 ms
    # in the turn corpus's voices). Answered at 250 ms, "You're welcome, anything else?" lands
    # on the caller's "Goodbye". The reply ("You're welcome") is not worth cutting them off.
    pre_closing_wait_ms: int = 700
    # Beyond this, the caller is not coming back without a prompt; the agent should speak (for
    # example "take your time"). It also bounds any wait a line profile configures.
    hard_cap_ms: int = 2500

    def __post_init__(self) -> None:
        for name in (
            "question_wait_ms",
            "complete_wait_ms",
            "unknown_wait_ms",
            "understood_wait_ms",
            "not_understood_wait_ms",
            "no_transcript_wait_ms",
            "hesitation_wait_ms",
            "digits_wait_ms",
            "pre_closing_wait_ms",
            "hard_cap_ms",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"TurnConfig.{name} must be a positive number of milliseconds")

    def wait_for(
        self,
        ending: Ending | None,
        *,
        understood: bool | None = None,
        number_taken: bool = False,
        filler: bool = False,
    ) -> tuple[EndReason, int]:
        """The reason a turn would end for this ending, and the silence it needs (capped).

        `understood`: whether the words so far make a request the agent can answer (None: not
        known yet). It shortens the wait for an ending with no cue either way, and lengthens
        any but a hesitation's when the agent could not make sense of the words. A number is
        over only when the agent took it whole into the slot that asked for it (`number_taken`);
        understood otherwise, it may still be one group of several. `filler`: the audio ended
        in a filled pause, which the words may have left out: a hesitation whatever they say,
        unless the number is taken.
        """
        if filler and not number_taken:
            ending = Ending.HESITATION
        if ending is Ending.DIGITS:
            if number_taken:
                return EndReason.UNDERSTOOD, min(self.understood_wait_ms, self.hard_cap_ms)
            return EndReason.DIGITS, min(self.digits_wait_ms, self.hard_cap_ms)
        if ending is Ending.UNKNOWN and understood is True:
            return EndReason.UNDERSTOOD, min(self.understood_wait_ms, self.hard_cap_ms)
        if ending in (Ending.COMPLETE, Ending.QUESTION, Ending.UNKNOWN) and understood is False:
            return EndReason.NOT_UNDERSTOOD, min(self.not_understood_wait_ms, self.hard_cap_ms)
        reason, wait_ms = {
            Ending.COMPLETE: (EndReason.COMPLETE, self.complete_wait_ms),
            Ending.QUESTION: (EndReason.QUESTION, self.question_wait_ms),
            Ending.HESITATION: (EndReason.HESITATION, self.hesitation_wait_ms),
            Ending.DIGITS: (EndReason.DIGITS, self.digits_wait_ms),
            Ending.PRE_CLOSING: (EndReason.PRE_CLOSING, self.pre_closing_wait_ms),
            Ending.UNKNOWN: (EndReason.UNKNOWN, self.unknown_wait_ms),
            None: (EndReason.NO_TRANSCRIPT, self.no_transcript_wait_ms),
        }[ending]
        if wait_ms >= self.hard_cap_ms:
            return EndReason.HARD_CAP, self.hard_cap_ms
        return reason, wait_ms


@dataclass(frozen=True, slots=True)
class TurnDecision:
    """The caller's turn has ended.

    `silence_ms` is how long after `speech_stopped` the decision came (the endpointing latency);
    it is at least `wait_ms` and exceeds it by the tick granularity or a late transcript.
    """

    reason: EndReason
    wait_ms: int
    silence_ms: int
    at_ms: int


class TurnDetector(Protocol):
    """Decides when the caller's turn is over from VAD events, transcripts and clock ticks.

    All timestamps come from one monotonic clock in milliseconds and must not go backwards.
    """

    def speech_started(self, t_ms: int) -> None: ...

    def speech_stopped(self, t_ms: int) -> None: ...

    def partial_transcript(self, text: str, t_ms: int) -> None: ...

    def judged(self, text: str, *, understood: bool, number_taken: bool = False) -> None:
        """Whether the agent understood `text` as a request it can answer (a hint), and
        whether it ended in the whole number the agent asked for."""
        ...

    def heard_filler(self, text: str) -> None:
        """The audio after which the ASR wrote `text` ended in a filled pause."""
        ...

    def tick(self, t_ms: int) -> TurnDecision | None:
        """The decision, once, when the turn has ended by `t_ms`; otherwise None."""
        ...

    def reset(self) -> None:
        """Forget the current turn (the call was transferred, the agent took the floor, ...)."""
        ...


class _State(enum.Enum):
    IDLE = enum.auto()
    SPEAKING = enum.auto()
    SILENT = enum.auto()


class HesitationAwareTurns:
    """The default `TurnDetector`: waits according to `classify_ending` of the latest transcript.

    VAD events that do not fit the state (a stop with no start, a second start) are ignored:
    VADs emit them around resets and they carry no information about the turn.
    """

    def __init__(self, config: TurnConfig | None = None) -> None:
        self._config = config or TurnConfig()
        self._state = _State.IDLE
        self._stopped_at = 0
        self._ending: Ending | None = None
        self._text = ""
        self._understood: bool | None = None
        self._number_taken = False
        self._filler = False
        # False once speech resumes: the transcript then describes only the earlier segment.
        self._fresh = True
        self._last_t = 0

    # VAD events are reported after the VAD's own hangover, so their times may lie before the
    # last tick; only `tick` must move forward.

    def speech_started(self, t_ms: int) -> None:
        if self._state is _State.SPEAKING:
            return
        if self._state is _State.IDLE:
            self._ending = None
        self._fresh = False
        self._understood = None
        self._number_taken = False
        self._filler = False
        self._state = _State.SPEAKING

    def speech_stopped(self, t_ms: int) -> None:
        if self._state is _State.SPEAKING:
            self._state = _State.SILENT
            self._stopped_at = t_ms

    def partial_transcript(self, text: str, t_ms: int) -> None:
        if self._state is _State.IDLE:
            # A late partial for a turn already decided must not colour the next turn.
            return
        self._ending = classify_ending(text) if text.strip() else None
        if text != self._text:
            self._understood = None
            self._number_taken = False
            self._filler = False
        self._text = text
        self._fresh = True

    def judged(self, text: str, *, understood: bool, number_taken: bool = False) -> None:
        # Only for the words the turn is judged on now: a hint about older or newer words
        # (the caller spoke on meanwhile) says nothing about this ending.
        if self._state is not _State.IDLE and self._fresh and text == self._text:
            self._understood = understood
            self._number_taken = number_taken

    def heard_filler(self, text: str) -> None:
        # Like `judged`: only about the words the turn is judged on now.
        if self._state is not _State.IDLE and self._fresh and text == self._text:
            self._filler = True

    def tick(self, t_ms: int) -> TurnDecision | None:
        self._advance(t_ms)
        if self._state is not _State.SILENT:
            return None
        silence_ms = t_ms - self._stopped_at
        reason, wait_ms = self._pending_wait()
        if silence_ms < wait_ms:
            return None
        self.reset()
        return TurnDecision(reason=reason, wait_ms=wait_ms, silence_ms=silence_ms, at_ms=t_ms)

    def _pending_wait(self) -> tuple[EndReason, int]:
        known = self._config.wait_for(
            self._ending,
            understood=self._understood,
            number_taken=self._number_taken,
            filler=self._filler,
        )
        if self._fresh:
            return known
        # Speech resumed and the ASR has not caught up. The new segment may have been a breath or
        # a cough after "my order number is um", so never wait less than the old ending asked
        # for; it may also have been words, so never less than with no transcript at all.
        unheard = self._config.wait_for(None)
        return max(known, unheard, key=lambda reason_wait: reason_wait[1])

    def reset(self) -> None:
        self._state = _State.IDLE
        self._ending = None
        self._text = ""
        self._understood = None
        self._number_taken = False
        self._filler = False
        self._fresh = True

    def _advance(self, t_ms: int) -> None:
        if t_ms < self._last_t:
            raise ValueError(
                f"turn detector time went backwards ({t_ms} ms after {self._last_t} ms); "
                "pass timestamps from one monotonic clock"
            )
        self._last_t = t_ms


# --- classifying how a transcript ends ---------------------------------------------------------

_WORD = re.compile(r"[a-z0-9']+")
_REPEATS = re.compile(r"(.)\1+")
_CUT_OFF = ("...", "\u2026", "-", "\u2013", "\u2014")
_CLOSERS = "\"')]\u201d\u2019 "

# One-word answers written with a hyphen: "uh-uh" is a no and "uh-huh" a yes, not filled pauses.
_INTERJECTION_END = re.compile(r"\b(?:uh-h?uh|mm-hm+|m-hm+|uh-oh)$")

# Elongations ("ummm", "hmmm") are folded before the lookup, so these are the folded spellings.
_FILLERS = frozenset({"um", "uhm", "uh", "er", "erm", "hm", "m", "ah", "eh"})

# Words after which English almost never stops; ASR punctuation does not overrule them, because
# streaming ASR adds a full stop at every pause, which is exactly when we are asked.
_STRONG_CONTINUATIONS = frozenset(
    {
        "a", "an", "the", "my", "your", "our", "their", "its",
        "and", "but", "or", "nor", "so", "because", "cause", "if", "than",
        "unless", "whether", "plus", "gonna", "wanna", "gotta", "very",
    }
)  # fmt: skip

# Words a sentence may legitimately end on ("what is it for?", "I don't know what it is."), so
# terminal punctuation from the ASR wins; without it they mark an unfinished sentence. "like" is
# a filler too, but "what does it look like?" is a real question, so it lives here.
_WEAK_CONTINUATIONS = frozenset(
    {
        "to", "of", "with", "for", "about", "from", "in", "on", "at", "by", "into", "onto",
        "over", "under", "through", "after", "before", "between", "without", "around", "as",
        "until", "since", "while", "like",
        "is", "are", "was", "were", "am", "be", "been", "being", "have", "has", "had", "do",
        "does", "did", "will", "would", "can", "could", "should", "shall", "may", "might", "must",
        "i", "we", "they", "he", "she",
        "it's", "i'm", "that's", "there's", "here's", "what's", "we're", "they're", "you're",
        "he's", "she's", "i've", "we've", "they've", "you've", "i'd", "we'd", "they'd", "you'd",
        "i'll", "we'll", "they'll", "you'll", "it'll", "let's",
    }
)  # fmt: skip

# Endings that hold the floor whatever the punctuation: the caller has announced more to come
# ("my order number is", "I want to") or asked for a moment ("hold on", "let me check").
_UNFINISHED_PHRASES = tuple(
    tuple(phrase.split())
    for phrase in (
        "number is", "name is", "address is", "email is", "account is", "problem is",
        "issue is", "question is", "reason is", "thing is", "point is", "it's about",
        "it is about", "this is about", "calling about", "calling because", "calling to",
        "wondering if", "wondering whether", "want to", "wanted to", "need to", "needed to",
        "trying to", "going to", "have to", "like to", "hoping to", "able to", "supposed to",
        "hold on", "hang on", "one sec", "one second", "one moment", "just a sec",
        "just a second", "just a moment", "give me a sec", "give me a second", "let me see",
        "let me think", "let me check", "let me look", "let me find",
    )
)  # fmt: skip

# Idioms that end on a continuation word but are finished ("I think so.", "a week or so").
_SETTLED_PHRASES = tuple(
    tuple(phrase.split())
    for phrase in (
        "think so", "hope so", "guess so", "believe so", "suppose so", "said so", "or so",
        "and so on", "so so", "if so",
    )
)  # fmt: skip

# Discourse words callers put before a question ("so what are your hours").
_LEAD_INS = frozenset(
    {
        "so", "and", "but", "okay", "ok", "um", "uh", "well", "hi", "hello", "yeah", "oh",
        "hey", "also", "then", "right", "alright",
    }
)  # fmt: skip
_QUESTION_OPENERS = frozenset(
    {
        "what", "when", "where", "who", "whom", "whose", "why", "how", "which", "can", "could",
        "do", "does", "did", "is", "are", "was", "were", "will", "would", "should", "shall",
        "may", "am", "isn't", "aren't", "don't", "doesn't", "didn't", "won't", "can't",
        "what's", "where's", "who's", "how's", "when's",
    }
)  # fmt: skip


def classify_ending(text: str) -> Ending:
    """How `text` (a possibly partial, possibly unpunctuated transcript) ends.

    Order matters: filled pauses and announced continuations beat ASR punctuation (which marks
    pauses, not sentence ends), punctuation beats words that may legitimately close a sentence,
    and a question opener only decides when nothing else does.
    """
    stripped = text.strip().rstrip(_CLOSERS)
    words = _words(stripped)
    if not words:
        return Ending.UNKNOWN
    if stripped.endswith(_CUT_OFF):
        return Ending.HESITATION
    terminal = stripped[-1]
    if _INTERJECTION_END.search(stripped.lower().rstrip(".!?,")):
        return Ending.QUESTION if terminal == "?" else Ending.COMPLETE
    if _ends_with(words, _SETTLED_PHRASES):
        return Ending.QUESTION if terminal == "?" else Ending.COMPLETE
    if terminal != "?" and _pre_closing(words):
        return Ending.PRE_CLOSING
    last = words[-1]
    if _REPEATS.sub(r"\1", last) in _FILLERS:
        return Ending.HESITATION
    if _trailing_digits(words):
        return Ending.DIGITS
    if _ends_with(words, _UNFINISHED_PHRASES) or last in _STRONG_CONTINUATIONS:
        return Ending.HESITATION
    if terminal == "?":
        return Ending.QUESTION
    if terminal in ".!":
        return Ending.COMPLETE
    if last in _WEAK_CONTINUATIONS:
        return Ending.HESITATION
    if _first_content_word(words) in _QUESTION_OPENERS:
        return Ending.QUESTION
    return Ending.UNKNOWN


# Words a number is read in: digits ("oh" for zero), pairs ("forty one eleven"), repeats.
_NUMBER_WORDS = frozenset(
    {
        "zero", "oh", "o", "one", "two", "three", "four", "five", "six", "seven", "eight",
        "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
        "seventeen", "eighteen", "nineteen", "twenty", "thirty", "forty", "fifty", "sixty",
        "seventy", "eighty", "ninety", "hundred", "double", "triple",
    }
)  # fmt: skip


# What a pre-closing is made of: thanks, or "that's all", with acknowledgements around them.
_THANKS_UNITS = tuple(
    tuple(unit.split())
    for unit in (
        "thank you very much", "thank you so much", "thanks a lot", "thanks so much",
        "thank you for your help", "thanks for your help", "thank you for the help",
        "thanks for the help", "thank you for that", "thanks for that",
        "thank you", "thanks", "that's all i needed", "that's all i need", "that's all",
        "that's it", "that's everything", "that was all",
    )
)  # fmt: skip
_ACK_WORDS = frozenset(
    [
        "okay", "ok", "alright", "all", "right", "great", "perfect", "cool", "awesome",
        "wonderful", "good", "fine", "got", "it", "then", "oh", "well", "yeah", "yes", "sounds",
    ]
)  # fmt: skip


def is_pre_closing(text: str) -> bool:
    """Whether `text` is thanks or "that's all" and nothing else but acknowledgements
    ("okay", "great"): the first half of a closing ("Okay, thank you.")."""
    return _pre_closing(_words(text))


def _pre_closing(words: list[str]) -> bool:
    thanked, i = False, 0
    while i < len(words):
        unit = next((u for u in _THANKS_UNITS if tuple(words[i : i + len(u)]) == u), None)
        if unit is not None:
            thanked, i = True, i + len(unit)
        elif words[i] in _ACK_WORDS:
            i += 1
        else:
            return False
    return thanked


def is_filled_pause(text: str) -> bool:
    """Whether `text` is nothing but filled pauses ("Um...", "uh", "Hmmm,"): what Whisper
    writes for a filler decoded on its own."""
    words = _words(text)
    return bool(words) and all(_REPEATS.sub(r"\1", word) in _FILLERS for word in words)


def _trailing_digits(words: list[str]) -> bool:
    """Whether the words end in a number being read: two or more number words or numerals in
    a run, or one numeral of two or more digits ("4111", "4-1 one one"); a lone "one" or
    "two" ends many a finished sentence ("I'd like two.")."""
    run = 0
    for word in reversed(words):
        if word.isdigit() or word in _NUMBER_WORDS:
            run += 1
        else:
            break
    return run >= 2 or (run == 1 and words[-1].isdigit() and len(words[-1]) >= 2)


def _words(text: str) -> list[str]:
    normalized = text.lower().replace("\u2019", "'")
    return [w.strip("'") or w for w in _WORD.findall(normalized)]


def _ends_with(words: list[str], phrases: tuple[tuple[str, ...], ...]) -> bool:
    return any(tuple(words[-len(p) :]) == p for p in phrases if len(p) <= len(words))


def _first_content_word(words: list[str]) -> str:
    for word in words:
        if word not in _LEAD_INS:
            return word
    return ""
