"""Hostile input over SIP: numbers, names, URIs and header values of any length and with any
characters are stored and shown safely (masked, cleaned, cut with a visible marker), and one
such call breaks neither GET /calls/{id} nor the /live stream, on both backends."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import socket
import time
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from websockets.sync.client import connect
from websockets.sync.connection import Connection

from admin import display_text, phone_numbers, schema
from admin.api import call_queries, event_redaction
from admin.api.app import create_app
from admin.api.context import ApiContext
from admin.api.routes import live
from admin.api.schemas import EventOut
from admin.call_events import insert_new_events
from admin.db import create_engine, session_factory
from admin.ingest import REJECTED_FILE, FileCarrier, Ingester
from admin.jobs.export import ExportRequest, export_calls
from admin.models import Call, CallEventRecord, CallLeg, LegKind, Line, Role
from admin.projection import Projection
from admin.spool import Quarantine
from telephony.events import CallEvent, CallEventKind, JsonlOutlet
from telephony.sipprobe import status_code
from tests.api_data import KEYS, Actor, make_actor, serve
from tests.support import PlatformConfig, Running

pytest_plugins = ["tests.db_support"]

FORTY = "9081726354" * 4  # 40 digits: no phone number is this long
TWENTY_FIVE = FORTY[:25]
# A display name with what a SIP stack lets through: NUL, BEL, an ANSI colour, a right-to-left
# override that would show 'exe.pdf' as 'fdp.exe', line breaks, an emoji, and invalid UTF-8 (as
# pjsua2's SWIG layer hands it over: lone surrogates).
NAME = "\x00Mal\x07lory\x1b[31m \u202efdp.exe\u2066\r\n\U0001f600 bad:\udcff\udcfe"
HOSTILE_FROM = f'"{NAME}" <sip:+{FORTY}@evil.example>;tag=1'
HEADER = "h" * 10_000  # a 10 kB header value (the Call-ID)


# --- the pure pieces ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("plain text, 😀 and ünïcödé", "plain text, 😀 and ünïcödé"),
        ("a\x00b\x07c\x7fd\x9fe", "abcde"),
        ("line\r\nbreak\ttab\x1cfile", "line break tab file"),
        ("\u202eevil\u2066 \u2069\u200fx", "evil x"),
        ("\x1b[31mred", "[31mred"),
        ("bad \udcff\udcfe utf-8", "bad \ufffd\ufffd utf-8"),
        ("", ""),
    ],
)
def test_clean_removes_controls_and_replaces_invalid_utf8(raw: str, cleaned: str) -> None:
    assert display_text.clean(raw) == cleaned
    assert display_text.clean(cleaned) == cleaned


def test_every_code_point_comes_out_encodable_and_without_controls() -> None:
    everything = display_text.clean("".join(map(chr, range(0x110000))))
    everything.encode("utf-8")  # no lone surrogates left
    assert not [c for c in everything if unicodedata.category(c) == "Cc"]
    assert "\u202e" not in everything and "\u2066" not in everything


@pytest.mark.parametrize("limit", [1, 2, 5, 12, 16, 32, 64, 2000])
@pytest.mark.parametrize("extra", [0, 1, 2, 9, 10_000, 1_000_000])
def test_cut_keeps_the_limit_and_says_how_much_is_hidden(limit: int, extra: int) -> None:
    text = "abcdefghij" * ((limit + extra) // 10 + 1)
    text = text[: limit + extra]
    shown = display_text.cut(text, limit=limit)
    assert len(shown) <= limit
    if extra == 0:
        assert shown == text
        return
    kept, marker, count = shown.partition("…")
    assert text.startswith(kept) and marker == "…"
    if count:  # '[+N chars]', unless the limit is too narrow for it
        assert count == f"[+{len(text) - len(kept)} chars]"


def test_cut_refuses_a_limit_that_holds_nothing() -> None:
    with pytest.raises(ValueError, match="at least one character"):
        display_text.cut("x", limit=0)


def test_shown_cleans_then_cuts() -> None:
    assert display_text.shown("\x00" * 50 + "ok", limit=5) == "ok"
    assert display_text.shown("\u202e" + "x" * 100, limit=20) == "x" * 8 + "…[+92 chars]"


def _fullwidth(text: str) -> str:
    """The digits in `text` as fullwidth digits (U+FF10 on), which a display name may hold."""
    return "".join(chr(0xFF10 + int(c)) if c.isdigit() else c for c in text)


@pytest.mark.parametrize(
    "number", [TWENTY_FIVE, "+" + TWENTY_FIVE, FORTY, "+" + FORTY, "7" * 10_000]
)
def test_a_number_too_long_to_be_one_is_masked_whole(number: str) -> None:
    masked = phone_numbers.mask(number)
    assert len(masked) <= phone_numbers.MASK_LENGTH
    shown, _, _ = masked.partition("…")  # the marker's count is ours, not the caller's
    assert set(shown) <= {"+", "*"} and shown.count("*") >= 18


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+15551234567", "+1******4567"),
        ("+", "+"),
        ("", ""),
        ("+" + _fullwidth("15551234567"), "+1******4567"),
        ("٠٢٠٧٩٤٦٠٩٥٨", "0******0958"),  # Arabic-Indic digits
        ("+1555\x00123\x1b4567", "+1******4567"),
        ("\u202e+1 555 123 4567\r\n", "+1******4567"),
        ("anonymous", "anonymous"),
        ("bob99", "bob**"),
        ("+1555-123-4567;ext=99", "+****-***-****;ext=**"),
        ("\udcff12", "\ufffd**"),
    ],
)
def test_mask_never_raises_and_never_shows_a_number(number: str, masked: str) -> None:
    assert phone_numbers.mask(number) == masked


def test_digits_of_any_script_are_the_same_number() -> None:
    assert phone_numbers.normalize(_fullwidth("+1 555 123 4567")) == "+15551234567"
    key = b"k" * 32
    assert phone_numbers.number_hash("٠٢٠٧٩٤٦٠٩٥٨", key=key) == phone_numbers.number_hash(
        "02079460958", key=key
    )
    with pytest.raises(ValueError, match="not a phone number"):
        phone_numbers.normalize(FORTY)


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def _assert_safe(shown: object) -> None:
    """Every string encodable, without controls or bidi overrides, and no 40-digit number in
    clear (nor any seven digits of it)."""
    text = json.dumps(shown, ensure_ascii=False, allow_nan=False)
    text.encode("utf-8")
    for string in _strings(shown):
        assert not [c for c in string if unicodedata.category(c) == "Cc"], string[:80]
        assert "\u202e" not in string and "\u2066" not in string
    assert not [FORTY[i : i + 7] for i in range(len(FORTY) - 6) if FORTY[i : i + 7] in text]


def test_hostile_event_data_is_shown_masked_cleaned_and_cut() -> None:
    nested: object = "deep"
    for _ in range(event_redaction.DEPTH_LIMIT + 4):
        nested = [nested]
    data = {
        "from": HOSTILE_FROM,
        "to": FORTY,
        "sip_call_id": HEADER,
        "note": f"call me on {FORTY} or ٥٥٥١٢٣٤٥٦٧",
        "jitter": float("nan"),
        "nested": nested,
        "\x00key\u202e": "x",
    }
    shown = event_redaction.redact(data)
    _assert_safe(shown)
    assert isinstance(shown, dict)
    assert shown["from"].startswith('"Mallory[31m fdp.exe 😀 bad:\ufffd\ufffd" <sip:+****')
    assert shown["from"].endswith("@evil.example>;tag=1")
    assert shown["sip_call_id"] == "h" * 1986 + "…[+8014 chars]"
    assert len(shown["sip_call_id"]) == event_redaction.TEXT_LIMIT
    assert "5551234567" not in shown["note"] and "٥٥٥١٢٣٤٥٦٧" not in shown["note"]
    assert shown["jitter"] is None
    assert "…[nested too deep]" in json.dumps(shown["nested"], ensure_ascii=False)
    assert shown["key"] == "x"


# --- the projection, on both backends ----------------------------------------------------------


def _hostile_call(call_id: str | None = None) -> list[CallEvent]:
    """A call as a media worker writes it, from a caller who sends the worst it can."""
    call_id = call_id or uuid.uuid4().hex
    mono, wall = time.monotonic_ns(), time.time()
    script: list[tuple[int, CallEventKind, dict[str, Any]]] = [
        (
            0,
            CallEventKind.STARTED,
            {"from": HOSTILE_FROM, "to": FORTY, "line": "main", "sip_call_id": HEADER, "worker": 0},
        ),
        (40, CallEventKind.ANSWERED, {"codec": "G722\x00\u202e" + "c" * 500}),
        (900, CallEventKind.DTMF, {"digit": "\x00" * 64}),
        (1000, CallEventKind.AGENT, {"event": "caller_transcript", "text": NAME}),
        (2000, CallEventKind.ENDED, {"reason": "hangup\x00\u202e" + "r" * 10_000}),
    ]
    return [
        CallEvent(call_id, kind, data, mono + ms * 1_000_000, wall + ms / 1000)
        for ms, kind, data in script
    ]


def _normal_call() -> list[CallEvent]:
    call_id = uuid.uuid4().hex
    mono, wall = time.monotonic_ns(), time.time()
    return [
        CallEvent(
            call_id,
            CallEventKind.STARTED,
            {"from": '"Ann \u202e" <sip:+15551234567@pbx>', "to": "100", "line": "main"},
            mono,
            wall,
        ),
        CallEvent(call_id, CallEventKind.ENDED, {"reason": "hangup"}, mono + 10**9, wall + 1),
    ]


def test_a_hostile_call_is_stored_masked_and_within_its_columns(session: Session) -> None:
    session.add(Line(name="main", agent_profile="embedded"))
    session.flush()
    hostile, normal = _hostile_call(), _normal_call()
    projection = Projection(number_key=KEYS.number_hash, audit_key=KEYS.audit_hmac)
    ended = projection.apply(session, insert_new_events(session, hostile + normal))
    session.flush()  # PostgreSQL refuses what does not fit (or holds a NUL) here
    assert ended == [hostile[0].call_id, normal[0].call_id]

    call = session.get_one(Call, hostile[0].call_id)
    assert (call.caller_hash, call.caller_masked) == (None, None)  # not a phone number
    assert call.to_number == "*" * 20 + "…[+20 chars]"
    assert call.end_reason == "hangup" + "r" * 44 + "…[+9956 chars]"
    assert call.line is not None and call.line.name == "main"
    legs = session.scalars(select(CallLeg).where(CallLeg.call_id == call.id)).all()
    caller_leg = next(leg for leg in legs if leg.kind is LegKind.CALLER)
    assert caller_leg.codec == "G72…[+501 chars]"
    assert all(leg.end_reason == call.end_reason for leg in legs)

    other = session.get_one(Call, normal[0].call_id)
    assert other.caller_masked == "+1******4567" and other.to_number == "100"
    assert other.caller_hash == phone_numbers.number_hash("+15551234567", key=KEYS.number_hash)


def test_exports_hold_no_formula_a_caller_wrote(session: Session, tmp_path: Path) -> None:
    start = dt.datetime(2001, 2, 3, tzinfo=dt.UTC)
    session.add(
        Call(
            id=uuid.uuid4().hex,
            caller_hash="0" * 64,
            caller_masked="+1******4567",
            to_number='=HYPERLINK("http://evil.example","x")',
            started_at=start,
            ended_at=start,
            end_reason="@SUM(1+1)\x1b[2J",
        )
    )
    session.flush()
    request = ExportRequest(start, start + dt.timedelta(hours=1), "csv", False, None)
    result = export_calls(session, request, folder=tmp_path, progress=lambda *_: None)
    [row] = list(csv.DictReader(io.StringIO(result.path.read_text(encoding="utf-8"))))
    assert row["caller"] == "+1******4567"
    assert row["to_number"] == '\'=HYPERLINK("http://evil.example","x")'
    assert row["end_reason"] == "'@SUM(1+1)[2J"


# --- through the ingester to the API and /live, on both backends --------------------------------


@dataclass
class Platform:
    url: str
    sessions: sessionmaker[Session]
    admin: Actor
    supervisor: Actor
    outlet: JsonlOutlet
    ingester: Ingester
    rejected: Path

    def ingest(self, events: list[CallEvent]) -> None:
        """As a media worker and the ingester do: spool lines, then one transaction each batch."""
        for event in events:
            self.outlet.emit(event)
        self.ingester.drain()


@pytest.fixture
def platform(empty_database_url: str, tmp_path: Path) -> Iterator[Platform]:
    schema.upgrade(empty_database_url)
    engine: Engine = create_engine(empty_database_url)
    sessions = session_factory(engine)
    with sessions() as session:
        session.add(Line(name="main", agent_profile="embedded"))
        admin = make_actor(session, "admin", Role.ADMIN)
        supervisor = make_actor(session, "supervisor", Role.SUPERVISOR)
        session.commit()
    spool = tmp_path / "events"
    outlet = JsonlOutlet(spool / "worker-0.jsonl")
    carrier = FileCarrier(spool, poll_interval_s=0.01)
    ingester = Ingester(
        carrier,
        sessions,
        projection=Projection(number_key=KEYS.number_hash, audit_key=KEYS.audit_hmac),
        quarantine=Quarantine(tmp_path / REJECTED_FILE),
    )
    app = create_app(ApiContext(sessions=sessions, keys=KEYS, live_poll_s=0.05))
    try:
        with serve(app) as url:
            yield Platform(
                url, sessions, admin, supervisor, outlet, ingester, tmp_path / REJECTED_FILE
            )
    finally:
        outlet.close()
        carrier.close()
        engine.dispose()


def _live_until(ws: Connection, last_event_id: str) -> list[dict[str, Any]]:
    """Messages up to and including the event `last_event_id`."""
    messages: list[dict[str, Any]] = []
    while not messages or messages[-1].get("event", {}).get("event_id") != last_event_id:
        messages.append(json.loads(ws.recv(timeout=10)))
    return messages


def test_a_hostile_call_breaks_neither_its_detail_nor_the_live_stream(platform: Platform) -> None:
    hostile, normal = _hostile_call(), _normal_call()
    ws_url = platform.url.replace("http://", "ws://") + "/live"
    with connect(ws_url, additional_headers=platform.supervisor.bearer(), open_timeout=5) as ws:
        platform.ingest(hostile)
        platform.ingest(normal)  # a later, ordinary call still reaches every watcher
        messages = _live_until(ws, normal[-1].event_id)
    assert not platform.rejected.exists()  # every event stored and projected
    assert [m["type"] for m in messages] == ["event"] * len(hostile + normal)
    assert [m["event"]["event_id"] for m in messages] == [e.event_id for e in hostile + normal]
    _assert_safe(messages)
    started = messages[0]["event"]["data"]
    assert started["sip_call_id"].endswith("…[+8014 chars]")
    assert "Mallory" in started["from"] and "+****" in started["from"]

    with httpx.Client(base_url=platform.url, timeout=30) as client:
        response = client.get(f"/calls/{hostile[0].call_id}", headers=platform.admin.bearer())
        listing = client.get("/calls", headers=platform.admin.bearer())
    assert response.status_code == 200, response.text
    detail = response.json()
    _assert_safe(detail)
    assert detail["caller"] is None
    assert detail["to_number"] == "*" * 20 + "…[+20 chars]"
    assert detail["end_reason"].endswith("…[+9956 chars]") and len(detail["end_reason"]) == 64
    assert [event["event_id"] for event in detail["events"]] == [e.event_id for e in hostile]
    assert detail["transcript"][0]["text"] == "Mallory[31m fdp.exe 😀 bad:\ufffd\ufffd"
    assert listing.status_code == 200
    listed = {item["id"] for item in listing.json()["items"]}
    assert listed == {hostile[0].call_id, normal[0].call_id}


def test_an_event_that_cannot_be_shown_is_left_out_of_live(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken, after = _normal_call()

    def event_out(event: CallEventRecord) -> EventOut:
        if event.event_id == broken.event_id:
            raise RuntimeError("a bug in showing one event")
        return call_queries.event_out(event)

    monkeypatch.setattr(live, "event_out", event_out)
    ws_url = platform.url.replace("http://", "ws://") + "/live"
    with connect(ws_url, additional_headers=platform.supervisor.bearer(), open_timeout=5) as ws:
        platform.ingest([broken, after])
        messages = _live_until(ws, after.event_id)
    assert [m["event"]["event_id"] for m in messages] == [after.event_id]


# --- a real INVITE through a media worker ------------------------------------------------------

PCMU_SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
# As bytes on the wire: BEL, ESC, a right-to-left override, and bytes that are not UTF-8.
WIRE_NAME = b"\x07Mal\x1b[31mlory \xe2\x80\xaefdp.exe \xff\xfe"


def _header(response: bytes, name: str) -> str:
    for line in response.decode("utf-8", "replace").split("\r\n"):
        field, _, value = line.partition(":")
        if field.strip().lower() == name.lower():
            return value.strip()
    raise AssertionError(f"no {name} header in {response[:300]!r}")


def _hostile_sip_call(port: int, call_id: str) -> int:
    """An INVITE from and to 40 digits with a hostile display name; ACK and BYE if answered.
    Returns the final status."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5.0)
        local = sock.getsockname()[1]

        def send(first_line: str, cseq: str, to: str, body: str = "") -> None:
            head = (
                f"{first_line}\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport"
                "\r\nMax-Forwards: 70\r\n"
            ).encode()
            rest = (
                f" <sip:+{FORTY}@evil.example>;tag=hostile\r\n"
                f"To: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\n"
                f"Contact: <sip:{FORTY}@127.0.0.1:{local}>\r\n"
                + ("Content-Type: application/sdp\r\n" if body else "")
                + f"Content-Length: {len(body)}\r\n\r\n{body}"
            ).encode()
            sock.sendto(head + b'From: "' + WIRE_NAME + b'"' + rest, ("127.0.0.1", port))

        send(
            f"INVITE sip:{FORTY}@127.0.0.1:{port} SIP/2.0", "1 INVITE", f"<sip:{FORTY}@x>", PCMU_SDP
        )
        while True:
            response, _ = sock.recvfrom(65535)
            status = status_code(response)
            if status >= 200:
                break
        if status == 200:
            to, contact = _header(response, "To"), _header(response, "Contact")
            target = contact[contact.index("<") + 1 : contact.index(">")]
            send(f"ACK {target} SIP/2.0", "1 ACK", to)
            send(f"BYE {target} SIP/2.0", "2 BYE", to)
        return status


