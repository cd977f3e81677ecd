"""Numbers as callers say them and speech recognition writes them, with where each one stands.

One reader for the whole platform: the responder takes the digits a caller gave from it, and
redaction (`agent.pii`) finds card, phone and social security numbers with it, so a number the
agent understood is a number redaction sees.

A number is read from typed digits ("4111"), digit words ("four one one one", "five oh five",
"double seven"), pairs and cardinals ("forty-one eleven", "three hundred and five", "a
hundred"), or a mix. Each `Number` is one such piece with its span in the text; consecutive
pieces are the caller's grouping ("forty-one eleven" is 41 then 11), which callers of this
module join or keep apart as they need. Pure functions, no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from agent.turns import is_filled_pause

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4,
    "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
}  # fmt: skip
_TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
# Words that mean a digit only next to other numbers: "five oh five", "one to three".
_DIGIT_WORDS = {value: word for word, value in _UNITS.items()}
_SOUND_ALIKES = {"oh": 0, "o": 0, "to": 2, "too": 2, "for": 4, "won": 1, "ate": 8}
_ZEROS = {"oh", "o"}
_REPEATS = {"double": 2, "triple": 3}
_SCALES = {"hundred", "thousand"}
_TOKEN = re.compile(r"\d+|[A-Za-z]+")


@dataclass(frozen=True, slots=True)
class Number:
    """One piece of a number: its digits and where it stands in the text (`text[start:end]`)."""

    digits: str
    start: int
    end: int
    spoken: bool  # said in words rather than typed as digits


def is_number_word(token: str) -> bool:
    """Whether a lower-case word is part of a number on its own ("seven", "hundred", "42")."""
    return (
        token.isdigit()
        or token in _UNITS
        or token in _TEENS
        or token in _TENS
        or token in _REPEATS
        or token in _SCALES
    )


def is_sound_alike(token: str) -> bool:
    """Whether a lower-case word is a digit only between numbers ("to", "for", "oh")."""
    return token in _SOUND_ALIKES


def numbers_in(text: str) -> list[Number]:
    """Every number piece in `text`, in order."""
    tokens = [(m.group().lower(), m.start(), m.end()) for m in _TOKEN.finditer(text)]
    words = _resolve_sound_alikes([token for token, _, _ in tokens])
    reader = _Reader()
    for i, (word, (_, start, end)) in enumerate(zip(words, tokens, strict=True)):
        following = words[i + 1] if i + 1 < len(words) else ""
        reader.take(word, start, end, following)
    reader.flush()
    return reader.found


def parse_spoken_digits(text: str) -> str | None:
    """The digit string a caller said, or None if there are no digits in ``text``.

    Digit by digit ("one two three", "1 2 3", "five oh five", "double seven"), in pairs
    ("twelve thirty four"), as cardinals ("three hundred and five"), or mixed; the digits of
    every number in the utterance are joined in order ("12,345" is 12345). Other words are
    ignored.
    """
    joined = re.sub(r"(?<=\d)[,.](?=\d)", "", text)
    digits = "".join(number.digits for number in numbers_in(joined))
    return digits or None


class _Reader:
    """Turns words into `Number` pieces, one word at a time."""

    def __init__(self) -> None:
        self.found: list[Number] = []
        self.cardinal = _Cardinal()
        self.span: tuple[int, int] | None = None  # of the cardinal being read
        self.repeat: tuple[int, int] | None = None  # (count, start) after "double"/"triple"

    def take(self, word: str, start: int, end: int, following: str) -> None:
        repeat, self.repeat = self.repeat, None
        if word.isdigit():
            self.flush()
            self._add(_ascii_digits(word), start, end, spoken=False)
        elif word in _REPEATS:
            self.flush()
            self.repeat = (_REPEATS[word], start)
        elif word in _UNITS and repeat is not None:
            self.flush()
            count, first = repeat
            self._add(str(_UNITS[word]) * count, first, end, spoken=True)
        elif word in _UNITS or word in _TEENS or word in _TENS or word in _SCALES:
            kind, value = _word_kind(word)
            if not self.cardinal.take(kind, value):
                self.flush()
                self.cardinal.take(kind, value)
            self.span = (self.span[0] if self.span else start, end)
        elif word == "and" and self.cardinal.last in _SCALES:
            self.repeat = repeat
        elif word == "a" and following in _SCALES:
            self.flush()
            self.cardinal.take("unit", 1)
            self.span = (start, end)
        elif not is_filled_pause(word):
            self.flush()

    def flush(self) -> None:
        digits = self.cardinal.flush()
        if digits and self.span is not None:
            self._add(digits, *self.span, spoken=True)
        self.span = None

    def _add(self, digits: str, start: int, end: int, *, spoken: bool) -> None:
        self.found.append(Number(digits, start, end, spoken))


class _Cardinal:
    """Accumulates one spoken number ("three hundred and five") before it becomes digits."""

    def __init__(self) -> None:
        self.high = 0
        self.low = 0
        self.last = ""  # the kind of the last word taken; "" when empty

    def take(self, kind: str, value: int) -> bool:
        """Add a word to this number if English allows it to continue here."""
        after_scale = self.last in _SCALES
        continues_tens = kind == "unit" and self.last == "tens"
        if continues_tens or (after_scale and kind in {"unit", "teen", "tens"}):
            self.low += value
        elif kind == "hundred" and self.last in {"unit", "teen", "tens", "tens_unit"}:
            if self.low >= 100:
                return False
            self.low *= 100
        elif kind == "thousand" and self.last and self.last != "thousand" and not self.high:
            self.high, self.low = (self.low or 1) * 1000, 0
        elif self.last:
            return False
        elif kind in _SCALES:
            self.low = 100 if kind == "hundred" else 0
            self.high = 1000 if kind == "thousand" else 0
        else:
            self.low = value
        self.last = "tens_unit" if continues_tens else kind
        return True

    def flush(self) -> str:
        digits = str(self.high + self.low) if self.last else ""
        self.high, self.low, self.last = 0, 0, ""
        return digits


def _ascii_digits(token: str) -> str:
    """'٤١١١' -> '4111': digits of any script, as the checks that follow compare them."""
    return token if token.isascii() else "".join(str(unicodedata.digit(c)) for c in token)


def _resolve_sound_alikes(tokens: list[str]) -> list[str]:
    resolved = list(tokens)
    for i, token in enumerate(tokens):
        if token not in _SOUND_ALIKES:
            continue
        before = i > 0 and is_number_word(tokens[i - 1])
        after = i + 1 < len(tokens) and is_number_word(tokens[i + 1])
        if (before and after) or (token in _ZEROS and (before or after)):
            resolved[i] = _DIGIT_WORDS[_SOUND_ALIKES[token]]
    return resolved


def _word_kind(token: str) -> tuple[str, int]:
    if token in _UNITS:
        return "unit", _UNITS[token]
    if token in _TEENS:
        return "teen", _TEENS[token]
    if token in _TENS:
        return "tens", _TENS[token]
    return token, 0
