"""The embedded agent's responder: one caller turn's final transcript in, the agent's reply out.

A ``Conversation`` is one call's dialogue state: it answers FAQ entries by embedding similarity,
asks one clarifying question when unsure, walks the caller through slot-filling procedures
(typed or spoken digits, email addresses, yes/no), and decides when to hand off to a person.
The transcript comes from a small ASR model, so the parsers below accept spoken forms ("one two
three", "jane dot doe at example dot com") as well as written ones.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

from agent.coaching import say_note, say_to_caller
from agent.knowledge import (
    HUMAN_INTENT,
    Embedder,
    Entry,
    Intent,
    KnowledgeBase,
    KnowledgeIndex,
    Procedure,
    Slot,
    Vectors,
)
from agent.numbers import is_number_word, is_sound_alike, parse_spoken_digits
from agent.turns import is_filled_pause, is_pre_closing

log = logging.getLogger(__name__)

# Tuned on the sample KB with all-MiniLM-L6-v2 (docs/knowledge-base.md has the numbers):
# paraphrases of covered questions scored 0.56-1.0 (median 0.89), off-topic utterances
# 0.13-0.56 (median 0.33). Below the answer threshold the agent asks instead of guessing, and a
# clarifying question is cheap to recover from ("yes" answers it), so the threshold sits above
# the off-topic maximum rather than below the in-domain minimum.
DEFAULT_ANSWER_THRESHOLD = 0.6
DEFAULT_CLARIFY_FLOOR = 0.35
# Asking for a person in words the keyword rules miss scored >= 0.6; chit-chat stayed <= 0.53.
DEFAULT_HUMAN_THRESHOLD = 0.6
# A second topic is offered in a clarifying question only if it scored nearly as well.
_CLARIFY_SPREAD = 0.1
# A supervisor's note about this caller is more specific than the line's general answers: it
# answers a question that shares its words unless a knowledge-base entry scores this much higher,
# and one that shares this many of its words whatever the knowledge base says ("when will my
# refund arrive" after "refund approved; it will arrive in 3 days", not the refund policy).
_NOTE_PREFERENCE = 0.15
_NOTE_SHARED_WORDS = 2
_HISTORY_LIMIT = 200


class ReplyKind(StrEnum):
    ANSWER = "answer"
    CLARIFY = "clarify"
    HANDOFF = "handoff"
    PROCEDURE_PROMPT = "procedure_prompt"
    PROCEDURE_DONE = "procedure_done"
    PROCEDURE_CANCELLED = "procedure_cancelled"
    GREETING = "greeting"
    GOODBYE = "goodbye"
    REPROMPT = "reprompt"
    INVITE = "invite"  # the caller has another question: "Sure, go ahead."
    RESUME = "resume"  # back on the call after a supervisor's takeover
    NOTE = "note"  # answered from a supervisor's hand-back note
    REPEAT = "repeat"  # the caller asked to hear the last thing again
    SMALL_TALK = "small_talk"  # "how are you?", "am I talking to a robot?": a word, then back


@dataclass(frozen=True)
class Reply:
    """What the agent says next. ``entry_id`` names the FAQ entry or procedure it came from.

    ``understood`` is False when the caller's words were not a request the agent could act on
    (it asks again, or gives up after repeated misses); the engine then waits longer before
    taking the turn, since the caller may still be finding their words.

    ``whisper`` is the supervisor's instruction, as said to the caller, when this reply carries
    one.
    """

    kind: ReplyKind
    text: str
    confidence: float
    entry_id: str | None = None
    handoff_reason: str | None = None
    end_call: bool = False
    understood: bool = True
    whisper: str = ""
    # The caller's words ended in the whole number a digits slot asked for: nothing more is
    # coming (the turn detector need not wait for another group of digits).
    number_taken: bool = False


class Source(StrEnum):
    """Who put a line into the dialogue."""

    CALLER = "caller"
    AGENT = "agent"
    # Whispered to the agent; the caller never heard these words.
    SUPERVISOR_INSTRUCTION = "supervisor_instruction"
    # Left when the supervisor handed the call back; a fact later answers may use.
    SUPERVISOR_NOTE = "supervisor_note"


@dataclass(frozen=True, slots=True)
class HistoryItem:
    source: Source
    text: str


# --- spoken forms --------------------------------------------------------------------------


def speak_digits(digits: str) -> str:
    """Digits spaced out so text-to-speech reads them one by one, not as one big number."""
    return " ".join(digits)


_EMAIL = re.compile(r"^[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}$")
_EMAIL_WORDS = {
    "dot": ".", "period": ".", "point": ".", "underscore": "_", "dash": "-",
    "hyphen": "-", "minus": "-", "plus": "+",
}  # fmt: skip
_EMAIL_PREAMBLE = {
    "my", "email", "e-mail", "mail", "address", "is", "it's", "its", "it", "the", "sure",
    "yes", "yeah", "okay", "ok", "so", "that's", "um", "uh", "account", "oh", "and", "on",
}  # fmt: skip


def parse_spoken_email(text: str) -> str | None:
    """An email address from its spoken form ("jane dot doe at example dot com"), or None."""
    tokens = [t.strip(",!?;:\"'").rstrip(".") for t in text.lower().split()]
    tokens = [t for t in tokens if t]
    joined = " ".join(tokens).replace("at sign", "at").replace("at symbol", "at")
    tokens = joined.split()
    at_positions = [i for i, t in enumerate(tokens) if t in {"at", "@"} or "@" in t]
    if not at_positions:
        return None
    split = at_positions[-1]
    local_tokens = tokens[:split]
    while local_tokens and local_tokens[0] in _EMAIL_PREAMBLE:
        local_tokens.pop(0)
    if tokens[split] not in {"at", "@"}:
        local_tokens.append(tokens[split])
    parts = [*local_tokens, "@" if tokens[split] in {"at", "@"} else "", *tokens[split + 1 :]]
    address = "".join(_EMAIL_WORDS.get(part, part) for part in parts)
    return address if _EMAIL.match(address) else None


def speak_email(address: str) -> str:
    """An address as words, so text-to-speech does not spell out the symbols."""
    spoken = address
    for symbol, word in (
        (".", " dot "),
        ("@", " at "),
        ("_", " underscore "),
        ("-", " dash "),
        ("+", " plus "),
    ):
        spoken = spoken.replace(symbol, word)
    return " ".join(spoken.split())


_YES = {
    "yes", "yeah", "yep", "yup", "ya", "yea", "yah", "correct", "right", "sure", "affirmative",
    "ok", "okay", "absolutely", "exactly", "uh-huh", "mm-hmm", "mhm", "definitely", "please",
}  # fmt: skip
_NO = {
    "no", "nope", "nah", "not", "wrong", "incorrect", "negative", "don't", "isn't", "wasn't",
    "nuh-uh",
}  # fmt: skip


def parse_yes_no(text: str) -> bool | None:
    """True for yes, False for no, None if the caller said neither; the first such word wins."""
    for token in re.findall(r"[a-z]+(?:['-][a-z]+)*", text.lower()):
        if token in _NO:
            return False
        if token in _YES:
            return True
    return None


# --- what the caller asked for, by keywords ------------------------------------------------

# Whisper's spellings of the words callers use to ask for a person.
_PERSON = (
    r"(?:person|human(?: being)?|humans|agent|agents|representatives?|represent[ai]tive|"
    r"representive|reprehensive|rep|reps|operator|opp?erat[eo]r|manager|supervisor|associate|"
    r"employee|somebody|someone|anyone|anybody|customer (?:service|support|care)|"
    r"(?:real|live|actual) (?:one|person|people|agent))"
)
_ASKS_FOR_PERSON = re.compile(
    rf"\b(?:talk|talking|speak|speaking|chat|connect|transfer|put me through|get me|"
    rf"give me|reach)\b(?:\s+\w+){{0,4}}?\s+{_PERSON}\b"
    rf"|\b(?:want|need|like)\s+(?:an?\s+|the\s+|to\s+have\s+an?\s+)?"
    rf"(?:real\s+|live\s+|actual\s+)?"
    rf"(?:person|human|agent|representative|operator|manager|supervisor)\b"
    rf"|\b(?:someone|somebody) (?:real|human|alive)\b"
    r"|\b(?:not|don't want|no more)\s+(?:\w+\s+){0,3}?(?:a|an|the|this|some)\s+"
    r"(?:robot|machine|bot|computer)s?\b",
)
# A short utterance that is just the noun ("operator", "agent please", "representative").
_BARE_PERSON = re.compile(
    r"^(?:an?\s+|the\s+|um\s+|uh\s+)?(?:real\s+|live\s+)?"
    r"(?:human|agent|representative|represent[ai]tive|representive|reprehensive|operator|"
    r"opp?erat[eo]r|manager|supervisor|person|real person|live person|live agent)s?"
    r"(?:\s+please)?(?:\s+(?:human|agent|representative|operator|person|please))*$"
)
_GOODBYE = re.compile(
    r"\b(?:good ?bye|bye|bye-bye|that's all|that is all|that's it|that is it|nothing else|"
    r"no thanks?|no thank you|i'm all set|all set|have a (?:good|nice|great) (?:day|one|night))\b"
)
_BARE_NO = re.compile(r"^(?:no|nope|nah|no i'm good|i'm good|i'm fine|no that's fine)$")
_CANCEL = re.compile(
    r"\b(?:never ?mind|cancel(?: that| it| this)?|forget (?:it|that|about it)|stop|"
    r"i changed my mind|don't bother|skip (?:it|that))\b"
)
_GOODBYE_MAX_WORDS = 8
# The caller turns to another question: "sorry, wait, I have a different question", "can I ask
# about something else", "I have a question". What follows the phrase, if anything, is the
# question itself.
_SWITCH = re.compile(
    r"\b(?:(?:i have|i've got|i got|there's|got) (?:a|an|one|another|one more|a different|"
    r"a quick|a second|a separate|some other|other|different)(?: quick| other| different)? "
    r"(?:question|thing|query)s?"
    r"|(?:a|another|one more|some) (?:different|other|separate|new) (?:question|thing|topic|"
    r"matter|issue)"
    r"|(?:ask|asking|talk|talking)(?: you)? about something else|something else"
    r"|change (?:the|of) subject|different subject)\b"
)
# The caller asks to hear it again: "can you repeat that", "say that again", "sorry, what did
# you say", "I didn't catch that", "pardon?", "slower please".
_REPEAT = re.compile(
    r"\b(?:(?:can|could|would|will) you (?:please )?(?:repeat|say) (?:that|it|this|the last "
    r"part)(?: again)?|repeat (?:that|it|this|please|yourself|the last part)|say (?:that|it) "
    r"again|come again|one more time|once more|what did you (?:just )?say|what was that|"
    r"i didn't (?:catch|hear|get|understand) (?:that|it|you|what you said)|"
    r"slow(?:er| down)|more slowly|too fast)\b"
    r"|^(?:pardon|pardon me|sorry|excuse me|what|huh|repeat)$"
)
_REPEAT_MAX_WORDS = 10
# A short follow-up on the last answer: "and on Sunday?", "what about returns in store?".
_FOLLOW_UP = re.compile(r"^(?:and|also|what about|how about|and what about|plus)\b")
_FOLLOW_UP_MAX_WORDS = 6
# Words that start or soften a turn without saying what it is about.
_DISCOURSE = frozenset(
    [
        "sorry", "wait", "actually", "hold", "hang", "hey", "excuse", "well", "right", "just",
        "okay", "ok", "alright", "all", "oh", "so", "yeah", "um", "uh", "hmm", "er",
    ]
)  # fmt: skip


def _normalise(text: str) -> str:
    """Lowercase words without the punctuation ASR adds, apostrophes kept."""
    text = text.lower().replace("\N{RIGHT SINGLE QUOTATION MARK}", "'")
    return " ".join(re.findall(r"[a-z0-9@]+(?:['.-][a-z0-9]+)*", text))


def asks_to_repeat(text: str) -> bool:
    """Whether the caller asks to hear the agent's last words again (or more slowly)."""
    clean = _normalise(text)
    return len(clean.split()) <= _REPEAT_MAX_WORDS and _REPEAT.search(clean) is not None