@pytest.mark.sip
def test_a_hostile_sip_invite_reaches_the_api_masked(
    platform: Platform, worker: Running, worker_config: PlatformConfig
) -> None:
    sip_call_id = f"hostile-{uuid.uuid4().hex}"
    assert _hostile_sip_call(worker_config.worker_base_port, sip_call_id) == 200
    deadline = time.monotonic() + 20
    events: list[CallEvent] = []
    while time.monotonic() < deadline and not any(e.kind is CallEventKind.ENDED for e in events):
        time.sleep(0.2)
        started = [
            e
            for e in worker_config.events()
            if e.kind is CallEventKind.STARTED and e.data.get("sip_call_id") == sip_call_id
        ]
        if started:
            events = [e for e in worker_config.events() if e.call_id == started[0].call_id]
    assert events and events[-1].kind is CallEventKind.ENDED, worker.log()[-3000:]
    sent_from = str(events[0].data["from"])
    assert FORTY in sent_from and "\udcff" in sent_from  # as hostile as it came off the wire

    platform.ingest(events)  # the worker's own spool lines, through the ingester
    with httpx.Client(base_url=platform.url, timeout=30) as client:
        response = client.get(f"/calls/{events[0].call_id}", headers=platform.admin.bearer())
    assert response.status_code == 200, response.text
    detail = response.json()
    _assert_safe(detail)
    assert detail["caller"] is None and detail["to_number"] == "*" * 20 + "…[+20 chars]"
    shown_from = detail["events"][0]["data"]["from"]
    assert "Mal[31mlory fdp.exe \ufffd\ufffd" in shown_from and "<sip:+****" in shown_from
