"""The one reader of spoken and typed numbers, shared by the responder and redaction."""

from __future__ import annotations

import pytest

from agent.numbers import Number, numbers_in, parse_spoken_digits


def pieces(text: str) -> list[tuple[str, str]]:
    return [(number.digits, text[number.start : number.end]) for number in numbers_in(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("forty-one eleven", [("41", "forty-one"), ("11", "eleven")]),
        ("It's 4111, double five.", [("4111", "4111"), ("55", "double five")]),
        ("three hundred and five", [("305", "three hundred and five")]),
        ("a hundred", [("100", "a hundred")]),
        ("five oh five", [("5", "five"), ("0", "oh"), ("5", "five")]),
        ("Twelve thousand three hundred forty five", [
            ("12345", "Twelve thousand three hundred forty five"),
        ]),
        ("one twenty three", [("1", "one"), ("23", "twenty three")]),
        ("oh, I see", []),
        ("one to three", [("1", "one"), ("2", "to"), ("3", "three")]),
    ],
)  # fmt: skip
def test_pieces_and_where_they_stand(text: str, expected: list[tuple[str, str]]) -> None:
    assert pieces(text) == expected


def test_spans_mark_spoken_and_typed() -> None:
    assert numbers_in("4 four") == [Number("4", 0, 1, spoken=False), Number("4", 2, 6, True)]


def test_pairs_are_read_as_digits() -> None:
    assert parse_spoken_digits("my order is forty-one eleven") == "4111"
