"""Disclosures and their versions. A version that has been played is evidence: it cannot be
changed (409); correct it by adding a version."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from admin.api import audit_trail
from admin.api.deps import Context, DbSession, DisclosuresManager, DisclosuresReader
from admin.api.errors import ERROR_RESPONSES, conflict, not_found
from admin.api.schemas import (
    DisclosureIn,
    DisclosureOut,
    VersionIn,
    VersionOut,
    VersionPatch,
)
from admin.models import Disclosure, DisclosurePlay, DisclosureVersion

router = APIRouter(prefix="/disclosures", tags=["disclosures"], responses=ERROR_RESPONSES)

DisclosureId = Annotated[int, Path(ge=1, le=2**31 - 1)]
VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("", response_model=list[DisclosureOut])
def list_disclosures(_principal: DisclosuresReader, session: DbSession) -> list[DisclosureOut]:
    disclosures = session.scalars(select(Disclosure).order_by(Disclosure.name)).all()
    return [_out(session, disclosure) for disclosure in disclosures]


@router.get("/{disclosure_id}", response_model=DisclosureOut)
def get_disclosure(
    _principal: DisclosuresReader, session: DbSession, disclosure_id: DisclosureId
) -> DisclosureOut:
    return _out(session, _find(session, disclosure_id))


@router.post("", response_model=DisclosureOut, status_code=201)
def create_disclosure(
    principal: DisclosuresManager, context: Context, session: DbSession, body: DisclosureIn
) -> DisclosureOut:
    """A new named disclosure with its first version."""
    if session.scalar(select(Disclosure.id).where(Disclosure.name == body.name)) is not None:
        raise conflict(f"a disclosure named {body.name!r} exists; add a version to it instead")
    disclosure = Disclosure(name=body.name)
    session.add(disclosure)
    session.flush()
    version = _add_version(session, disclosure, body)
    audit_trail.record(
        session,
        context,
        principal,
        action="disclosure.create",
        target=f"disclosure:{disclosure.id}",
        details={"name": body.name, "version": version.version, "sha256": body.audio_sha256},
    )
    session.commit()
    return _out(session, disclosure)


@router.post("/{disclosure_id}/versions", response_model=VersionOut, status_code=201)
def add_version(
    principal: DisclosuresManager,
    context: Context,
    session: DbSession,
    disclosure_id: DisclosureId,
    body: VersionIn,
) -> VersionOut:
    disclosure = _find(session, disclosure_id)
    version = _add_version(session, disclosure, body)
    audit_trail.record(
        session,
        context,
        principal,
        action="disclosure.version.create",
        target=f"disclosure_version:{version.id}",
        details={"disclosure": disclosure.name, "version": version.version},
    )
    session.commit()
    return _version_out(version, played=False)


@router.patch("/{disclosure_id}/versions/{version}", response_model=VersionOut)
def edit_version(
    *,
    principal: DisclosuresManager,
    context: Context,
    session: DbSession,
    disclosure_id: DisclosureId,
    version: VersionNumber,
    body: VersionPatch,
) -> VersionOut:
    """Corrects a version nobody has heard yet; a played one answers 409 (add a version)."""
    found = session.scalar(
        select(DisclosureVersion).where(
            DisclosureVersion.disclosure_id == disclosure_id, DisclosureVersion.version == version
        )
    )
    if found is None:
        raise not_found(f"version {version} of disclosure {disclosure_id}")
    changes = body.model_dump(exclude_none=True)
    for name, value in changes.items():
        setattr(found, name, value)
    session.flush()  # a played version raises ImmutableRowError here: answered with 409
    audit_trail.record(
        session,
        context,
        principal,
        action="disclosure.version.update",
        target=f"disclosure_version:{found.id}",
        details={"fields": sorted(changes)},
    )
    session.commit()
    return _version_out(found, played=False)


def _find(session: Session, disclosure_id: int) -> Disclosure:
    disclosure = session.get(Disclosure, disclosure_id)
    if disclosure is None:
        raise not_found(f"disclosure {disclosure_id}")
    return disclosure


def _add_version(session: Session, disclosure: Disclosure, body: VersionIn) -> DisclosureVersion:
    latest = session.scalar(
        select(func.max(DisclosureVersion.version)).where(
            DisclosureVersion.disclosure_id == disclosure.id
        )
    )
    version = DisclosureVersion(
        disclosure_id=disclosure.id,
        version=(latest or 0) + 1,
        text=body.text,
        audio_sha256=body.audio_sha256,
        jurisdiction=body.jurisdiction,
    )
    session.add(version)
    session.flush()
    return version


def _out(session: Session, disclosure: Disclosure) -> DisclosureOut:
    played = set(
        session.scalars(
            select(DisclosureVersion.id).where(
                DisclosureVersion.disclosure_id == disclosure.id,
                exists().where(DisclosurePlay.version_id == DisclosureVersion.id),
            )
        )
    )
    versions = session.scalars(
        select(DisclosureVersion)
        .where(DisclosureVersion.disclosure_id == disclosure.id)
        .order_by(DisclosureVersion.version)
    )
    return DisclosureOut(
        id=disclosure.id,
        name=disclosure.name,
        created_at=disclosure.created_at,
        versions=[_version_out(v, played=v.id in played) for v in versions],
    )


def _version_out(version: DisclosureVersion, *, played: bool) -> VersionOut:
    return VersionOut(
        id=version.id,
        version=version.version,
        text=version.text,
        audio_sha256=version.audio_sha256,
        jurisdiction=version.jurisdiction,
        created_at=version.created_at,
        played=played,
    )
