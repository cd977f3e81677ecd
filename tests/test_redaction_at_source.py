"""Redaction before anything is stored: the policy on agent events, keys never written down,
and stored events and transcript segments redacted alike on both database backends."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.call_events import insert_new_events
from admin.models import Call, CallEventRecord, Line, Redaction, TranscriptSegment
from admin.projection import Projection
from admin.settings import Settings
from admin.worker_loss import HostStampedSpool
from agent.pii import PiiKind
from agent.redaction import RedactionPolicy
from telephony.events import CallEvent, CallEventKind, keys_masked
from tests.ingest_support import AUDIT_KEY, NUMBER_KEY

pytest_plugins = ["tests.db_support"]

CARD = "forty-one eleven, eleven eleven, eleven eleven, eleven eleven"
CARD_TRACES = ("4111", "forty-one", "eleven")


def test_the_policy_redacts_what_each_agent_event_says() -> None:
    policy = RedactionPolicy()
    caller = policy.agent_event({"event": "caller_transcript", "text": f"card {CARD}"})
    assert caller == {"event": "caller_transcript", "text": "card [card]"}
    agent = policy.agent_event(
        {"event": "agent_transcript", "text": "Call 415 555 0123", "heard_text": "Call 415"}
    )
    assert agent["text"] == "Call [phone]" and agent["heard_text"] == "Call 415"
    facts = policy.agent_event(
        {"event": "reply", "facts": {"security_code": "123", "order": "12345", "n": 3}}
    )
    assert facts["facts"] == {"security_code": "[security_code]", "order": "12345", "n": 3}
    barge = policy.agent_event({"event": "barge_in", "text": "my SSN is 123-45-6789"})
    assert barge["text"] == "my SSN is [ssn]"
    # Events that hold no words are left as they are; a line that redacts nothing too.
    timing = {"event": "end_of_turn", "endpointing_ms": 4155550123}
    assert policy.agent_event(timing) == timing
    off = RedactionPolicy(frozenset())
    assert off.agent_event({"event": "caller_transcript", "text": CARD})["text"] == CARD
    assert off.version == "off"
    assert RedactionPolicy.of([PiiKind.CARD], "gb").version == "pii-3:card;GB"


def test_keys_the_caller_pressed_are_never_written_down(tmp_path: Path) -> None:
    pressed = CallEvent("c" * 32, CallEventKind.DTMF, {"digit": "7"})
    assert keys_masked(pressed).data == {"masked": True}
    star = CallEvent("c" * 32, CallEventKind.DTMF, {"digit": "#"})
    assert keys_masked(star).data == {"digit": "#"}
    sent = CallEvent("c" * 32, CallEventKind.DTMF_SENT, {"digits": "4111"})
    assert keys_masked(sent).data == {"masked": True, "count": 4}
    # The worker's spool: a card number keyed in leaves no digit in the file.
    spool = HostStampedSpool(tmp_path / "worker-0.jsonl", host="h", segment_bytes=2**20)
    for digit in "4111111111111111":
        spool.emit(CallEvent("c" * 32, CallEventKind.DTMF, {"digit": digit}))
    spool.close()
    written = "".join(path.read_text() for path in tmp_path.glob("*.jsonl"))
    assert written.count('"masked":true') == 16
    assert '"digit"' not in written


def _pressed(digit: str) -> dict[str, object]:
    return {"digit": digit}


def _events(call_id: str) -> list[CallEvent]:
    mono, wall = time.monotonic_ns(), time.time()
    script: list[tuple[CallEventKind, dict[str, object]]] = [
        (CallEventKind.STARTED, {"from": "<sip:+15551234567@pbx>", "to": "100", "line": "main"}),
        (CallEventKind.ANSWERED, {"codec": "PCMU"}),
        (CallEventKind.AGENT, {"event": "caller_transcript", "text": f"my card is {CARD}"}),
        (
            CallEventKind.AGENT,
            {"event": "agent_transcript", "utterance_id": "u1", "text": "And the CVV?"},
        ),
        (CallEventKind.AGENT, {"event": "caller_transcript", "text": "seven three nine"}),
        (
            CallEventKind.AGENT,
            {"event": "reply", "item_id": "u2", "facts": {"callback": "415 555 0123"}},
        ),
        *[(CallEventKind.DTMF, _pressed(digit)) for digit in "4111111111111111"],
        (CallEventKind.ENDED, {"reason": "hangup", "duration_s": 9.0}),
    ]
    return [
        CallEvent(call_id, kind, data, mono + i * 10**8, wall + i / 10)
        for i, (kind, data) in enumerate(script)
    ]


def test_stored_events_and_segments_are_redacted_alike(session: Session) -> None:
    session.add(Line(name="main", agent_profile="embedded"))
    session.flush()
    settings = Settings()
    projection = Projection(
        number_key=NUMBER_KEY, audit_key=AUDIT_KEY, redaction=settings.redaction_policy
    )
    call_id = uuid.uuid4().hex
    events = _events(call_id)
    # The worker's spool predates redaction at the source: the ingester redacts on its own.
    new = insert_new_events(session, projection.scrub(session, events[:3]))
    projection.apply(session, new)
    new = insert_new_events(session, projection.scrub(session, events[3:]))
    projection.apply(session, new)

    call = session.get_one(Call, call_id)
    assert call.redaction_policy == settings.redaction_policy("main").version
    stored = session.scalars(
        select(CallEventRecord).where(CallEventRecord.call_id == call_id)
    ).all()
    dump = json.dumps([record.data for record in stored])
    segments = session.scalars(
        select(TranscriptSegment).where(TranscriptSegment.call_id == call_id)
    ).all()
    texts = [segment.text for segment in sorted(segments, key=lambda s: s.start_ms)]
    for trace in (*CARD_TRACES, "seven three nine", "555 0123", '"digit"'):
        assert trace not in dump, trace
        assert all(trace not in text for text in texts), trace
    assert texts == ["my card is [card]", "And the CVV?", "[security_code]"]
    assert {segment.redaction for segment in segments} == {Redaction.REDACTED}
    assert '"callback": "[phone]"' in dump
    assert dump.count('"masked": true') == 16
