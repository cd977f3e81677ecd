"""The PII detector on its own: what is found, what is left alone, and the near misses."""

from __future__ import annotations

import pytest

from agent.pii import (
    ALL_KINDS,
    PiiKind,
    find_pii,
    luhn_valid,
    nanp_valid,
    redact,
    ssn_valid,
)

VISA = "4111 1111 1111 1111"  # a test number: passes Luhn
SPOKEN_VISA = " ".join(["four"] + ["one"] * 15)


def kinds(text: str) -> list[str]:
    return [finding.kind.value for finding in find_pii(text)]


@pytest.mark.parametrize(
    ("digits", "valid"),
    [
        ("4111111111111111", True),
        ("5555555555554444", True),
        ("378282246310005", True),  # Amex, 15 digits
        ("4111111111111112", False),
        ("1234567812345678", False),
        ("", False),
        ("41x1", False),
    ],
)
def test_luhn(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


def test_ssn_and_nanp_rules() -> None:
    assert ssn_valid("123456789")
    assert not ssn_valid("000456789")
    assert not ssn_valid("666456789")
    assert not ssn_valid("923456789")
    assert not ssn_valid("123006789")
    assert not ssn_valid("123450000")
    assert nanp_valid("4155550123")
    assert not nanp_valid("1155550123")
    assert not nanp_valid("4151550123")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"my card is {VISA} thanks", "my card is [card] thanks"),
        ("card 4111-1111-1111-1111.", "card [card]."),
        ("4111111111111111", "[card]"),
        ("amex 3782 822463 10005", "amex [card]"),
        (f"it's {SPOKEN_VISA}", "it's [card]"),
        ("four one one one 1111 one one one one 1111", "[card]"),
        (f"{VISA} 12 25 is the expiry", "[card] 12 25 is the expiry"),
        ("ssn 123-45-6789", "ssn [ssn]"),
        ("it's 123 45 6789", "it's [ssn]"),
        ("my social is one two three four five six seven eight nine", "my social is [ssn]"),
        ("SSN: 123456789", "SSN: [ssn]"),
        ("mail jane.doe+calls@example.co.uk today", "mail [email] today"),
        ("It's JOHN_SMITH@Example.com.", "It's [email]."),
        ("it is john dot smith at example dot com ok", "it is [email] ok"),
        ("call me at (415) 555-0123", "call me at [phone]"),
        ("call 415.555.0123 or 415-555-0124", "call [phone] or [phone]"),
        ("my number is +1 415 555 0123", "my number is [phone]"),
        ("london +44 20 7946 0958", "london [phone]"),
        ("1-800-555-0199 is the line", "[phone] is the line"),
        (
            "four one five, five five five, oh one two three",
            "[phone]",
        ),
        ("four one five double five five oh one two three", "[phone]"),
        ("call 415 555 0123 4 times", "call [phone] 4 times"),
        (
            f"card {VISA}, phone 415 555 0123, mail a@b.io",
            "card [card], phone [phone], mail [email]",
        ),
    ],
)
def test_redacts(text: str, expected: str) -> None:
    assert redact(text).text == expected


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # 16 digits failing Luhn: not a card
        "order number 4155550123 has shipped",  # an order number, not a phone number
        "your tracking id is 4155550123",
        "reference: 415 555 0123",
        "ticket ORD-4155550123",
        "id A4155550123",
        "code 4155550123abc",
        "that costs $4,235,550,123",
        "total 42,355,501.23",
        "1155550123",  # area code cannot start with 1
        "4151550123",  # nor the exchange
        "123456789",  # nine digits without an SSN's shape or a word saying so
        "000-12-3456",  # an area the SSA never issues
        "12-345-6789",  # wrong grouping, no context
        "on 2024-01-15 at 10:30",
        "oh, one moment please",
        "I'd like two or three",
        "email me @ noon",
        "user@localhost",
        "version 1.2.3.4",
        "",
    ],
)
def test_leaves_alone(text: str) -> None:
    result = redact(text)
    assert result.text == text
    assert not result.changed


def test_home_dot_com_is_a_spoken_email_by_shape() -> None:
    # The spoken form is matched by shape; "home dot com" preceded by a word is taken as one.
    # This documents the trade-off: over-redaction of prose is preferred to a leaked address.
    assert kinds("write to home at home dot com") == ["email"]


