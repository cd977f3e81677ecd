"""A supervisor's text, rephrased as words the agent can say to the caller.

A whisper is written to the agent ("Offer them a 10 percent discount", "Tell her the fee is
waived"); the caller should hear "I can offer you a 10 percent discount." and "The fee is
waived." A hand-back note is written as a fact ("Refund approved; it will arrive in 3 days") and
is said as one. Pure string rules, no I/O; the table of forms is in tests/test_coaching.py.

The forms, tried in order (the caller may be "them", "him", "her", "the caller", "the customer"):

- "tell/inform/remind <caller> (that) X", "let <caller> know (that) X", "say (that) X",
  "explain (that) X", "confirm (that) X", "mention that X"  →  X
- "tell <caller> about X", "mention X"                      →  "I should also mention X."
- "offer (<caller>) X"                                      →  "I can offer you X."
- "ask (<caller>) to X"                                     →  "Could you X?"
- "ask (<caller>) for X"                                    →  "Could I have X?"
- "ask (<caller>) if/whether/what/… X", "ask (<caller>) X"  →  "Can I ask if/whether/what/… X?"
- "apologize/apologise (to <caller>) (for X)"               →  "I'm sorry for X." / "I'm sorry."
- "thank <caller> (for X)"                                  →  "Thank you for X." / "Thank you."
- a plain statement (it has a verb such as "is", "will", "approved")  →  itself
- anything else, e.g. another imperative                    →  "Also: <text>" (never dropped)

Inside a coaching form, words for the caller become second person ("their order" → "your
order", "she is" → "you are"). A plain statement only has "the caller"/"the customer" replaced:
its "they" may well be somebody else.
"""

from __future__ import annotations

import re

_CALLER = r"(?:them|him|her|the caller|the customer|the client)"
_THAT = r"(?:that\s+)?"

# (pattern on the instruction without its final punctuation, how X is said)
_STATEMENT = "{x}."
_MENTION = "I should also mention {x}."
_FORMS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), template)
    for pattern, template in (
        (rf"^(?:tell|inform|remind)\s+{_CALLER}\s+about\s+(?P<x>.+)$", _MENTION),
        (rf"^(?:tell|inform|remind)\s+{_CALLER}\s+{_THAT}(?P<x>.+)$", _STATEMENT),
        (rf"^let\s+{_CALLER}\s+know\s+{_THAT}(?P<x>.+)$", _STATEMENT),
        (rf"^(?:say|explain|confirm)\s+(?:to\s+{_CALLER}\s+)?{_THAT}(?P<x>.+)$", _STATEMENT),
        (r"^mention\s+that\s+(?P<x>.+)$", _STATEMENT),
        (rf"^mention\s+(?:to\s+{_CALLER}\s+)?(?P<x>.+)$", _MENTION),
        (rf"^offer\s+(?:{_CALLER}\s+)?(?P<x>.+)$", "I can offer you {x}."),
        (rf"^ask\s+(?:{_CALLER}\s+)?to\s+(?P<x>.+)$", "Could you {x}?"),
        (rf"^ask\s+(?:{_CALLER}\s+)?for\s+(?P<x>.+)$", "Could I have {x}?"),
        (rf"^ask\s+(?:{_CALLER}\s+)?(?P<x>.+)$", "Can I ask {x}?"),
        (rf"^apologi[sz]e\s+(?:to\s+{_CALLER}\s+)?for\s+(?P<x>.+)$", "I'm sorry for {x}."),
        (rf"^apologi[sz]e(?:\s+to\s+{_CALLER})?$", "I'm sorry."),
        (rf"^thank\s+{_CALLER}\s+for\s+(?P<x>.+)$", "Thank you for {x}."),
        (rf"^thank\s+{_CALLER}$", "Thank you."),
    )
)

