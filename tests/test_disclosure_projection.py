"""`call.disclosure_played` becomes a disclosure_plays row; bad or unplayable ones lose nothing."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.call_events import insert_new_events
from admin.models import (
    CallEventRecord,
    ConsentMethod,
    ConsentResult,
    Disclosure,
    DisclosurePlay,
    DisclosureVersion,
    Escalation,
)
from admin.projection import Projection
from telephony.events import CallEvent, CallEventKind
from tests.ingest_support import AUDIT_KEY, NUMBER_KEY

pytest_plugins = ["tests.db_support"]

T0_NS = 5_000_000_000_000
T0_WALL = 1_780_000_000.0


def _event(call_id: str, kind: CallEventKind, at_s: float, data: dict[str, Any]) -> CallEvent:
    return CallEvent(call_id, kind, data, T0_NS + int(at_s * 1e9), T0_WALL + at_s)


def _call(call_id: str, disclosure: dict[str, Any], *extra: CallEvent) -> list[CallEvent]:
    return [
        _event(call_id, CallEventKind.STARTED, 0, {"from": "sip:anonymous@x", "to": "100"}),
        _event(call_id, CallEventKind.ANSWERED, 0.1, {"codec": "G722"}),
        _event(call_id, CallEventKind.DISCLOSURE_PLAYED, 4.5, disclosure),
        *extra,
        _event(call_id, CallEventKind.ENDED, 9, {"reason": "hangup"}),
    ]


def _store(session: Session, events: list[CallEvent]) -> None:
    Projection(number_key=NUMBER_KEY, audit_key=AUDIT_KEY).apply(
        session, insert_new_events(session, events)
    )


def _version(session: Session) -> DisclosureVersion:
    version = DisclosureVersion(
        disclosure=Disclosure(name=f"notice-{uuid.uuid4().hex[:6]}"),
        version=1,
        text="This call is recorded.",
        audio_sha256="b" * 64,
        jurisdiction="US",
    )
    session.add(version)
    session.flush()
    return version


def test_a_played_disclosure_becomes_a_play_with_its_times_and_consent(session: Session) -> None:
    version = _version(session)
    call_id = uuid.uuid4().hex
    data = {
        "disclosure": version.disclosure.name,
        "version": 1,
        "sha256": "b" * 64,
        "played": True,
        "start_mono_ns": T0_NS + 200_000_000,
        "end_mono_ns": T0_NS + 3_700_000_000,
        "interrupted": False,
        "consent": "declined",
        "consent_method": "dtmf",
        "next_step": "transfer",
    }
    transfer = _event(call_id, CallEventKind.TRANSFERRED, 5, {"reason": "consent_declined"})
    _store(session, _call(call_id, data, transfer))
    [play] = session.scalars(select(DisclosurePlay).where(DisclosurePlay.call_id == call_id))
    assert play.version_id == version.id
    assert (play.consent, play.consent_method, play.interrupted) == (
        ConsentResult.DECLINED,
        ConsentMethod.DTMF,
        False,
    )
    start = dt.datetime.fromtimestamp(T0_WALL + 0.2, dt.UTC)
    assert abs((play.started_at - start).total_seconds()) < 0.001
    assert play.ended_at is not None
    assert abs((play.ended_at - play.started_at).total_seconds() - 3.5) < 0.001
    # A transfer because consent was declined is not an escalation.
    assert session.scalars(select(Escalation).where(Escalation.call_id == call_id)).all() == []


def test_unplayed_unknown_or_garbled_disclosures_stay_events_only(session: Session) -> None:
    version = _version(session)
    cases: list[dict[str, Any]] = [
        {
            "disclosure": version.disclosure.name,
            "version": None,
            "played": False,
            "reason": "no_version",
        },
        {
            "disclosure": "never-declared",
            "version": 3,
            "played": True,
            "consent": "granted",
            "consent_method": "implied",
        },
    ]
    for data in cases:
        call_id = uuid.uuid4().hex
        _store(session, _call(call_id, data))
        assert (
            session.scalars(select(DisclosurePlay).where(DisclosurePlay.call_id == call_id)).all()
            == []
        )
        kinds = session.scalars(
            select(CallEventRecord.kind).where(CallEventRecord.call_id == call_id)
        ).all()
        assert CallEventKind.DISCLOSURE_PLAYED.value in kinds  # the evidence is kept
    # Nonsense consent values and times still record the play, as no consent, at the event.
    call_id = uuid.uuid4().hex
    garbled = {
        "disclosure": version.disclosure.name,
        "version": 1,
        "played": True,
        "consent": "maybe",
        "consent_method": 7,
        "start_mono_ns": "soon",
    }
    _store(session, _call(call_id, garbled))
    [play] = session.scalars(select(DisclosurePlay).where(DisclosurePlay.call_id == call_id))
    assert (play.consent, play.consent_method) == (ConsentResult.NO_RESPONSE, None)


def test_how_a_disclosure_was_played_is_stored_with_it_in_the_shapes_it_may_take(
    session: Session,
) -> None:
    version = _version(session)
    base = {
        "disclosure": version.disclosure.name,
        "version": 1,
        "sha256": "b" * 64,
        "played": True,
        "start_mono_ns": T0_NS + 200_000_000,
        "end_mono_ns": T0_NS + 1_700_000_000,
        "interrupted": False,
        "consent": "granted",
        "consent_method": "speech",
        "next_step": "bridge",
    }
    told = {
        **base,
        "covers": ["ai", "recording", "<script>"],
        "jurisdiction": {
            "rules_version": "2026-12-01",
            "places": ["US", "US-CA"],
            "rules": ["US", "US-CA"],
            "ai_notice_required": True,
            "recording": "all_party",
        },
        "barged_in": "speech",
        "heard_ms": 1500,
        "answer": "Yes, that's fine.",
    }
    garbled = {
        **base,
        "covers": "ai",
        "jurisdiction": ["US"],
        "barged_in": "a shout",
        "talked_over": "twice",
        "answer": 42,
    }
    found = []
    for data in (told, garbled):
        call_id = uuid.uuid4().hex
        _store(session, _call(call_id, data))
        [play] = session.scalars(select(DisclosurePlay).where(DisclosurePlay.call_id == call_id))
        assert (play.consent, play.consent_method) == (ConsentResult.GRANTED, ConsentMethod.SPEECH)
        found.append(play.circumstances)
    assert found[0] == {
        "rules": told["jurisdiction"],
        "covers": ["ai", "recording"],
        "barged_in": "speech",
        "heard_ms": 1500,
        "answer": "Yes, that's fine.",
    }
    assert found[1] == {"covers": []}  # nothing it should not be
