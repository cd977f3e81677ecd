"""Call event data as the API shows it: caller numbers masked, caller text made safe.

Workers put the caller's SIP URI into `call.started` ("from") and may put numbers into other
fields; the API never returns them in clear. Named fields are masked as numbers; every string
goes through the redaction detector (agent.pii: cards, codes, SSNs, addresses, phone numbers,
dates of birth; a call stored before its words were redacted at the source shows none of them),
and any run of seven or more digits left is masked too.

Whatever a caller sent is in there as it came (a display name of 10 kB, NULs, bidi overrides,
invalid UTF-8): every string is cleaned and cut (admin.display_text), so one hostile call
cannot break a response or the /live stream.
"""

from __future__ import annotations

import math
import re

from admin import display_text, phone_numbers
from agent.pii import redact as redact_text

TEXT_LIMIT = 2000  # characters of one string; a longer one ends in '…[+N chars]'
KEY_LIMIT = 64
DEPTH_LIMIT = 16  # nesting shown; workers send flat objects
_TOO_DEEP = "…[nested too deep]"

_CALLER_FIELDS = frozenset(
    {"from", "caller", "caller_number", "callback_number", "remote_uri", "from_uri"}
)
# A number as people and SIP URIs write it: optional '+', then digits with separators.
_NUMBER_RUN = re.compile(r"(?<![\w+])\+?\d(?:[\s\-.()/]?\d){6,}(?!\w)")
_SIP_USER = re.compile(r"^(?P<head>(?:.*<)?(?:sips?|tel):)(?P<user>[^@;>]+)(?P<tail>.*)$")


def redact(data: object, *, depth: int = 0) -> object:
    """A copy of `data` (JSON-like) with every caller number masked and every string safe."""
    if depth > DEPTH_LIMIT:
        return _TOO_DEEP
    if isinstance(data, dict):
        return {
            display_text.shown(str(key), limit=KEY_LIMIT): _field(key, value, depth)
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [redact(item, depth=depth + 1) for item in data]
    if isinstance(data, str):
        return _text(mask_digit_runs(redact_text(display_text.clean(data)).text))
    if isinstance(data, float) and not math.isfinite(data):
        return None  # JSON has no NaN or infinity; a browser's parser refuses them
    return data


def _field(key: object, value: object, depth: int) -> object:
    if key in _CALLER_FIELDS and isinstance(value, str):
        return _text(mask_uri(display_text.clean(value)))
    return redact(value, depth=depth + 1)


def _text(text: str) -> str:
    return display_text.cut(text, limit=TEXT_LIMIT)


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
    if phone_numbers.is_phone_number(user):
        return phone_numbers.mask(user)
    return mask_digit_runs(user)  # 'anonymous', a SIP user name: not a number
