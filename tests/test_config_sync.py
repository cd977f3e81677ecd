"""The settings file into the database: disclosure versions with rendered audio, and lines."""

from __future__ import annotations

import hashlib
import wave
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from admin.config_sync import (
    SyncReport,
    latest_version,
    sync_configured,
    sync_disclosures,
    sync_lines,
)
from admin.disclosure_audio import PiperRenderer
from admin.disclosure_settings import DisclosureSettings
from admin.models import AuditEntry, Call, ConsentResult, DisclosurePlay, Line, utcnow
from admin.settings import Settings
from telephony.lines import Line as ConfiguredLine

pytest_plugins = ["tests.db_support"]

NOTICE = "This call is answered by an AI assistant and is recorded."


@pytest.fixture(scope="module")
def render() -> Callable[[str], bytes]:
    renderer = PiperRenderer()
    cache: dict[str, bytes] = {}

    def speak(text: str) -> bytes:
        if text not in cache:
            cache[text] = renderer(text)
        return cache[text]

    return speak


def _sync(
    session: Session, folder: Path, render: Callable[[str], bytes], text: str = NOTICE
) -> SyncReport:
    report = SyncReport()
    declared = [DisclosureSettings(name="ai-notice", text=text, jurisdiction="US")]
    sync_disclosures(session, declared, folder=folder, render=render, report=report)
    return report


def test_a_disclosure_is_rendered_once_and_versioned_when_its_text_changes(
    session: Session, tmp_path: Path, render: Callable[[str], bytes]
) -> None:
    report = _sync(session, tmp_path, render)
    first = latest_version(session, "ai-notice")
    assert first is not None and first.version == 1
    assert report.versions_added == ["ai-notice v1"]
    audio = tmp_path / f"{first.audio_sha256}.wav"
    assert hashlib.sha256(audio.read_bytes()).hexdigest() == first.audio_sha256
    with wave.open(str(audio), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        assert wav.getnframes() > 16000  # a sentence takes more than a second to say

    assert _sync(session, tmp_path, render).versions_added == []  # unchanged: nothing to do
    report = _sync(session, tmp_path, render, text=NOTICE + " Press 1 to accept.")
    second = latest_version(session, "ai-notice")
    assert second is not None and second.version == 2
    assert first.text == NOTICE  # the earlier version stays as it was


def test_missing_audio_is_rendered_again_and_a_played_version_is_never_edited(
    session: Session, tmp_path: Path, render: Callable[[str], bytes]
) -> None:
    _sync(session, tmp_path, render)
    version = latest_version(session, "ai-notice")
    assert version is not None
    (tmp_path / f"{version.audio_sha256}.wav").unlink()
    assert _sync(session, tmp_path, render).audio_rendered == [f"{version.audio_sha256}.wav"]
    assert (tmp_path / f"{version.audio_sha256}.wav").is_file()

    # Played, then its audio is lost and renders differently (another voice): a new version.
    call = Call(id="c" * 32, to_number="100", started_at=utcnow())
    session.add(call)
    session.flush()
    session.add(
        DisclosurePlay(
            call_id=call.id,
            version_id=version.id,
            started_at=utcnow(),
            consent=ConsentResult.NO_RESPONSE,
        )
    )
    session.flush()
    (tmp_path / f"{version.audio_sha256}.wav").unlink()
    other_voice = render(NOTICE) + b"\x00\x00"
    _sync(session, tmp_path, lambda _text: other_voice)
    newest = latest_version(session, "ai-notice")
    assert newest is not None and newest.version == version.version + 1
    assert newest.audio_sha256 == hashlib.sha256(other_voice).hexdigest()
    session.refresh(version)
    assert version.audio_sha256 != newest.audio_sha256


def test_lines_are_upserted_by_name_and_removed_ones_deactivated(session: Session) -> None:
    report = SyncReport()
    sync_lines(
        session,
        [
            ConfiguredLine("sales", ("100", "101"), agent="embedded"),
            ConfiguredLine("support", ("200",), agent="echo", queue="tier1"),
        ],
        report,
    )
    assert sorted(report.lines_added) == ["sales", "support"]
    # 101 moves from sales to support; sales goes away; a line named in settings is upserted.
    report = SyncReport()
    sync_lines(
        session,
        [ConfiguredLine("support", ("200", "101"), agent="embedded", disclosure="unknown")],
        report,
    )
    lines = {line.name: line for line in session.scalars(select(Line))}
    assert report.lines_deactivated == ["sales"]
    assert report.lines_updated == ["support"]
    assert lines["sales"].active is False and lines["sales"].numbers == []
    support = lines["support"]
    assert support.active and support.agent_profile == "embedded"
    assert support.disclosure_id is None  # an unknown disclosure is logged, not invented
    assert sorted(n.number for n in support.numbers) == ["101", "200"]
    sync_lines(session, [ConfiguredLine("sales", ("100",), agent="embedded")], SyncReport())
    session.refresh(lines["sales"])
    assert lines["sales"].active is True  # back in the settings: active again


def test_a_sync_that_changes_the_configuration_is_audited(
    session: Session, tmp_path: Path, render: Callable[[str], bytes]
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        security={"audit_hmac_key": "a" * 32, "number_hash_key": "n" * 32},
        lines=[{"name": "audited", "numbers": ["300"], "agent": "echo"}],
        default_line=None,
        disclosures=[],
    )
    before = session.scalar(select(func.count()).select_from(AuditEntry)) or 0
    first = sync_configured(settings, session, render=render)
    assert first.lines_added == ["audited"]
    entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))[before:]
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("settings", "config.synced", "settings")
    ]
    assert entries[0].details["lines_added"] == ["audited"]
    sync_configured(settings, session, render=render)  # nothing changed: nothing audited
    assert (session.scalar(select(func.count()).select_from(AuditEntry)) or 0) == before + 1