def asks_for_person(text: str) -> bool:
    clean = _normalise(text)
    return bool(_ASKS_FOR_PERSON.search(clean) or _BARE_PERSON.match(clean))


def says_goodbye(text: str, *, expecting_answer: bool = False) -> bool:
    """Whether the caller is ending the call.

    While the agent waits for an answer (a yes/no, a slot, "do you mean…?"), "no" or "that's it"
    answer the question, so only an explicit "bye" counts then.
    """
    clean = _normalise(text)
    words = clean.split()
    if expecting_answer:
        return bool(words) and bool({"bye", "goodbye", "bye-bye"} & set(words))
    if _BARE_NO.match(clean):
        return True
    # A long sentence that mentions "that's all" is usually a question, not a farewell.
    return bool(_GOODBYE.search(clean)) and (
        len(words) <= _GOODBYE_MAX_WORDS or words[-1] in {"bye", "goodbye"}
    )


# --- the conversation ----------------------------------------------------------------------

SilenceOutcome = Literal["handoff", "goodbye"]
_ANYTHING_ELSE = "Is there anything else I can help with?"

# Small talk, when it is the whole turn (a greeting before a question is left to the question).
_HELLO = re.compile(
    r"^(?:(?:hi|hello|hey|hiya|good (?:morning|afternoon|evening))(?: there)?)"
    r"(?: (?:how are you(?: doing)?(?: today)?|how's it going))?$"
)
_HOW_ARE_YOU = re.compile(
    r"^(?:and |oh |so |well )?(?:how are you(?: doing)?(?: today)?|how's it going|"
    r"how's your day(?: going)?|how are things|you doing (?:ok|okay|well))$"
)


