"""The call-command codec: every kind round-trips; every malformed message is refused clearly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from telephony.commands import (
    COMMAND_TYPES,
    MAX_MESSAGE_BYTES,
    AttachLeg,
    Command,
    CommandError,
    DetachAgent,
    DetachLeg,
    Hangup,
    Hold,
    PauseRecording,
    PlayPrompt,
    ReattachAgent,
    Reply,
    ResumeRecording,
    SetMode,
    Status,
    Transfer,
    Unhold,
    Whisper,
    browser_name,
    browser_uri,
    decode,
    decode_reply,
    encode,
    encode_reply,
)
from telephony.mixing import Leg
from telephony.phases import Mode

CALL = "4f1c0d5e9a7b4c3d8e2f1a0b9c8d7e6f"
WHO = "supervisor:7"

EVERY_KIND: list[Command] = [
    Hangup(call_id=CALL, actor=WHO, reason="supervisor ended the call"),
    PlayPrompt(call_id=CALL, actor="system", prompt="engine_unavailable", to=Leg.SUPERVISOR),
    Hold(call_id=CALL, actor=WHO),
    Unhold(call_id=CALL, actor=WHO),
    AttachLeg(call_id=CALL, actor=WHO, uri="sip:7@pbx.example.com;transport=tcp"),
    AttachLeg(call_id=CALL, actor=WHO, uri=None),
    AttachLeg(call_id=CALL, actor=WHO, uri="browser:alice"),
    DetachLeg(call_id=CALL, actor=WHO),
    SetMode(call_id=CALL, actor=WHO, mode=Mode.WHISPER),
    DetachAgent(call_id=CALL, actor="api:admin"),
    ReattachAgent(call_id=CALL, actor=WHO, note="caller wants the March invoice"),
    ReattachAgent(call_id=CALL, actor=WHO),
    Whisper(call_id=CALL, actor=WHO, text="offer the refund"),
    Transfer(call_id=CALL, actor=WHO, target="sips:billing@example.com"),
    Status(call_id=CALL, actor="escalation"),
    PlayPrompt(call_id=CALL, actor="escalation", prompt="speech", speech="ab" * 32),
    PauseRecording(call_id=CALL, actor=WHO),
    ResumeRecording(call_id=CALL, actor=WHO),
]


def test_every_kind_is_covered() -> None:
    assert {type(c) for c in EVERY_KIND} == set(COMMAND_TYPES.values())


@pytest.mark.parametrize("command", EVERY_KIND, ids=lambda c: type(c).__name__)
def test_round_trip(command: Command) -> None:
    data = encode(command)
    assert b"\n" not in data
    raw = json.loads(data)
    assert raw["type"] == command.TYPE
    assert decode(data) == command
    assert decode(data.decode()) == command  # text too


def test_wire_format_is_flat_json_with_enum_values() -> None:
    command = SetMode(call_id=CALL, actor=WHO, mode=Mode.BARGE, command_id="c1")
    assert json.loads(encode(command)) == {
        "type": "set_mode",
        "call_id": CALL,
        "actor": WHO,
        "command_id": "c1",
        "mode": "barge",
    }


def test_command_ids_are_fresh_uuid_hex() -> None:
    first, second = Hold(call_id=CALL, actor=WHO), Hold(call_id=CALL, actor=WHO)
    assert first.command_id != second.command_id
    assert len(first.command_id) == 32 and int(first.command_id, 16) >= 0


def test_nullable_fields_may_be_left_out() -> None:
    raw = {
        "type": "attach_leg",
        "call_id": CALL,
        "actor": WHO,
        "command_id": "c",
        "leg": "supervisor",
    }
    assert decode(json.dumps(raw).encode()) == AttachLeg(
        call_id=CALL, actor=WHO, command_id="c", uri=None
    )


def _hangup(**changes: Any) -> bytes:
    raw: dict[str, Any] = {
        "type": "hangup",
        "call_id": CALL,
        "actor": WHO,
        "command_id": "cmd-1",
        "reason": "done",
    }
    raw.update(changes)
    return json.dumps({k: v for k, v in raw.items() if v is not _GONE}).encode()


_GONE = object()


@pytest.mark.parametrize(
    ("data", "message", "field"),
    [
        (b"{not json", "not JSON", None),
        (b"\xff\xfe", "not JSON", None),
        (b"[1, 2]", "JSON object", None),
        (_hangup(type="reboot"), "unknown command type 'reboot'", "type"),
        (_hangup(type=7), "unknown command type 7", "type"),
        (_hangup(reason=_GONE), "hangup needs the field 'reason'", "reason"),
        (_hangup(call_id=_GONE), "needs the field 'call_id'", "call_id"),
        (_hangup(colour="red"), "unknown fields: 'colour'", "colour"),
        (_hangup(reason=5), "reason must be a non-empty string", "reason"),
        (_hangup(reason="   "), "reason must be a non-empty string", "reason"),
        (_hangup(call_id=None), "call_id must be 1-128 printable ASCII", "call_id"),
        (_hangup(call_id="abc\x00def"), "call_id must be", "call_id"),
        (_hangup(actor="supervisor:7\r\nX-Injected: 1"), "actor must be", "actor"),
        (_hangup(command_id="x" * 129), "command_id must be", "command_id"),
        (_hangup(command_id=""), "command_id must be", "command_id"),
        (_hangup(command_id=True), "command_id must be", "command_id"),
    ],
)
def test_malformed_hangup_is_refused(data: bytes, message: str, field: str | None) -> None:
    with pytest.raises(CommandError, match=message) as caught:
        decode(data)
    assert caught.value.field == field


def _raw(kind: str, **fields: object) -> bytes:
    return json.dumps(
        {"type": kind, "call_id": CALL, "actor": WHO, "command_id": "c", **fields}
    ).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_raw("set_mode", mode="shout"), "mode must be one of 'monitor', 'whisper', 'barge'"),
        (_raw("set_mode", mode="BARGE"), "mode must be one of"),
        (_raw("play_prompt", prompt="../../etc/passwd", to="caller"), "prompt must be a prompt"),
        (_raw("play_prompt", prompt="hold", to="agent"), "to must be one of 'caller', 'super"),
        (_raw("play_prompt", prompt="speech", to="caller", speech="../x"), "speech must be a SHA"),
        (_raw("play_prompt", prompt="speech", to="caller", speech="AB" * 32), "must be a SHA"),
        (_raw("play_prompt", prompt="hold", to="prompt"), "to must be one of 'caller', 'super"),
        (_raw("attach_leg", leg="caller"), "leg must be one of 'supervisor'"),
        (_raw("detach_leg", leg="caller"), "leg must be one of 'supervisor'"),
        (_raw("attach_leg", leg="supervisor", uri="tel:+15551234"), "sip: or sips: URI"),
        (_raw("attach_leg", leg="supervisor", uri="sip:"), "sip: or sips: URI"),
        (_raw("transfer", target="http://example.com"), "target must be a sip: or sips: URI"),
        (_raw("transfer", target="sip:a@b c"), "target must be a sip:"),
        (_raw("transfer", target="sip:a@b\r\nVia: x"), "target must be a sip:"),
        (_raw("transfer"), "transfer needs the field 'target'"),
        (_raw("whisper", text=""), "text must be a non-empty string"),
        (_raw("whisper", text=["hi"]), "text must be a non-empty string"),
        (_raw("reattach_agent", note=3), "note must be a non-empty string"),
        (_raw("hold", mode="barge"), "hold has unknown fields: 'mode'"),
    ],
)
def test_malformed_fields_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        decode(data)


def test_the_command_id_survives_a_refusal_so_the_sender_can_be_told() -> None:
    with pytest.raises(CommandError) as caught:
        decode(_raw("set_mode", mode="shout"))
    assert caught.value.command_id == "c"
    with pytest.raises(CommandError) as caught:
        decode(_hangup(command_id="bad id"))
    assert caught.value.command_id == ""


def test_oversized_messages_are_refused_both_ways() -> None:
    padded = _raw("whisper", text="a" * MAX_MESSAGE_BYTES)
    with pytest.raises(CommandError, match=r"over the limit of 16384"):
        decode(padded)
    with pytest.raises(CommandError, match=r"over the limit"):
        encode(Whisper(call_id=CALL, actor=WHO, text="a" * MAX_MESSAGE_BYTES))


def test_a_bad_command_fails_where_it_is_made() -> None:
    with pytest.raises(CommandError, match="target must be a sip"):
        encode(Transfer(call_id=CALL, actor=WHO, target="billing"))


def test_long_values_are_cut_short_in_messages() -> None:
    with pytest.raises(CommandError) as caught:
        decode(_hangup(type="x" * 5000))
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize(
    "reply",
    [
        Reply.success("c1", {"phase": "on_hold", "legs": ["caller", "agent"]}),
        Reply.success("c1"),
        Reply.failure("c1", "no such call"),
        Reply.failure("", "bad command: not JSON"),
    ],
)
def test_reply_round_trip(reply: Reply) -> None:
    data = encode_reply(reply)
    assert json.loads(data)["type"] == "reply"
    assert decode_reply(data) == reply


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"type": "hangup"}, "type 'reply'"),
        ({"command_id": "c", "ok": True, "data": {}}, "type 'reply'"),
        ({"type": "reply", "command_id": "c", "ok": "yes", "data": {}}, "ok must be true"),
        ({"type": "reply", "command_id": "c", "ok": True, "error": "x", "data": {}}, "no error"),
        ({"type": "reply", "command_id": "c", "ok": False, "data": {}}, "error must be"),
        ({"type": "reply", "command_id": "c", "ok": True, "data": []}, "data must be an object"),
        ({"type": "reply", "command_id": "c", "ok": True}, "needs the field 'data'"),
        ({"type": "reply", "command_id": "c d", "ok": True, "data": {}}, "command_id must be"),
        ({"type": "reply", "command_id": "c", "ok": True, "data": {}, "x": 1}, "unknown fields"),
    ],
)
def test_malformed_replies_are_refused(raw: dict[str, object], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        decode_reply(json.dumps(raw).encode())


def test_a_reply_that_is_not_json_is_refused_at_encode() -> None:
    with pytest.raises(CommandError, match="not JSON-serializable"):
        encode_reply(Reply.success("c", {"when": object()}))


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("browser:", "a browser leg is browser:<supervisor name>"),
        ("browser:al ice", "a browser leg is browser:<supervisor name>"),
        ("browser:../../etc", "a browser leg is browser:<supervisor name>"),
        ("browser:" + "a" * 65, "a browser leg is browser:<supervisor name>"),
        ("http://example.com/", "must be a sip: or sips: URI"),
    ],
)
def test_a_leg_uri_is_a_sip_uri_or_a_named_browser(uri: str, message: str) -> None:
    raw = {"type": "attach_leg", "call_id": CALL, "actor": WHO, "command_id": "c"}
    raw.update(leg="supervisor", uri=uri)
    with pytest.raises(CommandError, match=message):
        decode(json.dumps(raw).encode())


def test_browser_uris_name_their_supervisor() -> None:
    assert browser_uri("alice.b@example") == "browser:alice.b@example"
    assert browser_name("browser:alice") == "alice"
    assert browser_name("sip:alice@example.com") is None
    with pytest.raises(ValueError, match="not a supervisor name"):
        browser_uri("alice smith")