def test_policy_limits_kinds() -> None:
    text = f"card {VISA} and jane@example.com and 415-555-0123"
    assert redact(text, {PiiKind.EMAIL}).text == f"card {VISA} and [email] and 415-555-0123"
    assert redact(text, set()).text == text
    assert redact(text, {PiiKind.CARD, PiiKind.PHONE}).text == (
        "card [card] and jane@example.com and [phone]"
    )


def test_a_card_is_not_taken_for_a_phone_when_cards_are_off() -> None:
    # Without the card rule, 16 digits are still not a phone number (too long).
    assert redact(VISA, {PiiKind.PHONE}).text == VISA


def test_redacting_twice_changes_nothing() -> None:
    text = f"card {VISA}, ssn 123-45-6789, jane@example.com, +1 (415) 555-0123"
    once = redact(text)
    twice = redact(once.text)
    assert once.text == "card [card], ssn [ssn], [email], [phone]"
    assert twice.text == once.text
    assert not twice.changed


def test_findings_have_spans() -> None:
    text = "x 415-555-0123 y"
    [finding] = find_pii(text, ALL_KINDS)
    assert text[finding.start : finding.end] == "415-555-0123"


def test_long_digit_runs_are_searched_in_bounded_steps() -> None:
    typed = " ".join(["1234"] * 5000)
    assert redact(typed).text == typed
    # Ten spoken nines are a valid phone number; an endless run is cut into such numbers
    # (over-redaction, never a leak), and the search stays linear in the run's length.
    spoken = " ".join(["nine"] * 5000)
    assert set(redact(spoken).text.split()) == {"[phone]"}


PAIRED_VISA = "forty-one eleven, eleven eleven, eleven eleven, eleven eleven"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Card numbers in any grouping a caller uses, as Whisper writes them.
        (f"it's {PAIRED_VISA}", "it's [card]"),
        ("four thousand one hundred eleven, one one one one, 1111 1111", "[card]"),
        ("fifty-five fifty-five, fifty-five fifty-five, 5555 4444.", "[card]."),
        ("4111-1111 eleven eleven, eleven eleven", "[card]"),
        ("double five double five double five double five five five five five 4444", "[card]"),
        # Security codes where the card's code is the subject.
        ("my card is 4111 1111 1111 1111 and the code is 123", "my card is [card] and the "
         "code is [security_code]"),
        ("the CVV is four five six", "the CVV is [security_code]"),
        ("security code 7 3 9 1", "security code [security_code]"),
        # Dates of birth after words about birth.
        ("My date of birth is the third of March, nineteen eighty-five.",
         "My date of birth is the [birth_date]."),
        ("I was born on 03/14/1985 in Ohio", "I was born on [birth_date] in Ohio"),
        ("DOB 1985-03-14", "DOB [birth_date]"),
        ("my birthday is July 4th 1990", "my birthday is [birth_date]"),
        # Phone numbers of other countries, typed or spoken after "plus".
        ("my number is plus four four two zero seven nine four six oh nine five eight",
         "my number is [phone]"),
        ("Paris: +33 6 12 34 56 78", "Paris: [phone]"),
        ("ring +49 30 123456", "ring [phone]"),
    ],
)  # fmt: skip
def test_redacts_every_form(text: str, expected: str) -> None:
    assert redact(text).text == expected


@pytest.mark.parametrize(
    "text",
    [
        "I'll be there at 10:30 on March 3rd",  # a date, but nobody's birth
        "born in 1985",  # a year alone is no date of birth
        "the code is 123",  # no card in sight
        "I need 3 4 5 items",
        "call me on 020 7946 0958",  # a UK national number on a US line (see region)
        "plus 12 more",
    ],
)
def test_leaves_alone_without_context(text: str) -> None:
    assert redact(text).text == text


def test_the_question_asked_is_context() -> None:
    code_question = "What's the three-digit security code on the back of your card?"
    assert redact("one two three", context=code_question).text == "[security_code]"
    assert redact("one two three", context="How many tickets?").text == "one two three"
    birth_question = "Can you confirm your date of birth?"
    assert redact("Sure, it's March fourteenth, eighty five.", context=birth_question).text == (
        "Sure, it's [birth_date]."
    )
    assert redact("I have two questions", context=birth_question).text == "I have two questions"


def test_national_numbers_are_read_in_the_lines_country() -> None:
    assert redact("call me on 020 7946 0958", region="GB").text == "call me on [phone]"
    assert redact("call me on 020 7946 0958", region="gb").text == "call me on [phone]"
    # North American numbers are phone numbers on every line.
    assert redact("415 555 0123", region="GB").text == "[phone]"
