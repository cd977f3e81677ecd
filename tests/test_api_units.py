"""The API's pure pieces: page cursors, masking of numbers in event data, access tokens."""

from __future__ import annotations

import datetime as dt

import pytest

from admin.api import cursor, event_redaction, tokens
from admin.api.cursor import BadCursor, Position
from admin.api.roles import PERMISSIONS, Permission
from admin.models import Role


def test_a_cursor_round_trips_only_for_its_own_query() -> None:
    digest = cursor.query_digest(line_id=3, outcome=None)
    encoded = cursor.encode(
        Position("2026-03-01T09:00:00+00:00", "ab" * 16), sort="-started_at", digest=digest
    )
    assert cursor.decode(encoded, sort="-started_at", digest=digest) == Position(
        "2026-03-01T09:00:00+00:00", "ab" * 16
    )
    with pytest.raises(BadCursor, match="another query"):
        cursor.decode(encoded, sort="started_at", digest=digest)
    with pytest.raises(BadCursor, match="another query"):
        cursor.decode(
            encoded, sort="-started_at", digest=cursor.query_digest(line_id=4, outcome=None)
        )


@pytest.mark.parametrize(
    "garbage", ["", "!!!", "bm90IGpzb24", "W10", "WzEsMiwzXQ", "WyJhIiwiYiIsdHJ1ZSwxXQ", "\u00e9"]
)
def test_a_malformed_cursor_is_refused(garbage: str) -> None:
    with pytest.raises(BadCursor):
        cursor.decode(garbage, sort="a", digest="b")


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        ({"from": "sip:+15551234567@pbx"}, {"from": "sip:+1******4567@pbx"}),
        (
            {"from": '"Bob 555 123 4567" <sips:5551234567@pbx;tag=x>'},
            {"from": '"Bob 5*****4567" <sips:5*****4567@pbx;tag=x>'},
        ),
        ({"from": "sip:anonymous@pbx"}, {"from": "sip:anonymous@pbx"}),
        ({"from": "tel:+442079460958"}, {"from": "tel:+4*******0958"}),
        ({"caller": "+1 555 123 4567"}, {"caller": "+1******4567"}),
        # What was said goes through the redaction detector; digit runs it leaves are masked.
        ({"text": "card 4111 1111 1111 1111 please"}, {"text": "card [card] please"}),
        (
            {"text": "my date of birth is May 5th 1980"},
            {"text": "my date of birth is [birth_date]"},
        ),
        ({"text": "order 1234567"}, {"text": "order *****67"}),
        ({"nested": [{"note": "call 5551234567"}]}, {"nested": [{"note": "call 5*****4567"}]}),
        (
            {"digit": "0", "codec": "G722", "n": 5551234567},
            {"digit": "0", "codec": "G722", "n": 5551234567},
        ),
        ({"id": "a1b2c3d4e5f60718293a4b5c6d7e8f90"}, {"id": "a1b2c3d4e5f60718293a4b5c6d7e8f90"}),
        # What a hostile caller sends: too many digits, digits of another script, NULs.
        ({"from": f"sip:+{'1' * 40}@pbx"}, {"from": f"sip:+{'*' * 19}…[+21 chars]@pbx"}),
        ({"note": "call ٥٥٥١٢٣٤٥٦٧"}, {"note": "call 5*****4567"}),
        ({"from": "sip:+1555\x00123\x004567@pbx"}, {"from": "sip:+1******4567@pbx"}),
    ],
)
def test_numbers_in_event_data_are_masked(
    data: dict[str, object], shown: dict[str, object]
) -> None:
    assert event_redaction.redact(data) == shown


def test_tokens_name_their_user_and_expire() -> None:
    now = dt.datetime.now(dt.UTC)
    issued = tokens.issue(42, key=b"k" * 32, minutes=5, now=now)
    assert tokens.user_id(issued.token, key=b"k" * 32) == 42
    assert issued.expires_at == now + dt.timedelta(minutes=5)
    with pytest.raises(tokens.InvalidToken):
        tokens.user_id(issued.token, key=b"j" * 32)
    stale = tokens.issue(42, key=b"k" * 32, minutes=5, now=now - dt.timedelta(minutes=10))
    with pytest.raises(tokens.InvalidToken):
        tokens.user_id(stale.token, key=b"k" * 32)


def test_the_role_table() -> None:
    assert PERMISSIONS[Role.ADMIN] == frozenset(Permission)
    writes = {p for p in Permission if p.value.startswith("manage_")}
    assert not writes & (PERMISSIONS[Role.AUDITOR] | PERMISSIONS[Role.SUPERVISOR])
    assert Permission.WATCH_LIVE not in PERMISSIONS[Role.AUDITOR]
    assert Permission.READ_ALL_CALLS not in PERMISSIONS[Role.SUPERVISOR]
