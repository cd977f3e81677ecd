"""What the API tests share: the keys, one user per role, the seeded calls (whose interrupted
transcript the storage tests use too), and a uvicorn server in a thread. The fixtures that
build them are in tests.api_support."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from admin import accounts, phone_numbers, schema
from admin.api.app import create_app
from admin.api.context import ApiContext
from admin.call_events import store_events
from admin.db import create_engine, session_factory
from admin.erasure import Files
from admin.keyfile import Keys
from admin.models import (
    Call,
    CallMetrics,
    ConsentMethod,
    ConsentResult,
    Disclosure,
    DisclosurePlay,
    DisclosureVersion,
    Escalation,
    EscalationReason,
    EscalationTransition,
    Line,
    Outcome,
    Role,
    Speaker,
    TranscriptSegment,
    TurnMetrics,
)
from escalation.lifecycle import EscalationEvent, EscalationState
from telephony.events import CallEvent, CallEventKind
from telephony.recording import RecordingStore

KEYS = Keys(
    audit_hmac=b"api-tests-audit-key-0123456789abcdef",
    number_hash=b"api-tests-number-key-0123456789abcdef",
    jwt_signing=b"api-tests-jwt-key-0123456789abcdef",
    recording=b"api-tests-recording-key-0123456789abcdef",
)
PASSWORD = "correct horse battery"
CALLER = "+1 (555) 123-4567"
CALLER_DIGITS = "5551234567"
T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Actor:
    username: str
    role: Role | None
    user_id: int
    token: str
    api_key: str

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class Fixture:
    """The calls every API test can rely on (tests add their own beside them)."""

    line_id: int
    contained: str  # ended, contained, with transcript, play, events and metrics
    escalated: str  # ended, escalated after a caller request
    live: str  # started, not ended
    abandoned: str
    version_id: int  # a disclosure version that has been played


@dataclass(frozen=True)
class Api:
    url: str
    engine: Engine
    sessions: sessionmaker[Session]
    app: FastAPI
    actors: dict[str, Actor]
    fixture: Fixture

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


class serve:  # noqa: N801 (used as a context manager, like open)
    """Runs `app` under uvicorn in a thread, on a free loopback port."""

    def __init__(self, app: FastAPI) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        port = self.socket.getsockname()[1]
        config = uvicorn.Config(app, log_config=None, access_log=False, ws="websockets-sansio")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self.url

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()


def make_actor(session: Session, username: str, role: Role) -> Actor:
    from admin.api import auth

    user = accounts.create_user(
        session,
        username=username,
        role=role,
        password=PASSWORD,
        actor="test",
        audit_key=KEYS.audit_hmac,
    )
    _, key = accounts.issue_key(
        session, user=user, name="tests", actor="test", audit_key=KEYS.audit_hmac
    )
    token = auth.issue_token(user, keys=KEYS, minutes=60).token
    return Actor(username, role, user.id, token, key)


def new_call_id() -> str:
    return uuid.uuid4().hex


def interrupted_transcript() -> list[TranscriptSegment]:
    """A question, then an answer the caller cut short after "We open at nine" (new rows each
    time: a segment belongs to one call)."""
    return [
        TranscriptSegment(
            speaker=Speaker.CALLER, text="what are your hours", start_ms=0, end_ms=900
        ),
        TranscriptSegment(
            speaker=Speaker.AGENT,
            text="We open at nine and close at six on weekdays.",
            start_ms=1300,
            end_ms=4100,
            interrupted=True,
            heard_text="We open at nine",
            heard_ms=800,
        ),
    ]


CALLBACK_DIGITS = "5557654321"
ESCALATION_REFS = ("e1" * 16, "e2" * 16)  # (connected, callback), both on the escalated call


def seed_escalations(session: Session, call_id: str) -> None:
    """A callback taken in 'billing', then a supervisor who took the call in 'general'."""
    at = T0 + dt.timedelta(minutes=1, seconds=10)
    callback = Escalation(
        ref=ESCALATION_REFS[1],
        call_id=call_id,
        reason=EscalationReason.DTMF_ZERO,
        state=EscalationState.CALLBACK,
        queue="billing",
        callback_number_hash=phone_numbers.number_hash(CALLBACK_DIGITS, key=KEYS.number_hash),
        callback_number_masked=phone_numbers.mask(CALLBACK_DIGITS),
        requested_at=at,
        ended_at=at + dt.timedelta(seconds=5),
    )
    connected = Escalation(
        ref=ESCALATION_REFS[0],
        call_id=call_id,
        reason=EscalationReason.CALLER_REQUEST,
        state=EscalationState.CONNECTED,
        queue="general",
        supervisor="alice",
        requested_at=T0 + dt.timedelta(minutes=1, seconds=20),
        offered_at=T0 + dt.timedelta(minutes=1, seconds=30),
        connected_at=T0 + dt.timedelta(minutes=1, seconds=50),
    )
    session.add_all([callback, connected])
    session.flush()
    steps = [
        (EscalationEvent.REQUEST, None, EscalationState.REQUESTED, "caller", 20),
        (EscalationEvent.ENQUEUE, EscalationState.REQUESTED, EscalationState.QUEUED, "system", 21),
        (EscalationEvent.OFFER, EscalationState.QUEUED, EscalationState.OFFERED, "system", 30),
        (
            EscalationEvent.ACCEPT,
            EscalationState.OFFERED,
            EscalationState.ACCEPTED,
            "supervisor:alice",
            45,
        ),
        (
            EscalationEvent.CONNECT,
            EscalationState.ACCEPTED,
            EscalationState.CONNECTED,
            "system",
            50,
        ),
    ]
    for seq, (event, before, after, actor, second) in enumerate(steps, start=1):
        session.add(
            EscalationTransition(
                escalation_id=connected.id,
                seq=seq,
                event=event,
                from_state=before,
                to_state=after,
                actor=actor,
                at=T0 + dt.timedelta(minutes=1, seconds=second),
            )
        )
    session.add(
        EscalationTransition(
            escalation_id=callback.id,
            seq=1,
            event=EscalationEvent.TAKE_CALLBACK,
            from_state=EscalationState.QUEUED,
            to_state=EscalationState.CALLBACK,
            actor="caller",
            at=at + dt.timedelta(seconds=5),
        )
    )


def seed_calls(session: Session) -> Fixture:
    """Four calls on one line, 09:00-09:03 on 2026-03-01, with what the detail route shows."""
    disclosure = Disclosure(name="ai-and-recording-us")
    version = DisclosureVersion(
        disclosure=disclosure,
        version=1,
        text="This call is answered by an AI assistant and recorded.",
        audio_sha256="a" * 64,
        jurisdiction="US",
    )
    line = Line(name="main", agent_profile="embedded", disclosure=disclosure, queue="general")
    session.add_all([disclosure, version, line])
    session.flush()
    caller_hash = phone_numbers.number_hash(CALLER, key=KEYS.number_hash)
    masked = phone_numbers.mask(CALLER)

    def call(minute: int, **fields: object) -> Call:
        values: dict[str, object] = {
            "id": new_call_id(),
            "line_id": line.id,
            "to_number": "100",
            "started_at": T0 + dt.timedelta(minutes=minute),
        }
        created = Call(**(values | fields))
        session.add(created)
        return created

    contained = call(
        0,
        caller_hash=caller_hash,
        caller_masked=masked,
        answered_at=T0 + dt.timedelta(seconds=2),
        ended_at=T0 + dt.timedelta(seconds=62),
        end_reason="caller_hangup",
        outcome=Outcome.CONTAINED,
    )
    escalated = call(
        1,
        answered_at=T0 + dt.timedelta(minutes=1, seconds=4),
        ended_at=T0 + dt.timedelta(minutes=2, seconds=4),
        outcome=Outcome.ESCALATED,
    )
    live = call(2, caller_hash=caller_hash, caller_masked=masked)
    abandoned = call(3, ended_at=T0 + dt.timedelta(minutes=3, seconds=5), outcome=Outcome.ABANDONED)
    session.flush()
    contained.segments = interrupted_transcript()
    session.add_all(
        [
            DisclosurePlay(
                call_id=contained.id,
                version_id=version.id,
                started_at=T0 + dt.timedelta(seconds=2),
                ended_at=T0 + dt.timedelta(seconds=6),
                consent=ConsentResult.GRANTED,
                consent_method=ConsentMethod.IMPLIED,
            ),
            CallMetrics(call_id=contained.id, duration_ms=62_000, turns=2, barge_ins=1),
            CallMetrics(call_id=escalated.id, duration_ms=64_000, turns=1, barge_ins=0),
            *[
                TurnMetrics(
                    call_id=contained.id,
                    turn_index=i,
                    voice_to_voice_ms=ms,
                    endpointing_ms=ms // 2,
                    first_audio_ms=ms // 4,
                    model="parley-embedded",
                )
                for i, ms in enumerate([300, 500])
            ],
            TurnMetrics(
                call_id=escalated.id, turn_index=0, voice_to_voice_ms=700, model="gpt-realtime"
            ),
        ]
    )
    seed_escalations(session, escalated.id)
    store_events(
        session,
        [
            CallEvent(
                contained.id,
                CallEventKind.STARTED,
                {"from": '"+1 555 123 4567" <sip:+15551234567@pbx.example>', "to": "100"},
                t_wall=T0.timestamp(),
            ),
            CallEvent(contained.id, CallEventKind.DTMF, {"digit": "1"}, t_wall=T0.timestamp() + 9),
            CallEvent(
                contained.id,
                CallEventKind.ENDED,
                {"reason": "caller_hangup"},
                t_wall=T0.timestamp() + 62,
            ),
        ],
    )
    session.flush()
    return Fixture(line.id, contained.id, escalated.id, live.id, abandoned.id, version.id)


@contextmanager
def running_api(server: Engine, *, recordings: RecordingStore | None = None) -> Iterator[Api]:
    """A fresh database at head, seeded, behind a uvicorn server; dropped afterwards."""
    name = f"parley_api_test_{os.getpid()}_{secrets.token_hex(4)}"
    with server.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.url.set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url, hide_parameters=True)
    try:
        schema.upgrade(url)
        sessions = session_factory(engine)
        with sessions() as session:
            actors = {role.value: make_actor(session, role.value, role) for role in Role}
            fixture = seed_calls(session)
            session.commit()
        scratch = Path(tempfile.mkdtemp(prefix="parley-api-files-"))
        files = Files(scratch / "recordings", scratch / "rejected.jsonl", scratch / "exports")
        context = ApiContext(
            sessions=sessions,
            keys=KEYS,
            live_poll_s=0.05,
            recordings=recordings,
            data_files=files,
        )
        app = create_app(context)
        with serve(app) as base_url:
            yield Api(base_url, engine, sessions, app, actors, fixture)
    finally:
        engine.dispose()
        with server.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
