"""Finding personal data in transcript text: card numbers, US SSNs, email addresses, phone numbers.

Pure functions, no I/O. Numbers are found typed ("4111 1111 1111 1111") and spoken, as an ASR
writes them ("four one one one ..."), and mixed. A digit run is read as:

- a card: 13-19 digits, grouped by spaces or dashes only, that pass the Luhn check;
- an SSN: 9 digits that are a valid SSN (area not 000, 666 or 9xx; group not 00; serial not
  0000) written 3-2-4 ("123-45-6789", "123 45 6789") or right after "SSN"/"social";
- a phone number: 10 NANP digits (area code and exchange start with 2-9), 11 starting with 1,
  or 8-15 digits after a "+"; not when glued to letters ("ORD-4155550123"), after a currency
  sign, or after words that name an identifier ("order number ...", "tracking ...").

A run that is nothing as a whole is searched for the longest part that is something, token by
token ("4111 1111 1111 1111 12" holds a card). Placeholders (`[card]`) contain no digits, so
redacting redacted text changes nothing.
"""

from __future__ import annotations

import enum
import itertools
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass


class PiiKind(enum.StrEnum):
    CARD = "card"
    SSN = "ssn"
    EMAIL = "email"
    PHONE = "phone"


ALL_KINDS: frozenset[PiiKind] = frozenset(PiiKind)


@dataclass(frozen=True, slots=True)
class Finding:
    kind: PiiKind
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Redacted:
    text: str
    findings: tuple[Finding, ...]

    @property
    def changed(self) -> bool:
        return bool(self.findings)


def placeholder(kind: PiiKind) -> str:
    return f"[{kind.value}]"


def redact(text: str, kinds: Collection[PiiKind] = ALL_KINDS) -> Redacted:
    """`text` with each finding of `kinds` replaced by its placeholder."""
    findings = find_pii(text, kinds)
    parts: list[str] = []
    position = 0
    for finding in findings:
        parts += [text[position : finding.start], placeholder(finding.kind)]
        position = finding.end
    parts.append(text[position:])
    return Redacted("".join(parts), tuple(findings))


