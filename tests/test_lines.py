from __future__ import annotations

import pytest

from telephony.lines import Line, LineRouter, normalize_number, request_uri_user


def test_request_uri_user_is_the_dialled_number() -> None:
    assert request_uri_user("INVITE sip:100@10.0.0.1:5060;transport=udp SIP/2.0\r\nVia: x") == "100"
    assert request_uri_user("INVITE sip:+15550100;user=phone@h SIP/2.0\r\n") == "+15550100"
    assert request_uri_user("INVITE tel:+1-555-0100 SIP/2.0\r\n") == "+1-555-0100"
    assert request_uri_user("INVITE sip:10.0.0.1 SIP/2.0\r\n") == ""


@pytest.mark.parametrize(
    "message",
    ["", "SIP/2.0 200 OK\r\n", "INVITE\r\n", "INVITE http://x SIP/2.0\r\n", "GARBAGE x y\r\n"],
)
def test_request_uri_user_rejects_non_requests(message: str) -> None:
    with pytest.raises(ValueError):
        request_uri_user(message)


def test_router_matches_normalized_numbers_and_falls_back() -> None:
    sales = Line("sales", ("+1 (555) 0100",))
    support = Line("support", ("200",), agent="echo-delayed")
    router = LineRouter((sales, support), default_line="support")
    assert router.route("15550100") is sales
    assert router.route("+1-555-0100") is sales
    assert router.route("200") is support
    assert router.route("999") is support
    assert LineRouter((sales,), default_line=None).route("999") is None
    assert normalize_number("+1 (555) 01.00") == "15550100"


def test_router_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="two lines"):
        LineRouter((Line("a", ("100",)), Line("b", ("+100",))), None)
    with pytest.raises(ValueError, match="default line"):
        LineRouter((Line("a", ("100",)),), "nope")
