"""A disclosure version that callers have heard is evidence: it cannot be changed."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from admin.models import (
    Call,
    ConsentMethod,
    ConsentResult,
    Disclosure,
    DisclosurePlay,
    DisclosureVersion,
    ImmutableRowError,
)

pytest_plugins = ["tests.db_support"]

T0 = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
TEXT = "This call is answered by an automated assistant and recorded."


def _version(session: Session) -> DisclosureVersion:
    version = DisclosureVersion(
        version=1,
        text=TEXT,
        audio_sha256=hashlib.sha256(b"disclosure audio").hexdigest(),
        jurisdiction="US-CA",
    )
    session.add(Disclosure(name="ai-and-recording-us", versions=[version]))
    session.flush()
    return version


def _play(session: Session, version: DisclosureVersion) -> DisclosurePlay:
    call = Call(id="c" * 32, to_number="100", started_at=T0)
    play = DisclosurePlay(
        call_id=call.id,
        version=version,
        started_at=T0,
        ended_at=T0 + dt.timedelta(seconds=4),
        consent=ConsentResult.GRANTED,
        consent_method=ConsentMethod.IMPLIED,
    )
    session.add_all([call, play])
    session.flush()
    return play


def test_a_version_not_yet_played_can_be_corrected(session: Session) -> None:
    version = _version(session)
    version.text = TEXT.replace("recorded", "recorded for quality")
    session.flush()
    session.expire_all()
    assert "quality" in session.get_one(DisclosureVersion, version.id).text


def test_the_orm_refuses_to_edit_or_delete_a_played_version(session: Session) -> None:
    version = _version(session)
    _play(session, version)
    with pytest.raises(ImmutableRowError, match="add a new version"), session.begin_nested():
        version.text = "Something else."
        session.flush()
    with pytest.raises(ImmutableRowError, match="played to callers"), session.begin_nested():
        session.delete(version)
        session.flush()
    session.expire_all()
    assert session.get_one(DisclosureVersion, version.id).text == TEXT


def test_the_database_refuses_a_raw_update_of_a_played_version(session: Session) -> None:
    version = _version(session)
    session.execute(text("UPDATE disclosure_versions SET jurisdiction = 'EU'"))  # not played yet
    _play(session, version)
    with pytest.raises(IntegrityError, match="add a new version"), session.begin_nested():
        session.execute(text("UPDATE disclosure_versions SET text = 'Something else.'"))
    with pytest.raises(IntegrityError), session.begin_nested():  # the play still refers to it
        session.execute(text("DELETE FROM disclosure_versions"))
    session.expire_all()
    assert session.get_one(DisclosureVersion, version.id).text == TEXT


def test_a_play_records_what_was_played_and_the_consent(session: Session) -> None:
    version = _version(session)
    play_id = _play(session, version).id
    session.expire_all()
    play = session.get_one(DisclosurePlay, play_id)
    assert play.version.audio_sha256 == hashlib.sha256(b"disclosure audio").hexdigest()
    assert play.started_at == T0 and play.started_at.tzinfo is dt.UTC
    assert (play.consent, play.consent_method, play.interrupted) == (
        ConsentResult.GRANTED,
        ConsentMethod.IMPLIED,
        False,
    )


def test_consent_given_or_refused_needs_a_method(session: Session) -> None:
    version = _version(session)
    play = _play(session, version)
    play.consent_method = None
    with pytest.raises(IntegrityError, match="ck_disclosure_plays_consent_has_method"):
        session.flush()