def find_pii(text: str, kinds: Collection[PiiKind] = ALL_KINDS) -> list[Finding]:
    """Non-overlapping findings of `kinds` in `text`, in order."""
    wanted = frozenset(kinds)
    found: list[Finding] = []
    if PiiKind.EMAIL in wanted:
        found += _emails(text)
    if wanted - {PiiKind.EMAIL}:
        found += _numbers(text, wanted)
    return _without_overlaps(found)


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check that every payment card number passes."""
    if not digits.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def ssn_valid(digits: str) -> bool:
    """Whether 9 digits could be an SSN: the SSA never issues these areas, groups or serials."""
    if len(digits) != 9 or not digits.isdigit():
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def nanp_valid(digits: str) -> bool:
    """A 10-digit North American number: area code and exchange both start with 2-9."""
    return len(digits) == 10 and digits.isdigit() and digits[0] >= "2" and digits[3] >= "2"


# --- email addresses -----------------------------------------------------------------------------

_TYPED_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])"
)
# "john dot smith at example dot com": only with a common top-level domain, or every "at" in a
# sentence would be suspect.
_SPOKEN_EMAIL = re.compile(
    r"\b[a-z0-9]+(?:\s+(?:dot|underscore|dash)\s+[a-z0-9]+)*\s+at\s+[a-z0-9]+"
    r"(?:\s+dot\s+[a-z0-9]+)*\s+dot\s+(?:com|org|net|edu|gov|io|co|uk|us|ca|de|fr|info|biz)\b",
    re.IGNORECASE,
)


def _emails(text: str) -> list[Finding]:
    found = [Finding(PiiKind.EMAIL, m.start(), m.end()) for m in _TYPED_EMAIL.finditer(text)]
    found += [Finding(PiiKind.EMAIL, m.start(), m.end()) for m in _SPOKEN_EMAIL.finditer(text)]
    return found


# --- numbers -------------------------------------------------------------------------------------

_DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "o": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
_ZERO_LETTERS = ("oh", "o")  # zero only inside a number: "oh, I see" is not a digit
_REPEATS = {"double": 2, "triple": 3}
_TOKEN = re.compile(r"\d+|[A-Za-z]+")
_GLUE = re.compile(r"[\s\-.,()]{0,3}")  # what may stand between the parts of one number
_MAX_DIGITS = 19  # the longest card number; nothing longer is looked for
_SSN_CONTEXT = re.compile(r"\b(?:ssn|social|security)\b", re.IGNORECASE)
_IDENTIFIER_CONTEXT = re.compile(
    r"\b(?:order|confirmation|reference|ref|tracking|invoice|ticket|case|booking|reservation|"
    r"serial|model|part|sku|item|transaction|receipt)\b",
    re.IGNORECASE,
)
_CONTEXT_CHARS = 32
_CURRENCY = "$€£¥"


@dataclass(frozen=True, slots=True)
class _Unit:
    """One piece of a number: a typed digit group ("4111") or spoken digits ("double five")."""

    digits: str
    start: int
    end: int
    spoken: bool


def _units(text: str) -> list[_Unit]:
    units: list[_Unit] = []
    repeat: tuple[int, int] | None = None  # (count, start) of a pending "double"/"triple"
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token.isdigit():
            units.append(_Unit(token, match.start(), match.end(), spoken=False))
            repeat = None
            continue
        word = token.lower()
        digit = _DIGIT_WORDS.get(word)
        if digit is not None and word in _ZERO_LETTERS and not _continues(text, units, match):
            digit = None
        if digit is None:
            repeat = (_REPEATS[word], match.start()) if word in _REPEATS else None
            continue
        count, start = repeat if repeat else (1, match.start())
        units.append(_Unit(digit * count, start, match.end(), spoken=True))
        repeat = None
    return units


def _continues(text: str, units: Sequence[_Unit], match: re.Match[str]) -> bool:
    return bool(units) and _glued(text, units[-1].end, match.start())


def _glued(text: str, end: int, start: int) -> bool:
    return _GLUE.fullmatch(text, end, start) is not None


def _runs(units: Sequence[_Unit], text: str) -> list[list[_Unit]]:
    """Maximal sequences of units with only spaces and light punctuation between them."""
    runs: list[list[_Unit]] = []
    for unit in units:
        if runs and _glued(text, runs[-1][-1].end, unit.start):
            runs[-1].append(unit)
        else:
            runs.append([unit])
    return runs


def _numbers(text: str, kinds: frozenset[PiiKind]) -> list[Finding]:
    found: list[Finding] = []
    for run in _runs(_units(text), text):
        first = 0
        while first < len(run):
            finding, after = _longest_from(text, run, first, kinds)
            if finding is None:
                first += 1
            else:
                found.append(finding)
                first = after
    return found


def _longest_from(
    text: str, run: Sequence[_Unit], first: int, kinds: frozenset[PiiKind]
) -> tuple[Finding | None, int]:
    last = first
    digits = 0
    while last < len(run) and digits + len(run[last].digits) <= _MAX_DIGITS:
        digits += len(run[last].digits)
        last += 1
    for end in range(last, first, -1):
        finding = _classify(text, run[first:end], kinds)
        if finding is not None:
            return finding, end
    return None, first + 1


def _classify(text: str, units: Sequence[_Unit], kinds: frozenset[PiiKind]) -> Finding | None:
    digits = "".join(unit.digits for unit in units)
    start, end = units[0].start, units[-1].end
    gaps = [text[a.end : b.start] for a, b in itertools.pairwise(units)]
    if PiiKind.CARD in kinds and _is_card(digits, units, gaps):
        return Finding(PiiKind.CARD, start, end)
    if _glued_to_word(text, start, end):
        return None
    if PiiKind.SSN in kinds and _is_ssn(text, digits, units, gaps):
        return Finding(PiiKind.SSN, start, end)
    if PiiKind.PHONE in kinds:
        return _phone(text, digits, units, gaps)
    return None


def _is_card(digits: str, units: Sequence[_Unit], gaps: Sequence[str]) -> bool:
    if not 13 <= len(digits) <= 19 or not luhn_valid(digits):
        return False
    return all(_gap_allowed(gap, a, b, "- ") for gap, a, b in _pairs(units, gaps))


def _is_ssn(text: str, digits: str, units: Sequence[_Unit], gaps: Sequence[str]) -> bool:
    if not ssn_valid(digits):
        return False
    if not all(_gap_allowed(gap, a, b, "- ") for gap, a, b in _pairs(units, gaps)):
        return False
    if _groups(units, gaps) == [3, 2, 4]:
        return True
    before = text[max(0, units[0].start - _CONTEXT_CHARS) : units[0].start]
    return _SSN_CONTEXT.search(before) is not None


def _phone(text: str, digits: str, units: Sequence[_Unit], gaps: Sequence[str]) -> Finding | None:
    start, end = units[0].start, units[-1].end
    if not all(_gap_allowed(gap, a, b, "-. ()") for gap, a, b in _pairs(units, gaps)):
        return None
    plus = start > 0 and text[start - 1] == "+"
    if plus:
        if not 8 <= len(digits) <= 15:
            return None
        start -= 1
    elif not _north_american(digits):
        return None
    if start > 0 and text[start - 1] == "(" and not plus:
        start -= 1
    before = text[max(0, start - _CONTEXT_CHARS) : start]
    if before.rstrip().endswith(tuple(_CURRENCY)) or _IDENTIFIER_CONTEXT.search(before):
        return None
    if start > 0 and (text[start - 1].isalnum() or text[start - 1] in "#_/"):
        return None
    return Finding(PiiKind.PHONE, start, end)


def _north_american(digits: str) -> bool:
    return nanp_valid(digits) or (len(digits) == 11 and digits[0] == "1" and nanp_valid(digits[1:]))


def _pairs(units: Sequence[_Unit], gaps: Sequence[str]) -> list[tuple[str, _Unit, _Unit]]:
    return [(gap, units[i], units[i + 1]) for i, gap in enumerate(gaps)]


def _gap_allowed(gap: str, left: _Unit, right: _Unit, typed_chars: str) -> bool:
    """Between typed digits only `typed_chars` may stand (a comma there is a thousands
    separator); spoken digits may also be set apart by commas and full stops, as ASR does."""
    allowed = typed_chars + (",." if left.spoken or right.spoken else "")
    return all(char in allowed or char.isspace() for char in gap)


def _groups(units: Sequence[_Unit], gaps: Sequence[str]) -> list[int]:
    """Digit counts of the visibly separate groups: typed groups are separate tokens; spoken
    digits form one group until punctuation sets them apart."""
    groups = [len(units[0].digits)]
    for gap, left, right in _pairs(units, gaps):
        same_group = left.spoken and right.spoken and gap.strip() == ""
        if same_group:
            groups[-1] += len(right.digits)
        else:
            groups.append(len(right.digits))
    return groups


def _glued_to_word(text: str, start: int, end: int) -> bool:
    """Digits that are part of a longer identifier ("ORD-4155550123", "4155550123abc")."""
    after = text[end : end + 1]
    if after.isalnum() or after == "_":
        return True
    if start >= 2 and text[start - 1] == "-" and text[start - 2].isalnum():
        return True
    return start >= 1 and (text[start - 1].isalpha() or text[start - 1] == "_")


def _without_overlaps(findings: list[Finding]) -> list[Finding]:
    kept: list[Finding] = []
    for finding in sorted(findings, key=lambda f: (f.start, -(f.end - f.start))):
        if not kept or finding.start >= kept[-1].end:
            kept.append(finding)
    return kept
