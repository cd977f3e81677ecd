"""Opaque page cursors: the sort key and id of the last row a page showed.

A cursor is base64url JSON, not a secret; it also names the sort and a digest of the filters,
so one from another query is refused instead of silently paging something else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any


class BadCursor(ValueError):
    """The cursor is malformed or belongs to another query."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where the previous page ended: its last row's sort value and id."""

    value: str | int | None
    id: str | int


def query_digest(**filters: object) -> str:
    """A short digest of the filters a cursor is valid for."""
    canonical = json.dumps(filters, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode(position: Position, *, sort: str, digest: str) -> str:
    raw = json.dumps([sort, digest, position.value, position.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(cursor: str, *, sort: str, digest: str) -> Position:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw: Any = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise BadCursor("the cursor is not one this API gave out; start again without it") from None
    if not (isinstance(raw, list) and len(raw) == 4):
        raise BadCursor("the cursor is not one this API gave out; start again without it")
    cursor_sort, cursor_digest, value, row_id = raw
    if cursor_sort != sort or cursor_digest != digest:
        raise BadCursor(
            "the cursor belongs to another query: keep the same filters and sort while paging"
        )
    if not isinstance(value, str | int | None) or not isinstance(row_id, str | int):
        raise BadCursor("the cursor is not one this API gave out; start again without it")
    if isinstance(value, bool) or isinstance(row_id, bool):
        raise BadCursor("the cursor is not one this API gave out; start again without it")
    return Position(value, row_id)
