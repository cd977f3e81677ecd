"""Supervisor phone settings, refused with the reason when they cannot be used safely."""

from __future__ import annotations

import pytest

from telephony.phones import SupervisorPhone, phone_uri


def test_a_registering_phone_and_a_dialled_one() -> None:
    alice = SupervisorPhone("alice", password="s3cret-pass")
    desk = SupervisorPhone("desk-7", uri="sip:7001@192.0.2.10:5060")
    assert alice.registers and not desk.registers
    assert phone_uri(alice, "127.0.0.1", 5060) == "sip:alice@127.0.0.1:5060"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "alice"}, "either a password"),
        ({"name": "alice", "password": "s3cret-pass", "uri": "sip:a@192.0.2.1"}, "not both"),
        ({"name": "al ice", "password": "s3cret-pass"}, "letters, digits"),
        ({"name": "alice", "password": "short"}, "8-64 printable"),
        ({"name": "alice", "password": 'has"quote"x'}, "quotes"),
        ({"name": "alice", "password": "dollar$var1"}, "quotes"),
        ({"name": "desk", "uri": "sip:7001@pbx.example.com"}, "IP address"),
        ({"name": "desk", "uri": "http://192.0.2.1/"}, "sip:user@"),
        ({"name": "desk", "uri": "sip:7001@192.0.2.1:70000"}, "port out of range"),
    ],
)
def test_unusable_phones_are_refused_with_the_reason(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SupervisorPhone(**kwargs)
