"""Caller numbers at rest: a keyed hash to find calls by number, a masked form to show.

The clear number is never stored. The hash is HMAC-SHA256 under `security.number_hash_key`, so
nobody without the key can confirm a guessed number, while the same number always gives the
same hash and can be filtered on exactly.

What a caller sends as its number is whatever it likes (40 digits, a NUL, digits of another
script): `normalize` refuses what is not a phone number, and `mask` shows anything without
raising and without showing a number in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import re

import phonenumbers

from admin import display_text
from agent.pii import DEFAULT_REGION

MAX_DIGITS = 20  # E.164 allows 15; the rest leaves room for trunk and exit prefixes
MASK_LENGTH = 32  # the longest masked form (the width of calls.caller_masked)

_SEPARATORS = re.compile(r"[\s\-.()/]")
_NUMBER = re.compile(rf"\+?[0-9]{{1,{MAX_DIGITS}}}")
_DIGIT = re.compile(r"\d")  # a decimal digit of any script, as the Unicode database has them
_SHOWN_TAIL = 4


def normalize(number: str) -> str:
    """The number in ASCII digits, without the spaces, dashes, dots and brackets people write
    into it ('+1 (555) 123-4567' -> '+15551234567'; digits of other scripts become ASCII).

    Raises ValueError for anything that is not a phone number ('anonymous', a SIP user name,
    more than MAX_DIGITS digits); such callers are stored without a number.
    """
    compact = _DIGIT.sub(lambda digit: str(int(digit.group())), _SEPARATORS.sub("", number))
    if not _NUMBER.fullmatch(compact):
        raise ValueError(
            f"not a phone number: expected up to {MAX_DIGITS} digits with an optional '+'"
        )
    return compact


def is_phone_number(text: str) -> bool:
    try:
        normalize(text)
    except ValueError:
        return False
    return True


def e164(number: str, *, region: str = DEFAULT_REGION) -> str:
    """The number in E.164 ('+15551234567') where it reads as a possible number dialled in
    `region` ('(555) 123-4567', '1 555 123 4567'); else its `normalize`d form. Raises
    ValueError as `normalize` does."""
    compact = normalize(number)
    try:
        parsed = phonenumbers.parse(compact, None if compact.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return compact
    if not phonenumbers.is_possible_number(parsed):
        return compact
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def number_hash(number: str, *, key: bytes, region: str = DEFAULT_REGION) -> str:
    """The hex HMAC-SHA256 of the number in E.164; the same number however it was written
    gives the same hash."""
    return _hash(e164(number, region=region), key)


def number_hashes(number: str, *, key: bytes, region: str = DEFAULT_REGION) -> list[str]:
    """Every hash a stored row of this number can carry: its E.164 form's, and those of the
    forms stored before numbers were put in E.164 first ('5551234567', '15551234567')."""
    forms = [e164(number, region=region), normalize(number)]
    international = forms[0]
    if international.startswith("+"):
        try:
            parsed = phonenumbers.parse(international, None)
        except phonenumbers.NumberParseException:
            parsed = None
        if parsed is not None:
            national = str(parsed.national_number)
            forms += [international[1:], national, f"{parsed.country_code}{national}"]
    return list(dict.fromkeys(_hash(form, key) for form in forms))


def _hash(form: str, key: bytes) -> str:
    return hmac.new(key, form.encode(), hashlib.sha256).hexdigest()


def mask(number: str) -> str:
    """A display form that hides the middle: '+15551234567' -> '+1******4567'.

    Never raises, and never longer than MASK_LENGTH. A phone number keeps its first digit and
    last four (an extension its last two); anything else (a run of digits too long to be a
    phone number, text with control characters) has every digit hidden.
    """
    cleaned = display_text.clean(number)
    try:
        compact = normalize(cleaned)
    except ValueError:
        return display_text.cut(_DIGIT.sub("*", cleaned), limit=MASK_LENGTH)
    plus = "+" if compact.startswith("+") else ""
    digits = compact.removeprefix("+")
    if len(digits) <= _SHOWN_TAIL + 3:  # short numbers (extensions) keep only the last two
        return plus + "*" * max(len(digits) - 2, 0) + digits[-2:]
    hidden = len(digits) - 1 - _SHOWN_TAIL
    return f"{plus}{digits[0]}{'*' * hidden}{digits[-_SHOWN_TAIL:]}"