@dataclass
class _ActiveProcedure:
    procedure: Procedure
    slot_index: int = 0
    values: dict[str, str] = field(default_factory=dict)
    confirming: bool = False
    attempts: int = 0  # failed tries at the current slot or confirmation
    keyed: str = ""  # DTMF digits typed so far for the current slot

    @property
    def slot(self) -> Slot:
        return self.procedure.slots[self.slot_index]


@dataclass(frozen=True, slots=True)
class _NoteMatch:
    text: str
    score: float  # cosine similarity to the question
    shared: int  # content words in common with the question


class Conversation:
    """One call's dialogue with the knowledge base; feed it every final caller turn."""

    def __init__(
        self,
        kb: KnowledgeBase,
        index: KnowledgeIndex,
        embedder: Embedder,
        *,
        answer_threshold: float = DEFAULT_ANSWER_THRESHOLD,
        clarify_floor: float = DEFAULT_CLARIFY_FLOOR,
        human_threshold: float = DEFAULT_HUMAN_THRESHOLD,
        max_misses: int = 2,
        max_slot_attempts: int = 3,
        silence_outcome: SilenceOutcome = "handoff",
    ) -> None:
        if not 0.0 <= clarify_floor <= answer_threshold <= 1.0:
            raise ValueError("need 0 <= clarify_floor <= answer_threshold <= 1")
        if index.kb != kb:
            raise ValueError("the index was built for a different knowledge base")
        self.kb = kb
        self._index = index
        self._embedder = embedder
        self._answer_threshold = answer_threshold
        self._clarify_floor = clarify_floor
        self._human_threshold = human_threshold
        self._max_misses = max_misses
        self._max_slot_attempts = max_slot_attempts
        self._silence_outcome: SilenceOutcome = silence_outcome
        self.misses = 0
        self._silences = 0
        self._active: _ActiveProcedure | None = None
        self._offered: tuple[Entry | Procedure, ...] = ()
        self._last_question = _ANYTHING_ELSE
        self._last_answered = ""  # the caller's words the last knowledge-base answer answered
        self._last_entry: Entry | None = None  # ... and the entry it came from
        self._last_said = ""  # the agent's last words, for a caller who asks to hear them again
        self.history: list[HistoryItem] = []
        self._whispers: list[str] = []  # said to the caller in the next answer, then dropped
        self._notes: list[tuple[str, Vectors]] = []  # (the note as said, its embedding)
        self._facts: dict[str, str] = {}  # every slot value the caller gave, by slot name

    def fork(self) -> Conversation:
        """An independent copy of this call's dialogue state, sharing the knowledge base.

        The engine answers a turn on a fork while it waits to be sure the caller has finished,
        then adopts the fork or throws it away.
        """
        twin = copy.copy(self)
        if self._active is not None:
            twin._active = replace(self._active, values=dict(self._active.values))
        twin.history = list(self.history)
        twin._whispers = list(self._whispers)
        twin._notes = list(self._notes)
        twin._facts = dict(self._facts)
        return twin

    @property
    def facts(self) -> dict[str, str]:
        """The slot values the caller has given on this call (the latest for each slot name),
        for a supervisor's warm-handoff summary."""
        return dict(self._facts)

    @property
    def collecting_sensitive(self) -> bool:
        """Whether the agent is asking for (or confirming) a sensitive slot: the call's
        recording and transcript are paused until this is False again."""
        active = self._active
        if active is None:
            return False
        if active.confirming:
            return any(slot.sensitive for slot in active.procedure.slots)
        return active.slot.sensitive

    @property
    def active_procedure(self) -> str | None:
        return self._active.procedure.id if self._active else None

    def greeting(self) -> Reply:
        return self._record(self._say(Reply(ReplyKind.GREETING, self.kb.greeting, 1.0)))

    def instruct(self, text: str) -> None:
        """A supervisor's whisper: nothing is said now; the next answer to the caller says it
        (phrased for the caller), once."""
        said = say_to_caller(text)
        if not said:
            return
        self._remember(Source.SUPERVISOR_INSTRUCTION, text.strip())
        self._whispers.append(said)

    def resume(self, note: str | None) -> Reply:
        """Back on the call after a supervisor's takeover: say so, then the note as a fact,
        which later answers may use."""
        self._active = None
        self._offered = ()
        self._silences = 0
        text = self.kb.resume
        said = say_note(note or "")
        if said:
            self._remember(Source.SUPERVISOR_NOTE, said)
            self._notes.append((said, self._embedder.embed([said])[0]))
            text = f"{text} {said}"
        return self._record(self._say(Reply(ReplyKind.RESUME, text, 1.0)))

    def respond(self, caller_text: str) -> Reply:
        if not _normalise(caller_text):
            return self.silence()
        self._remember(Source.CALLER, caller_text.strip())
        return self._record(self._with_whisper(self._answer(caller_text)))

    def _answer(self, caller_text: str) -> Reply:
        self._silences = 0
        if asks_for_person(caller_text):
            return self._handoff("caller_asked", 1.0)
        if says_goodbye(caller_text, expecting_answer=bool(self._active or self._offered)):
            return self._goodbye()
        small_talk = self._small_talk(caller_text)
        if small_talk is not None:
            return small_talk
        if asks_to_repeat(caller_text) and self._last_said:
            # What was asked stays asked: a procedure's prompt or an offer is still open.
            return self._say(Reply(ReplyKind.REPEAT, f"Sure. {self._last_said}", 1.0))
        clean = _normalise(caller_text)
        switch = _SWITCH.search(clean)
        if switch is not None:
            rest = clean[switch.end() :]  # what they said after it (searched as words)
            if len(_content_words(rest)) < 2:
                # "Where's my order? I have a question": the question came first.
                before = _content_words(caller_text) - _content_words(switch.group(0))
                rest = caller_text if before - _DISCOURSE else ""
            return self._switch(rest)
        if self._active:
            return self._continue_procedure(caller_text)
        offered, self._offered = self._offered, ()
        if offered and not is_pre_closing(caller_text):
            accepted = parse_yes_no(caller_text)
            if accepted is True and len(offered) == 1:
                return self._serve(offered[0], 1.0)
            if accepted is False and len(_normalise(caller_text).split()) <= 2:
                return self._say(
                    Reply(ReplyKind.CLARIFY, "Sorry about that. What can I help you with?", 1.0)
                )
        if is_pre_closing(caller_text):
            return self._say(Reply(ReplyKind.ANSWER, f"You're welcome. {_ANYTHING_ELSE}", 1.0))
        follow_up = self._follow_up(caller_text)
        if follow_up is not None:
            return follow_up
        return self._search(caller_text)

    def _switch(self, rest: str) -> Reply:
        """The caller has another question: it is answered at once when they said it and it
        is one the agent knows, else they are invited to ask it (words the agent cannot place
        around "I have a different question" are most often the phrase misheard: "Sorry, way,
        …"). A procedure under way is left. Never a "didn't get that"."""
        left = self._active
        self._active = None
        self._offered = ()
        self.misses = 0
        if len(_content_words(rest)) >= 2:
            best = self._best(rest)
            if best is not None and best[1] >= self._answer_threshold:
                return self._search(rest)
        lead = "Sure, we can leave that for now." if left else "Sure."
        return self._say(Reply(ReplyKind.INVITE, f"{lead} Go ahead, what's your question?", 1.0))

    def _small_talk(self, caller_text: str) -> Reply | None:
        """A word of small talk, then back to what the caller called for: whatever was being
        asked (a procedure's prompt, an offer) is asked again. ("Are you a robot?" is the
        knowledge base's to answer.)"""
        clean = _normalise(caller_text)
        back = self._last_question if self._active or self._offered else "How can I help you today?"
        if _HELLO.match(clean):
            lead = "Hello! I'm doing well, thanks." if "how" in clean.split() else "Hello!"
        elif _HOW_ARE_YOU.match(clean):
            lead = "I'm doing well, thanks for asking."
        else:
            return None
        return Reply(ReplyKind.SMALL_TALK, f"{lead} {back}", 1.0)

    def _follow_up(self, caller_text: str) -> Reply | None:
        """A short "and …?" after an answer, asked about the same thing: the previous question
        and this one are searched together when this one alone is not understood."""
        clean = _normalise(caller_text)
        if (
            not self._last_answered
            or not _FOLLOW_UP.match(clean)
            or len(clean.split()) > _FOLLOW_UP_MAX_WORDS
        ):
            return None
        alone = self._best(caller_text)
        if alone is not None and alone[1] >= self._answer_threshold:
            return None
        together = self._best(f"{self._last_answered} {caller_text}")
        if together is None:
            return None
        # Leaning on the last answer, a follow-up that still points at it needs less: it is
        # what "and …?" is about (a wrong guess costs a repeated answer, not a miss).
        same = together[0] is self._last_entry
        if together[1] < (self._clarify_floor if same else self._answer_threshold):
            return None
        return self._serve(together[0], together[1], caller_text=self._last_answered)

    def _best(self, text: str) -> tuple[Entry | Procedure, float] | None:
        """The knowledge base's best entry or procedure for `text`, and its score."""
        ranked = self._index.search(self._embedder.embed([_topic_text(text)])[0])
        return next(((i, s) for i, s in ranked if not isinstance(i, Intent)), None)

    def dtmf(self, digit: str) -> Reply | None:
        reply = self._keyed(digit)
        return None if reply is None else self._record(reply)

    def _keyed(self, digit: str) -> Reply | None:
        active = self._active
        if active is None:
            return self._handoff("dtmf_0", 1.0) if digit == "0" else None
        if active.confirming or active.slot.kind != "digits":
            return None
        if digit == "*":
            active.keyed = ""
            return None
        if digit.isdigit():
            active.keyed += digit
            if len(active.keyed) < active.slot.max_digits:
                return None
        elif digit != "#" or not active.keyed:
            return None
        self._silences = 0
        keyed, active.keyed = active.keyed, ""
        return self._fill_digits(active, keyed)

    def silence(self) -> Reply:
        return self._record(self._silent())

    def _silent(self) -> Reply:
        self._silences += 1
        if self._silences == 1:
            return Reply(ReplyKind.REPROMPT, f"Are you still there? {self._last_question}", 1.0)
        if self._silence_outcome == "goodbye":
            return self._goodbye(
                "I haven't heard anything, so I'll end the call. Please call back any time."
            )
        return self._handoff("no_response", 1.0)

    # --- FAQ and procedure choice ---

    def _search(self, caller_text: str) -> Reply:
        query = self._embedder.embed([_topic_text(caller_text)])[0]
        ranked = self._index.search(query)
        human = next((s for item, s in ranked if item == HUMAN_INTENT), 0.0)
        known = [(item, score) for item, score in ranked if not isinstance(item, Intent)]
        best, best_score = known[0] if known else (None, 0.0)
        if human >= self._human_threshold and human > best_score:
            return self._handoff("caller_asked", human)
        note = self._note_about(caller_text, query)
        if note is not None and (
            best_score < self._answer_threshold
            or note.score + _NOTE_PREFERENCE >= best_score
            or note.shared >= _NOTE_SHARED_WORDS
        ):
            self.misses = 0
            return self._say(Reply(ReplyKind.NOTE, note.text, note.score))
        if best is not None and best_score >= self._answer_threshold:
            return self._serve(best, best_score, caller_text=caller_text)
        return self._miss(known, best_score)

    def _serve(self, item: Entry | Procedure, score: float, *, caller_text: str = "") -> Reply:
        self.misses = 0
        if isinstance(item, Entry):
            self._last_answered, self._last_entry = caller_text, item
            return self._say(Reply(ReplyKind.ANSWER, item.answer, score, entry_id=item.id))
        self._active = active = _ActiveProcedure(item)
        # "Where's my order, it's one two three four five": don't ask for what was just said.
        value = _stated_value(active.slot, caller_text)
        if value is not None:
            digits = active.slot.kind == "digits"
            return replace(self._fill(active, value), number_taken=digits)
        return self._next_step(active, score)

    def _miss(self, known: list[tuple[Entry | Procedure, float]], best_score: float) -> Reply:
        self.misses += 1
        if self.misses >= self._max_misses:
            return self._handoff("repeated_misunderstanding", best_score, understood=False)
        close = [(item, s) for item, s in known[:2] if s >= self._clarify_floor]
        if len(close) == 2 and close[0][1] - close[1][1] > _CLARIFY_SPREAD:
            close = close[:1]
        self._offered = tuple(item for item, _ in close)
        if close:
            topics = " or ".join(item.label for item, _ in close)
            text = f"Sorry, I'm not sure I understood. Do you mean {topics}?"
        else:
            text = self.kb.fallback
        return self._say(Reply(ReplyKind.CLARIFY, text, best_score, understood=False))

    # --- procedures ---

    def _continue_procedure(self, caller_text: str) -> Reply:
        active = self._active
        assert active is not None
        clean = _normalise(caller_text)
        cancel = _CANCEL.search(clean)
        if cancel is not None:
            self._active = None
            rest = clean[cancel.end() :]
            if len(_content_words(rest)) >= 2:
                # "Never mind, what are your store hours?": cancelled, and answered.
                answer = self._search(rest)
                return replace(answer, text=f"Okay, I've cancelled that. {answer.text}")
            return self._say(
                Reply(
                    ReplyKind.PROCEDURE_CANCELLED,
                    "Okay, I've cancelled that. What else can I help you with?",
                    1.0,
                    entry_id=active.procedure.id,
                )
            )
        if active.confirming:
            return self._confirm(active, caller_text)
        slot = active.slot
        if slot.kind == "digits":
            digits = parse_spoken_digits(caller_text)
            if digits is not None:
                return self._fill_digits(active, digits)
        else:
            value = _parse_slot(slot, caller_text)
            if value is not None:
                return self._fill(active, value)
        return self._slot_not_understood(active, caller_text)

    def _fill_digits(self, active: _ActiveProcedure, digits: str) -> Reply:
        slot = active.slot
        if slot.min_digits <= len(digits) <= slot.max_digits:
            return replace(self._fill(active, digits), number_taken=True)
        expected = (
            str(slot.min_digits)
            if slot.min_digits == slot.max_digits
            else f"{slot.min_digits} to {slot.max_digits}"
        )
        return self._retry(
            active,
            f"I got {len(digits)} digits, but I need {expected}. "
            "Please say it again, or key it in on your phone.",
        )

    def _fill(self, active: _ActiveProcedure, value: str) -> Reply:
        active.values[active.slot.name] = value
        if not active.slot.sensitive:  # a card number stays in the engine
            self._facts[active.slot.name] = value
        active.attempts = 0
        if active.slot_index + 1 < len(active.procedure.slots):
            active.slot_index += 1
        elif active.procedure.confirm:
            active.confirming = True
        else:
            return self._finish(active)
        return self._next_step(active, 1.0)

    def _next_step(self, active: _ActiveProcedure, confidence: float) -> Reply:
        text = (
            active.procedure.confirm.format(**_spoken_values(active))
            if active.confirming
            else active.slot.prompt
        )
        return self._say(
            Reply(ReplyKind.PROCEDURE_PROMPT, text, confidence, entry_id=active.procedure.id)
        )

    def _confirm(self, active: _ActiveProcedure, caller_text: str) -> Reply:
        answer = parse_yes_no(caller_text)
        if answer is True:
            return self._finish(active)
        last = active.procedure.slots[-1]
        corrected = (
            parse_spoken_digits(caller_text)
            if last.kind == "digits"
            else _parse_slot(last, caller_text)
        )
        valid = corrected is not None and (
            last.kind != "digits" or last.min_digits <= len(corrected) <= last.max_digits
        )
        if corrected is not None and valid and corrected != active.values.get(last.name):
            # "No, it's one two three four six": take the correction and confirm again.
            active.values[last.name] = corrected
            if not last.sensitive:
                self._facts[last.name] = corrected
            return self._next_step(active, 1.0)
        if answer is False:
            active.confirming = False
            active.slot_index = 0
            active.values.clear()
            text = f"Sorry about that. {active.slot.prompt}"
            return self._say(
                Reply(ReplyKind.PROCEDURE_PROMPT, text, 1.0, entry_id=active.procedure.id)
            )
        return self._moved_on(active, caller_text) or self._retry(
            active, "Sorry, was that a yes or a no?"
        )

    def _slot_not_understood(self, active: _ActiveProcedure, caller_text: str) -> Reply:
        return self._moved_on(active, caller_text) or self._retry(
            active, f"Sorry, I didn't get that. {active.slot.prompt}"
        )

    def _moved_on(self, active: _ActiveProcedure, caller_text: str) -> Reply | None:
        """The answer to another question, if the caller asked one instead of answering the
        procedure's prompt (the procedure is dropped); None if they did not."""
        ranked = self._index.search(self._embedder.embed([_topic_text(caller_text)])[0])
        item, score = next(((i, s) for i, s in ranked if not isinstance(i, Intent)), (None, 0.0))
        if item is None or score < self._answer_threshold or item is active.procedure:
            return None
        self._active = None
        return self._serve(item, score, caller_text=caller_text)

    def _retry(self, active: _ActiveProcedure, text: str) -> Reply:
        active.attempts += 1
        if active.attempts >= self._max_slot_attempts:
            self._active = None
            return self._handoff("repeated_misunderstanding", 0.0, understood=False)
        return self._say(
            Reply(
                ReplyKind.PROCEDURE_PROMPT,
                text,
                0.5,
                entry_id=active.procedure.id,
                understood=False,
            )
        )

    def _finish(self, active: _ActiveProcedure) -> Reply:
        self._active = None
        procedure = active.procedure
        spoken = _spoken_values(active)
        lookup = procedure.lookup
        found = lookup.find(active.values[lookup.slot]) if lookup else None
        if lookup is None:
            text = procedure.done.format(**spoken)
        elif found is None:
            text = lookup.missing.format(**spoken)
        else:
            text = procedure.done.format(**spoken, **{lookup.field: found})
        return self._say(Reply(ReplyKind.PROCEDURE_DONE, text, 1.0, entry_id=procedure.id))

    # --- endings ---

    def _handoff(self, reason: str, confidence: float, *, understood: bool = True) -> Reply:
        self._active = None
        log.info("responder handoff", extra={"handoff_reason": reason, "misses": self.misses})
        return Reply(
            ReplyKind.HANDOFF,
            self.kb.handoff,
            confidence,
            handoff_reason=reason,
            understood=understood,
        )

    def _goodbye(self, text: str | None = None) -> Reply:
        self._active = None
        return Reply(ReplyKind.GOODBYE, text or self.kb.goodbye, 1.0, end_call=True)

    def _note_about(self, caller_text: str, query: Vectors) -> _NoteMatch | None:
        """The supervisor's note the caller is asking about: one that shares a content word
        with the question, or is as close as an answer must be; the most similar wins."""
        asked = _content_words(caller_text)
        found: _NoteMatch | None = None
        for said, vector in self._notes:
            match = _NoteMatch(said, float(vector @ query), len(asked & _content_words(said)))
            if not match.shared and match.score < self._answer_threshold:
                continue
            if found is None or match.score > found.score:
                found = match
        return found

    def _with_whisper(self, reply: Reply) -> Reply:
        """The reply with the held whispers said in it: before a question or a goodbye (so the
        caller is left with what to answer), after anything else."""
        said: list[str] = []
        while self._whispers:
            said.append(self._whispers.pop(0))  # one at a time: instruct() may run meanwhile
        if not said:
            return reply
        whisper = " ".join(said)
        if reply.end_call or reply.handoff_reason or reply.text.rstrip().endswith("?"):
            text = f"{whisper} {reply.text}"
        else:
            text = f"{reply.text} {whisper}"
        return replace(reply, text=text, whisper=whisper)

    def _remember(self, source: Source, text: str) -> None:
        self.history.append(HistoryItem(source, text))
        del self.history[:-_HISTORY_LIMIT]

    def _record(self, reply: Reply) -> Reply:
        self._remember(Source.AGENT, reply.text)
        if reply.kind is not ReplyKind.REPEAT:
            self._last_said = reply.text
        return reply

    def _say(self, reply: Reply) -> Reply:
        """Remember the question a reply asks, so a reprompt can repeat it."""
        if reply.kind in {ReplyKind.CLARIFY, ReplyKind.PROCEDURE_PROMPT}:
            self._last_question = reply.text
        elif reply.kind is ReplyKind.GREETING:
            self._last_question = "How can I help you today?"
        else:
            self._last_question = _ANYTHING_ELSE
        log.debug(
            "responder reply",
            extra={
                "reply_kind": str(reply.kind),
                "entry_id": reply.entry_id,
                "confidence": round(reply.confidence, 3),
            },
        )
        return reply