# Third person for the caller → second person. Verb agreement is fixed for the few verbs a
# coaching line uses ("she is" → "you are", not "you is").
_SECOND_PERSON: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(rf"\b{pattern}\b", re.IGNORECASE), words)
    for pattern, words in (
        (r"(?:he|she|they) (?:is|are)", "you are"),
        (r"(?:he|she|they) (?:was|were)", "you were"),
        (r"(?:he|she|they) (?:has|have)", "you have"),
        (r"(?:he|she|they) (?:does|do)", "you do"),
        (r"(?:he|she|they) (?:doesn't|don't)", "you don't"),
        (r"(?:he's|she's|they're)", "you're"),
        (r"(?:he'll|she'll|they'll)", "you'll"),
        (r"(?:he'd|she'd|they'd)", "you'd"),
        (r"(?:he|she|they)", "you"),
        (r"(?:himself|herself|themselves|themself)", "yourself"),
        (r"(?:his|their|the caller's|the customer's|the client's)", "your"),
        (r"(?:him|them)", "you"),
        (r"(?:the caller|the customer|the client)", "you"),
    )
)
# In a plain statement only the unambiguous words for the caller change.
_CALLER_NOUNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(rf"\b{pattern}\b", re.IGNORECASE), words)
    for pattern, words in (
        (r"(?:the caller|the customer|the client) (?:is|are)", "you are"),
        (r"(?:the caller|the customer|the client) (?:was|were)", "you were"),
        (r"(?:the caller|the customer|the client) (?:has|have)", "you have"),
        (r"(?:the caller's|the customer's|the client's)", "your"),
        (r"(?:the caller|the customer|the client)", "you"),
    )
)

# A sentence with one of these reads as a statement of fact, not an order to the agent.
_STATEMENT_VERB = re.compile(
    r"\b(?:is|are|was|were|will|won't|has|have|had|can|cannot|can't|could|should|must|may|"
    r"does|did|doesn't|didn't|isn't|aren't|wasn't|\w+'s|\w+'re|\w+'ll|\w+ed)\b",
    re.IGNORECASE,
)
# Words that open an order to the agent; such a text is not a statement whatever verbs follow.
_IMPERATIVE = re.compile(
    r"^(?:please\s+)?(?:be|don't|do|do not|never|always|try|check|stop|keep|make|give|get|"
    r"escalate|transfer|hand|use|avoid|remember|slow|speak|talk|stay|hold|wait|put|send|"
    r"find|look|move|end|hang|go|verify|collect|upsell|push|focus|switch|sell|"
    r"repeat|read|spell|ignore|skip|let)\b",
    re.IGNORECASE,
)


def say_to_caller(instruction: str) -> str:
    """What the agent says for a supervisor's whispered instruction; never empty for text."""
    text = _clean(instruction)
    if not text:
        return ""
    spoken = _coached(text)
    if spoken is not None:
        return spoken
    if _is_statement(text):
        return _sentence(_replace(text, _CALLER_NOUNS))
    return f"Also: {_lower_first(text)}{'' if text[-1] in '.!?' else '.'}"


def say_note(note: str) -> str:
    """A hand-back note said as a fact: a coaching form is rephrased, anything else is kept."""
    text = _clean(note)
    if not text:
        return ""
    spoken = _coached(text)
    if spoken is not None:
        return spoken
    return _sentence(_replace(text, _CALLER_NOUNS))


def _coached(text: str) -> str | None:
    bare = text.rstrip(".!?").strip()
    bare = re.sub(r"^please\s+", "", bare, flags=re.IGNORECASE)
    for pattern, template in _FORMS:
        found = pattern.match(bare)
        if found is None:
            continue
        x = _replace(found.groupdict().get("x") or "", _SECOND_PERSON).strip()
        if template == _STATEMENT:
            return _sentence(x)
        return _upper_first(template.format(x=x))
    return None


def _is_statement(text: str) -> bool:
    return _IMPERATIVE.match(text) is None and _STATEMENT_VERB.search(text) is not None


def _clean(text: str) -> str:
    text = " ".join(text.split())
    return text.strip("\"'\N{LEFT DOUBLE QUOTATION MARK}\N{RIGHT DOUBLE QUOTATION MARK} ")


def _replace(text: str, table: tuple[tuple[re.Pattern[str], str], ...]) -> str:
    for pattern, words in table:
        text = pattern.sub(words, text)
    return text


def _sentence(text: str) -> str:
    text = _clean(text)
    if not text:
        return ""
    return _upper_first(text if text[-1] in ".!?" else f"{text}.")


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _lower_first(text: str) -> str:
    # "Escalate ..." → "escalate ...", but an acronym or a name ("VIP", "I") keeps its case.
    first = text.split(" ", 1)[0]
    if len(first) > 1 and first[1:].islower():
        return text[:1].lower() + text[1:]
    return text
