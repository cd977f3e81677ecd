"""Call event data as the API shows it: caller numbers masked, wherever they sit.

Workers put the caller's SIP URI into `call.started` ("from") and may put numbers into other
fields; the API never returns them in clear. Named fields are masked as numbers, and any run of
seven or more digits in any string (a number read out, a card typed on the keypad) is masked too.
"""

from __future__ import annotations

import re

from admin import phone_numbers

_CALLER_FIELDS = frozenset({"from", "caller", "caller_number", "remote_uri", "from_uri"})
# A number as people and SIP URIs write it: optional '+', then digits with separators.
_NUMBER_RUN = re.compile(r"(?<![\w+])\+?\d(?:[\s\-.()/]?\d){6,}(?!\w)")
_SIP_USER = re.compile(r"^(?P<head>(?:.*<)?(?:sips?|tel):)(?P<user>[^@;>]+)(?P<tail>.*)$")


def redact(data: object) -> object:
    """A copy of `data` (JSON-like) with every caller number masked."""
    if isinstance(data, dict):
        return {
            key: mask_uri(value)
            if key in _CALLER_FIELDS and isinstance(value, str)
            else redact(value)
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [redact(item) for item in data]
    if isinstance(data, str):
        return mask_digit_runs(data)
    return data


def mask_uri(uri: str) -> str:
    """'"Bob" <sip:+15551234567@pbx>' -> '"Bob" <sip:+1******4567@pbx>'; non-numbers stay."""
    match = _SIP_USER.match(uri)
    if match is None:
        return _mask_or_keep(uri)
    head, tail = mask_digit_runs(match["head"]), mask_digit_runs(match["tail"])
    return head + _mask_or_keep(match["user"]) + tail


def mask_digit_runs(text: str) -> str:
    return _NUMBER_RUN.sub(lambda m: phone_numbers.mask(m.group()), text)


def _mask_or_keep(user: str) -> str:
    try:
        return phone_numbers.mask(user)
    except ValueError:  # 'anonymous', a SIP user name: not a number
        return mask_digit_runs(user)
