"""Finding personal data in what callers say and type: card numbers and their security codes,
US social security numbers, email addresses, phone numbers and dates of birth.

Pure functions, no I/O. Numbers are read by `agent.numbers`, the reader the responder uses, so
they are found typed ("4111 1111 1111 1111"), spoken as an ASR writes them ("four one one one
...", "forty-one eleven ...", "double five"), and mixed. A run of number pieces is read as:

- a card: 13-19 digits in any grouping, separated by spaces or dashes (spoken ones also by
  commas and full stops), that pass the Luhn check;
- a security code: 3 or 4 digits where the card's code is being talked about ("CVV", "the
  code on the back"), in the text itself or in what was said just before (`context`, the
  agent's question);
- an SSN: 9 digits that are a valid SSN (area not 000, 666 or 9xx; group not 00; serial not
  0000) written 3-2-4 ("123-45-6789", "123 45 6789") or right after "SSN"/"social";
- a phone number: after a "+", any number the country's plan allows (`phonenumbers`); without,
  a number valid in the caller's region (`region`, US by default) or a North American one;
  not when glued to letters ("ORD-4155550123"), after a currency sign, or after words that
  name an identifier ("order number ...", "tracking ...").

A date of birth is the date after "date of birth", "born", "birthday" (or anywhere in an answer
to a question about it): month names, ordinals, numbers and separators in any order.

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

import phonenumbers

from agent.numbers import Number, is_number_word, numbers_in


class PiiKind(enum.StrEnum):
    CARD = "card"
    SECURITY_CODE = "security_code"
    SSN = "ssn"
    EMAIL = "email"
    PHONE = "phone"
    BIRTH_DATE = "birth_date"


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


DEFAULT_REGION = "US"


def redact(
    text: str,
    kinds: Collection[PiiKind] = ALL_KINDS,
    *,
    context: str = "",
    region: str = DEFAULT_REGION,
) -> Redacted:
    """`text` with each finding of `kinds` replaced by its placeholder. `context` is what was
    said just before (the question `text` answers); `region` is where national phone numbers
    are read as dialled (ISO 3166 code)."""
    findings = find_pii(text, kinds, context=context, region=region)
    parts: list[str] = []
    position = 0
    for finding in findings:
        parts += [text[position : finding.start], placeholder(finding.kind)]
        position = finding.end
    parts.append(text[position:])
    return Redacted("".join(parts), tuple(findings))


def find_pii(
    text: str,
    kinds: Collection[PiiKind] = ALL_KINDS,
    *,
    context: str = "",
    region: str = DEFAULT_REGION,
) -> list[Finding]:
    """Non-overlapping findings of `kinds` in `text`, in order (see `redact`)."""
    scan = _Scan(frozenset(kinds), text, context, region.upper())
    found: list[Finding] = []
    if PiiKind.EMAIL in scan.kinds:
        found += _emails(text)
    if PiiKind.BIRTH_DATE in scan.kinds:
        found += _birth_dates(text, context)
    if scan.kinds - {PiiKind.EMAIL, PiiKind.BIRTH_DATE}:
        found += _numbers(scan)
    return _without_overlaps(found)


@dataclass(frozen=True, slots=True)
class _Scan:
    kinds: frozenset[PiiKind]
    text: str
    context: str
    region: str


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


# --- dates of birth ------------------------------------------------------------------------------

_BIRTH_CONTEXT = re.compile(
    r"\b(?:date\s+of\s+birth|birth\s*date|birthday|born|d\.?o\.?b)\b", re.IGNORECASE
)
_MONTHS = frozenset(
    ["january", "february", "march", "april", "may", "june", "july", "august", "september",
     "october", "november", "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
     "sept", "oct", "nov", "dec"]
)  # fmt: skip
_ORDINALS = frozenset(
    ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
     "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth",
     "seventeenth", "eighteenth", "nineteenth", "twentieth", "thirtieth"]
)  # fmt: skip
_DATE_JOINERS = frozenset({"of", "the", "and"})  # "the third of March", "two thousand and one"
_DATE_TOKEN = re.compile(r"\d{1,4}(?:st|nd|rd|th)?|[A-Za-z]+")
_DATE_GLUE = re.compile(r"[\s,./\-]{0,3}")
_BIRTH_REACH = 24  # how far after "born" the date may start


def _birth_dates(text: str, context: str) -> list[Finding]:
    """Dates after words about birth, or any date when `context` asked for one."""
    starts = [m.end() for m in _BIRTH_CONTEXT.finditer(text)]
    if _BIRTH_CONTEXT.search(context):
        starts.insert(0, 0)
    found: list[Finding] = []
    for after in starts:
        if found and after < found[-1].end:
            continue
        span = _date_after(text, after, reach=len(text) if after == 0 else _BIRTH_REACH)
        if span is not None:
            found.append(Finding(PiiKind.BIRTH_DATE, *span))
    return found


def _date_after(text: str, after: int, *, reach: int) -> tuple[int, int] | None:
    """The first run of date words starting within `reach` characters of `after`."""
    run: list[tuple[str, int, int]] = []
    for match in _DATE_TOKEN.finditer(text, after):
        token = match.group().lower()
        glued = bool(run) and _DATE_GLUE.fullmatch(text, run[-1][2], match.start()) is not None
        if _is_date_word(token) or (token in _DATE_JOINERS and run):
            if run and not glued:
                break
            run.append((token, match.start(), match.end()))
            continue
        if run:
            break
        if match.start() - after > reach:
            return None
    while run and run[-1][0] in _DATE_JOINERS:
        run.pop()
    numeric = sum(1 for token, _, _ in run if token not in _MONTHS and token not in _DATE_JOINERS)
    named = any(token in _MONTHS for token, _, _ in run)
    if numeric >= 2 or (numeric and named):
        return run[0][1], run[-1][2]
    return None


def _is_date_word(token: str) -> bool:
    bare = token.rstrip("stndrh") if token[:1].isdigit() else token
    return bare.isdigit() or token in _MONTHS or token in _ORDINALS or is_number_word(token)


# --- numbers -------------------------------------------------------------------------------------

_GLUE = re.compile(r"[\s\-.,()]{0,3}")  # what may stand between the parts of one number
_MAX_DIGITS = 19  # the longest card number; nothing longer is looked for
_SSN_CONTEXT = re.compile(r"\b(?:ssn|social|security)\b", re.IGNORECASE)
_IDENTIFIER_CONTEXT = re.compile(
    r"\b(?:order|confirmation|reference|ref|tracking|invoice|ticket|case|booking|reservation|"
    r"serial|model|part|sku|item|transaction|receipt)\b",
    re.IGNORECASE,
)
_CODE_CONTEXT = re.compile(
    r"\b(?:cvv2?|cvc2?|cid|csc|security\s+(?:code|number)|verification\s+(?:code|number|value)|"
    r"code\s+on\s+the\s+back|digits\s+on\s+the\s+back|(?:three|four|3|4)[\s-]digit\s+code)\b",
    re.IGNORECASE,
)
_CARD_WORD = re.compile(r"\b(?:card|visa|mastercard|amex|discover)\b", re.IGNORECASE)
_CODE_WORD = re.compile(r"\bcode\b", re.IGNORECASE)
_CONTEXT_CHARS = 32
_CODE_CONTEXT_CHARS = 48
_CURRENCY = "$€£¥"
_PLUS = re.compile(r"(?:\+|\bplus\s+)$", re.IGNORECASE)  # "+44 ...", "plus four four ..."
_Unit = Number  # one piece of a number: a typed digit group ("4111") or spoken digits


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


def _numbers(scan: _Scan) -> list[Finding]:
    found: list[Finding] = []
    for run in _runs(numbers_in(scan.text), scan.text):
        first = 0
        while first < len(run):
            finding, after = _longest_from(scan, run, first)
            if finding is None:
                first += 1
            else:
                found.append(finding)
                first = after
    return found


def _longest_from(scan: _Scan, run: Sequence[_Unit], first: int) -> tuple[Finding | None, int]:
    last = first
    digits = 0
    while last < len(run) and digits + len(run[last].digits) <= _MAX_DIGITS:
        digits += len(run[last].digits)
        last += 1
    for end in range(last, first, -1):
        finding = _classify(scan, run[first:end])
        if finding is not None:
            return finding, end
    return None, first + 1


def _classify(scan: _Scan, units: Sequence[_Unit]) -> Finding | None:
    text, kinds = scan.text, scan.kinds
    digits = "".join(unit.digits for unit in units)
    start, end = units[0].start, units[-1].end
    gaps = [text[a.end : b.start] for a, b in itertools.pairwise(units)]
    if PiiKind.CARD in kinds and _is_card(digits, units, gaps):
        return Finding(PiiKind.CARD, start, end)
    if _glued_to_word(text, start, end):
        return None
    if PiiKind.SECURITY_CODE in kinds and _is_security_code(scan, digits, units, gaps):
        return Finding(PiiKind.SECURITY_CODE, start, end)
    if PiiKind.SSN in kinds and _is_ssn(text, digits, units, gaps):
        return Finding(PiiKind.SSN, start, end)
    if PiiKind.PHONE in kinds:
        return _phone(scan, digits, units, gaps)
    return None


def _is_card(digits: str, units: Sequence[_Unit], gaps: Sequence[str]) -> bool:
    if not 13 <= len(digits) <= 19 or not luhn_valid(digits):
        return False
    return all(_gap_allowed(gap, a, b, "- ") for gap, a, b in _pairs(units, gaps))


def _is_security_code(
    scan: _Scan, digits: str, units: Sequence[_Unit], gaps: Sequence[str]
) -> bool:
    if len(digits) not in (3, 4):
        return False
    if not all(_gap_allowed(gap, a, b, " ") for gap, a, b in _pairs(units, gaps)):
        return False
    before = scan.text[max(0, units[0].start - _CODE_CONTEXT_CHARS) : units[0].start]
    if _CODE_CONTEXT.search(before) or _CODE_CONTEXT.search(scan.context):
        return True
    # "... and the code is 123" while a card is being given
    near = scan.text[max(0, units[0].start - _CONTEXT_CHARS) : units[0].start]
    about_card = _CARD_WORD.search(scan.text) or _CARD_WORD.search(scan.context)
    return bool(about_card and _CODE_WORD.search(near))


def _is_ssn(text: str, digits: str, units: Sequence[_Unit], gaps: Sequence[str]) -> bool:
    if not ssn_valid(digits):
        return False
    if not all(_gap_allowed(gap, a, b, "- ") for gap, a, b in _pairs(units, gaps)):
        return False
    if _groups(units, gaps) == [3, 2, 4]:
        return True
    before = text[max(0, units[0].start - _CONTEXT_CHARS) : units[0].start]
    return _SSN_CONTEXT.search(before) is not None


def _phone(scan: _Scan, digits: str, units: Sequence[_Unit], gaps: Sequence[str]) -> Finding | None:
    text = scan.text
    start, end = units[0].start, units[-1].end
    if not all(_gap_allowed(gap, a, b, "-. ()") for gap, a, b in _pairs(units, gaps)):
        return None
    plus = _PLUS.search(text, max(0, start - 8), start)
    if plus:
        if not _dialable(f"+{digits}", None):
            return None
        start = plus.start()
    elif not _national(digits, scan.region):
        return None
    if start > 0 and text[start - 1] == "(" and not plus:
        start -= 1
    before = text[max(0, start - _CONTEXT_CHARS) : start]
    if before.rstrip().endswith(tuple(_CURRENCY)) or _IDENTIFIER_CONTEXT.search(before):
        return None
    if start > 0 and (text[start - 1].isalnum() or text[start - 1] in "#_/"):
        return None
    return Finding(PiiKind.PHONE, start, end)


def _national(digits: str, region: str) -> bool:
    """Digits dialled without "+": North American (every line takes them as a phone number),
    or valid in the line's own country."""
    if _north_american(digits):
        return True
    return region != DEFAULT_REGION and _dialable(digits, region)


def _dialable(number: str, region: str | None) -> bool:
    """A number in international form ("+44...") that its country's plan allows, by length
    (over-redaction is preferred to a leak), or a national one valid in `region`."""
    if not 8 <= len(number.lstrip("+")) <= 15:
        return False
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return False
    if region is None:
        return phonenumbers.is_possible_number(parsed)
    return phonenumbers.is_valid_number_for_region(parsed, region)


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
