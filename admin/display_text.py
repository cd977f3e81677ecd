"""Text a caller controls, made safe to store and show: cleaned, and cut to a length.

Everything that arrives over SIP (display names, URIs, dialled numbers, header values) can be
any length and hold any code point. Before such text goes into a column or out of the API:

- control characters go: line breaks and tabs become a space (words stay apart), the rest
  (NUL, ESC, DEL, C1) are removed; so do the bidi controls that make text read in another
  order than it is stored;
- lone surrogates (invalid UTF-8 a SIP stack passed through) become U+FFFD, so the text can be
  encoded at all;
- text longer than its limit is cut and ends in a marker that says how much is hidden:
  '…[+123 chars]'.

Pure functions, no I/O; `shown` is the one to call.
"""

from __future__ import annotations

import re

_SPACED = re.compile("[\t\n\v\f\r\x1c-\x1f\x85\u2028\u2029]+")
_REMOVED = re.compile(
    "[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSAFE = re.compile(f"{_SPACED.pattern}|{_REMOVED.pattern}|{_SURROGATE.pattern}")
_CUT = "…"


def clean(text: str) -> str:
    """`text` without control characters or bidi controls, and encodable as UTF-8."""
    if _UNSAFE.search(text) is None:
        return text
    return _SURROGATE.sub("\ufffd", _REMOVED.sub("", _SPACED.sub(" ", text)))


def cut(text: str, *, limit: int) -> str:
    """`text` if it fits in `limit` characters, else its start and a marker of how much is
    hidden ('…[+123 chars]'), together `limit` long at most (just '…' where the count cannot
    fit)."""
    if limit < 1:
        raise ValueError("a text limit must be at least one character")
    if len(text) <= limit:
        return text
    # The marker counts the hidden part: sized for the whole text, it has room for that count,
    # and a count with fewer digits leaves room to show more.
    keep = limit - len(_marker(len(text)))
    if keep < 1:
        return text[: limit - 1] + _CUT
    while keep + 1 + len(_marker(len(text) - keep - 1)) <= limit:
        keep += 1
    return text[:keep] + _marker(len(text) - keep)


def shown(text: str, *, limit: int) -> str:
    """`text` cleaned and cut to `limit`: what may be stored in a column of that length or
    shown by the API."""
    return cut(clean(text), limit=limit)


def _marker(hidden: int) -> str:
    return f"{_CUT}[+{hidden} chars]"
