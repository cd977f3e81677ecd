"""Keeping the database in step with the settings file: disclosures and lines.

The settings file is the source of truth for lines: at `parley run` start (and `parley sync`)
every configured line is written to `lines`/`line_numbers` (upsert by name), and a line in the
database that the settings no longer name is deactivated, never deleted (its calls refer to
it). Changes made to lines through the API last until the next start.

Disclosures declared in the settings get a new version when their text or jurisdiction
changes; a version is never edited once played. Each version's audio is rendered once, with
the engine's Piper voice, into `<data_dir>/disclosures/<sha256>.wav`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from admin import audit
from admin.disclosure_audio import (
    Render,
    audio_dir,
    audio_path,
    prompt_path,
    store,
    write_atomically,
)
from admin.disclosure_settings import DisclosureSettings
from admin.models import Disclosure, DisclosurePlay, DisclosureVersion, Line, LineNumber
from telephony.consent import DisclosurePlan, Notice
from telephony.lines import Line as ConfiguredLine

if TYPE_CHECKING:
    from admin.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    versions_added: list[str] = field(default_factory=list)  # 'name v2'
    audio_rendered: list[str] = field(default_factory=list)  # file names
    lines_added: list[str] = field(default_factory=list)
    lines_updated: list[str] = field(default_factory=list)
    lines_deactivated: list[str] = field(default_factory=list)


# --- disclosures ---------------------------------------------------------------------------------


def latest_version(session: Session, name: str) -> DisclosureVersion | None:
    return session.scalar(
        select(DisclosureVersion)
        .join(Disclosure, Disclosure.id == DisclosureVersion.disclosure_id)
        .where(Disclosure.name == name)
        .order_by(DisclosureVersion.version.desc())
        .limit(1)
    )


def sync_disclosures(
    session: Session,
    declared: Sequence[DisclosureSettings],
    *,
    folder: Path,
    render: Render,
    report: SyncReport,
) -> None:
    for wanted in declared:
        disclosure = session.scalar(select(Disclosure).where(Disclosure.name == wanted.name))
        if disclosure is None:
            disclosure = Disclosure(name=wanted.name)
            session.add(disclosure)
            session.flush()
        current = latest_version(session, wanted.name)
        if current is None or (current.text, current.jurisdiction) != (
            wanted.text,
            wanted.jurisdiction,
        ):
            _add_version(
                session,
                disclosure=disclosure,
                wanted=wanted,
                current=current,
                wav=render(wanted.text),
                folder=folder,
                report=report,
            )
        elif not audio_path(folder, current.audio_sha256).is_file():
            _restore_audio(
                session,
                disclosure=disclosure,
                wanted=wanted,
                current=current,
                folder=folder,
                render=render,
                report=report,
            )


def _add_version(
    session: Session,
    *,
    disclosure: Disclosure,
    wanted: DisclosureSettings,
    current: DisclosureVersion | None,
    wav: bytes,
    folder: Path,
    report: SyncReport,
) -> DisclosureVersion:
    sha256 = _keep_audio(folder, wav, report)
    version = DisclosureVersion(
        disclosure_id=disclosure.id,
        version=current.version + 1 if current is not None else 1,
        text=wanted.text,
        audio_sha256=sha256,
        jurisdiction=wanted.jurisdiction,
    )
    session.add(version)
    session.flush()
    report.versions_added.append(f"{wanted.name} v{version.version}")
    log.info(
        "disclosure version added",
        extra={"disclosure": wanted.name, "version": version.version, "sha256": sha256},
    )
    return version


def _restore_audio(
    session: Session,
    *,
    disclosure: Disclosure,
    wanted: DisclosureSettings,
    current: DisclosureVersion,
    folder: Path,
    render: Render,
    report: SyncReport,
) -> None:
    """The version's audio file is gone: render it again. Piper gives the same bytes for the
    same text and voice; if it does not (another voice), an unplayed version takes the new
    audio, a played one stays as it is and a new version gets it."""
    wav = render(wanted.text)
    sha256 = hashlib.sha256(wav).hexdigest()
    if sha256 == current.audio_sha256:
        _keep_audio(folder, wav, report)
        return
    played = session.scalar(select(exists().where(DisclosurePlay.version_id == current.id)))
    if played:
        _add_version(
            session,
            disclosure=disclosure,
            wanted=wanted,
            current=current,
            wav=wav,
            folder=folder,
            report=report,
        )
        return
    current.audio_sha256 = _keep_audio(folder, wav, report)
    session.flush()


def _keep_audio(folder: Path, wav: bytes, report: SyncReport) -> str:
    """Stores rendered audio under its SHA-256 and reports it; returns the hash."""
    sha256 = store(folder, wav)
    report.audio_rendered.append(f"{sha256}.wav")
    return sha256


def render_prompts(
    texts: Sequence[str], *, folder: Path, render: Render, report: SyncReport
) -> None:
    """The consent prompts (goodbyes) that are not rendered yet."""
    for text in dict.fromkeys(texts):
        path = prompt_path(folder, text)
        if not path.is_file():
            write_atomically(path, render(text))
            report.audio_rendered.append(f"prompts/{path.name}")


# --- lines ---------------------------------------------------------------------------------------


def sync_lines(session: Session, configured: Sequence[ConfiguredLine], report: SyncReport) -> None:
    """Upserts the configured lines by name; deactivates the lines they no longer name."""
    wanted = {line.name: line for line in configured}
    existing = {line.name: line for line in session.scalars(select(Line))}
    # Numbers leave their old line first: one may move to another line in the same sync.
    for line in existing.values():
        keep = set(wanted[line.name].numbers) if line.name in wanted else set()
        for number in [n for n in line.numbers if n.number not in keep]:
            line.numbers.remove(number)
    session.flush()
    for name, config in wanted.items():
        disclosure_id = None
        if config.disclosure is not None:
            disclosure_id = session.scalar(
                select(Disclosure.id).where(Disclosure.name == config.disclosure)
            )
            if disclosure_id is None:
                log.warning(
                    "a line names a disclosure that does not exist; declare it under disclosures",
                    extra={"line": name, "disclosure": config.disclosure},
                )
        row = existing.get(name)
        if row is None:
            row = Line(name=name, agent_profile=config.agent)
            session.add(row)
            report.lines_added.append(name)
        values = (config.agent, disclosure_id, config.queue, True)
        if (row.agent_profile, row.disclosure_id, row.queue, row.active) != values:
            if name in existing:
                report.lines_updated.append(name)
            row.agent_profile, row.disclosure_id, row.queue, row.active = values
        have = {n.number for n in row.numbers}
        for wanted_number in config.numbers:
            if wanted_number not in have:
                row.numbers.append(LineNumber(number=wanted_number))
                have.add(wanted_number)
    for name, line in existing.items():
        if name not in wanted and line.active:
            line.active = False
            report.lines_deactivated.append(name)
    session.flush()


# --- the whole sync, and what media workers play -------------------------------------------------


def sync_configured(settings: Settings, session: Session, *, render: Render) -> SyncReport:
    """Disclosures (with their audio), consent prompts, then lines, in the caller's
    transaction."""
    report = SyncReport()
    folder = audio_dir(settings.data_dir)
    sync_disclosures(session, settings.disclosures, folder=folder, render=render, report=report)
    goodbyes = [line.consent.goodbye for line in settings.lines if line.disclosure]
    render_prompts(goodbyes, folder=folder, render=render, report=report)
    sync_lines(session, settings.lines_config(), report)
    changes = {
        "versions_added": report.versions_added,
        "lines_added": report.lines_added,
        "lines_updated": report.lines_updated,
        "lines_deactivated": report.lines_deactivated,
    }
    if any(changes.values()):  # a configuration change from the settings file is audited
        audit.append(
            session,
            key=settings.keys().audit_hmac,
            actor="settings",
            action="config.synced",
            target="settings",
            details={"file": os.environ.get("PARLEY_CONFIG"), **changes},
        )
    return report


def disclosure_plans(settings: Settings, session: Session) -> dict[str, DisclosurePlan]:
    """For a media worker: each line's disclosure (its current version), by line name."""
    folder = audio_dir(settings.data_dir)
    rules = settings.compliance.rule_book()

    def notice(name: str) -> Notice:
        version = latest_version(session, name)
        return Notice(
            name=name,
            version=version.version if version else None,
            sha256=version.audio_sha256 if version else None,
            audio_path=audio_path(folder, version.audio_sha256) if version else None,
            covers=_covers(settings, name),
        )

    plans = {}
    for line in settings.lines:
        if line.disclosure is None:
            continue
        first = notice(line.disclosure)
        plans[line.name] = DisclosurePlan(
            name=first.name,
            version=first.version,
            sha256=first.sha256,
            audio_path=first.audio_path,
            policy=line.consent.policy(),
            on_missing=line.disclosure_missing,
            goodbye_path=prompt_path(folder, line.consent.goodbye),
            covers=first.covers,
            recording_notice=notice(line.recording_notice) if line.recording_notice else None,
            rules=rules,
        )
    return plans


def _covers(settings: Settings, name: str) -> frozenset[str]:
    """What a disclosure discloses, as the settings declare it; one made through the API
    only is taken to disclose the AI, never recording."""
    declared = next((d for d in settings.disclosures if d.name == name), None)
    return frozenset(declared.covers) if declared is not None else frozenset({"ai"})


def unresolved_plans(settings: Settings) -> dict[str, DisclosurePlan]:
    """Plans with no version, for a worker that could not read the database: its calls then
    proceed or are refused per each line's `disclosure_missing`."""
    rules = settings.compliance.rule_book()
    return {
        line.name: DisclosurePlan(
            name=line.disclosure,
            version=None,
            sha256=None,
            audio_path=None,
            policy=line.consent.policy(),
            on_missing=line.disclosure_missing,
            covers=_covers(settings, line.disclosure),
            rules=rules,
        )
        for line in settings.lines
        if line.disclosure is not None
    }
