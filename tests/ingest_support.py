"""For the ingest tests: scripted calls (the events a media worker writes for one call), an
ingester on a test's database, and checks of what it stored."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, func, select
from sqlalchemy.orm import Session

from admin import schema
from admin.db import create_engine, session_factory
from admin.ingest import REJECTED_FILE, Carrier, Ingester
from admin.models import Call, CallEventRecord, CallLeg, Outcome, TranscriptSegment
from admin.projection import Projection
from admin.spool import Quarantine
from telephony.events import CallEvent, CallEventKind
from tests.private_servers import PrivatePostgres

NUMBER_KEY = b"number-key-for-tests-only-0123456789"
AUDIT_KEY = b"audit-key-for-tests-only-0123456789"
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
            model="parley-embedded",
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


SEGMENTS_PER_CALL = 4  # transcript segments of the scripted call


# Fixtures for the modules that name them (`postgres = ingest_support.postgres`).


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL with the schema, which a module's tests may stop and start."""
    with PrivatePostgres() as server:
        schema.upgrade(server.url)
        yield server


@pytest.fixture
def pg_engine(postgres: PrivatePostgres) -> Iterator[Engine]:
    engine = create_engine(postgres.url)
    yield engine
    engine.dispose()


def new_ingester(carrier: Carrier, engine: Engine, tmp: Path, **kw: Any) -> Ingester:
    return Ingester(
        carrier,
        session_factory(engine),
        projection=Projection(number_key=NUMBER_KEY, audit_key=AUDIT_KEY),
        quarantine=Quarantine(tmp / REJECTED_FILE),
        max_backoff_s=0.3,
        **kw,
    )


class Background:
    """Runs an ingester in a thread until the test ends."""

    def __init__(self, ingester: Ingester) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=ingester.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def wait_for(check: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def count(engine: Engine, call_ids: list[str]) -> int:
    """Events of these calls in the database; -1 while it is down."""
    try:
        with Session(engine) as session:
            return stored_count(session, call_ids)
    except Exception:
        return -1


def assert_projected_once(engine: Engine, call_ids: list[str]) -> None:
    """Each scripted call became its records once: escalated, 4 segments, 2 legs."""
    with Session(engine) as session:
        for call_id in call_ids:
            call = session.get_one(Call, call_id)
            assert call.outcome is Outcome.ESCALATED
            segments = session.scalar(
                select(func.count()).where(TranscriptSegment.call_id == call_id)
            )
            assert segments == SEGMENTS_PER_CALL
            legs = session.scalar(select(func.count()).where(CallLeg.call_id == call_id))
            assert legs == 2


def quarantined(tmp: Path) -> list[dict[str, Any]]:
    path = tmp / REJECTED_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def stored_dump(carrier: Carrier, tmp: Path) -> str:
    """What an ingester stores from `carrier` into a database of its own: every row of every
    table, as one text (to search for what must not be there)."""
    url = f"sqlite:///{tmp / 'stored.db'}"
    schema.upgrade(url)
    engine = create_engine(url)
    try:
        stored = new_ingester(carrier, engine, tmp).drain()
        assert stored > 0, "the ingester stored nothing"
        metadata = MetaData()
        metadata.reflect(engine)
        with engine.connect() as connection:
            rows = [
                f"{table.name}: {json.dumps(list(row), default=str)}"
                for table in metadata.sorted_tables
                for row in connection.execute(table.select())
            ]
    finally:
        engine.dispose()
    return "\n".join(rows)