# Words too common to say what a question is about.
_FUNCTION_WORDS_TEXT = """
    a an the and or but if so to of in on at by for from with about as into is are was were
    be been being am do does did has have had will would can could should shall may might must
    i me my mine you your yours we us our it its it's this that these those there here what
    when where which who whom whose why how not no yes please just any some all get got
    they them their he him his she her hi hello thanks thank okay ok well also"""
_FUNCTION_WORDS = frozenset(_FUNCTION_WORDS_TEXT.split())


def _content_words(text: str) -> set[str]:
    """The words that say what ``text`` is about, crudely singular ("refunds" → "refund")."""
    words = set()
    for word in _normalise(text).split():
        if word in _FUNCTION_WORDS or is_filled_pause(word) or len(word) < 3:
            continue
        words.add(word[:-1] if word.endswith("s") and not word.endswith("ss") else word)
    return words


def _topic_text(caller_text: str) -> str:
    """What the caller's words are about, for the knowledge-base search: without the digits
    and filled pauses that say which order or account rather than what the question is.

    Numerals go, and so do runs of two or more spoken number words ("one two three"); a lone
    "one" stays ("I have one question")."""
    words = caller_text.split()
    keep = [True] * len(words)
    run: list[int] = []
    for i, word in enumerate([*words, ""]):
        bare = word.lower().strip(".,!?;:-")
        if is_filled_pause(bare) or any(c.isdigit() for c in bare):
            keep[i] = False
            continue
        if bare and (is_number_word(bare) or (is_sound_alike(bare) and run)):
            run.append(i)
            continue
        if len(run) >= 2:
            for j in run:
                keep[j] = False
        run = []
    topic = " ".join(w for w, k in zip(words, keep, strict=True) if k)
    return topic if re.search(r"[a-zA-Z]", topic) else caller_text


def _stated_value(slot: Slot, caller_text: str) -> str | None:
    """Digits for `slot` the caller already gave while asking ("where's my order, one two
    three four five"). Other kinds are always asked for: an email address or a name cannot be
    told apart from the rest of a sentence reliably."""
    if slot.kind != "digits":
        return None
    digits = parse_spoken_digits(caller_text)
    if digits is not None and slot.min_digits <= len(digits) <= slot.max_digits:
        return digits
    return None


def _parse_slot(slot: Slot, text: str) -> str | None:
    if slot.kind == "email":
        return parse_spoken_email(text)
    if slot.kind == "yes_no":
        answer = parse_yes_no(text)
        return None if answer is None else ("yes" if answer else "no")
    if slot.kind == "digits":
        return parse_spoken_digits(text)
    clean = " ".join(text.split())
    return clean or None


def _spoken_values(active: _ActiveProcedure) -> dict[str, str]:
    spoken: dict[str, str] = {}
    for slot in active.procedure.slots:
        value = active.values.get(slot.name, "")
        if slot.kind == "digits":
            value = speak_digits(value)
        elif slot.kind == "email":
            value = speak_email(value)
        spoken[slot.name] = value
    return spoken
