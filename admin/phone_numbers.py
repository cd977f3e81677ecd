"""Caller numbers at rest: a keyed hash to find calls by number, a masked form to show.

The clear number is never stored. The hash is HMAC-SHA256 under `security.number_hash_key`, so
nobody without the key can confirm a guessed number, while the same number always gives the
same hash and can be filtered on exactly.
"""

from __future__ import annotations

import hashlib
import hmac
import re

_SEPARATORS = re.compile(r"[\s\-.()/]")
_NUMBER = re.compile(r"\+?[0-9]{1,20}")
_SHOWN_TAIL = 4


def normalize(number: str) -> str:
    """The number without the spaces, dashes, dots and brackets people write into it.

    Raises ValueError for anything that is not a phone number ('anonymous', a SIP user name);
    such callers are stored without a number.
    """
    compact = _SEPARATORS.sub("", number)
    if not _NUMBER.fullmatch(compact):
        raise ValueError("not a phone number: expected up to 20 digits with an optional '+'")
    return compact


def number_hash(number: str, *, key: bytes) -> str:
    """The hex HMAC-SHA256 of the normalized number; equal numbers give equal hashes."""
    return hmac.new(key, normalize(number).encode(), hashlib.sha256).hexdigest()


def mask(number: str) -> str:
    """A display form that hides the middle: '+15551234567' -> '+1******4567'."""
    compact = normalize(number)
    plus = "+" if compact.startswith("+") else ""
    digits = compact.removeprefix("+")
    if len(digits) <= _SHOWN_TAIL + 3:  # short numbers (extensions) keep only the last two
        return plus + "*" * max(len(digits) - 2, 0) + digits[-2:]
    hidden = len(digits) - 1 - _SHOWN_TAIL
    return f"{plus}{digits[0]}{'*' * hidden}{digits[-_SHOWN_TAIL:]}"
