"""Scripted calls for the ingest tests: the events a media worker writes for one call."""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from admin.models import CallEventRecord
from telephony.events import CallEvent, CallEventKind

NUMBER_KEY = b"number-key-for-tests-only-0123456789"
CALLER = "+15551234567"


def _agent(name: str, **data: Any) -> tuple[CallEventKind, dict[str, Any]]:
    return CallEventKind.AGENT, {"event": name, **data}


# (ms from the call's start, kind, data): a greeting, a question, an answer cut short by the
# caller, a request for a person, a hangup.
SCRIPT: list[tuple[int, CallEventKind, dict[str, Any]]] = [
    (0, CallEventKind.STARTED, {"from": f"<sip:{CALLER}@10.0.0.9>", "to": "100", "line": "main"}),
    (40, CallEventKind.ANSWERED, {"codec": "G722"}),
    (100, *_agent("agent_utterance_started", utterance_id="u1")),
    (300, *_agent("agent_utterance_done", utterance_id="u1", audio_ms=1500)),
    (310, *_agent("agent_transcript", utterance_id="u1", text="Hello, how can I help?")),
    (2000, *_agent("caller_speech_started")),
    (3000, *_agent("caller_speech_stopped")),
    (3600, *_agent("caller_transcript", text="where is my order")),
    (
        3700,
        *_agent(
            "end_of_turn",
            endpointing_ms=500,
            asr_ms=120.4,
            responder_ms=30.2,
            first_audio_ms=80.1,
            item_id="u2",
        ),
    ),
    (3710, *_agent("agent_utterance_started", utterance_id="u2")),
    (4500, *_agent("caller_speech_started")),
    (
        4510,
        CallEventKind.PLAYOUT_FLUSHED,
        {"reason": "barge_in", "utterance_id": "u2", "played_ms": 800},
    ),
    (5000, *_agent("caller_speech_stopped")),
    (
        5200,
        *_agent(
            "agent_transcript",
            utterance_id="u2",
            text="Your order shipped yesterday and arrives Monday.",
            heard_text="Your order shipped",
        ),
    ),
    (5600, *_agent("caller_transcript", text="I want a person")),
    (5700, *_agent("handoff_requested", reason="caller_asked", item_id="u3")),
    (8000, CallEventKind.ENDED, {"reason": "hangup", "duration_s": 8.0, "talk_s": 7.9}),
]


def scripted_call(call_id: str | None = None) -> list[CallEvent]:
    call_id = call_id or uuid.uuid4().hex
    mono, wall = time.monotonic_ns(), time.time()
    return [
        CallEvent(call_id, kind, data, mono + ms * 1_000_000, wall + ms / 1000)
        for ms, kind, data in SCRIPT
    ]


def stored_count(session: Session, call_ids: list[str]) -> int:
    query = select(func.count()).where(CallEventRecord.call_id.in_(call_ids))
    return session.scalar(query) or 0
