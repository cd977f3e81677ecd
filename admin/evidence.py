"""Evidence bundles: what an auditor takes away about some calls, and checks without Parley.

A bundle is one zip file:

    manifest.json     format, who made it and when, what it covers, the SHA-256 of every other
                      file, the public key, and an Ed25519 signature over all of that
    calls.json        each call in full, as `GET /calls/{id}` shows it: disclosure plays (text,
                      audio SHA-256, consent), transcript (redacted), events, escalations with
                      every supervisor transition, the recording's hashes and PCI pauses
    calls.csv, disclosures.csv, transcript.csv, recordings.csv, audit.csv   the same, flat
    audit.json        the audit chain from the first entry about these calls to its head: every
                      entry with its MAC and the MAC before it (the chain proof)
    checkpoint.json   a signed checkpoint of that head, made when the bundle was
    schema.json       the JSON schema calls.json follows
    report.html       all of it for people

`verify` checks a bundle offline, with the public key the auditor holds (`parley audit
public-key`): the manifest's signature, every file's hash, that the audit entries link up
to the signed checkpoint, that calls.json follows its schema, and — given the audit key —
every entry's MAC. The export itself is an audit entry (`evidence.exported`) inside the bundle.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import hmac
import html
import io
import itertools
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from admin import audit, audit_checkpoint
from admin.api import call_queries
from admin.api.schemas import AuditEntryOut, CallDetail
from admin.models import AuditEntry, Call

FORMAT = "parley-evidence-1"
MANIFEST = "manifest.json"


class ChainEntry(AuditEntryOut):
    """An audit entry as the bundle carries it: with the MAC before it (the chain proof)."""

    prev_mac: str


class BundleCalls(BaseModel):
    """calls.json."""

    format: Literal["parley-evidence-1"]
    calls: list[CallDetail]


@dataclass(frozen=True, slots=True)
class Exported:
    path: Path
    calls: int
    sha256: str  # of the zip file


def export(
    session: Session,
    *,
    call_ids: Sequence[str],
    scope: dict[str, Any],
    folder: Path,
    actor: str,
    audit_key: bytes,
    checkpoint_file: Path | None,
) -> Exported:
    """Writes the bundle of `call_ids` into `folder` and audits it (commits the session)."""
    details = [call_queries.get_call(session, call_id, scope=None) for call_id in call_ids]
    calls = [detail for detail in details if detail is not None]
    exported_entry = audit.append(
        session,
        key=audit_key,
        actor=actor,
        action="evidence.exported",
        target=f"evidence:{_stamp()}",
        details={"scope": scope, "calls": [call.id for call in calls]},
    )
    session.commit()
    targets = {f"call:{call.id}" for call in calls}
    first = session.scalar(
        select(AuditEntry.id).where(AuditEntry.target.in_(targets)).order_by(AuditEntry.id)
    )
    start = min(first or exported_entry.id, exported_entry.id)
    chain = [
        ChainEntry.model_validate(entry, from_attributes=True)
        for entry in session.scalars(
            select(AuditEntry).where(AuditEntry.id >= start).order_by(AuditEntry.id)
        )
    ]
    checkpoint = audit_checkpoint.make(session, audit_key=audit_key)
    if checkpoint_file is not None:
        audit_checkpoint.append(checkpoint_file, checkpoint)
    files = _files(calls, chain, checkpoint)
    manifest = {
        "format": FORMAT,
        "created_at": checkpoint.at,
        "created_by": actor,
        "scope": scope,
        "calls": [call.id for call in calls],
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
        "public_key": checkpoint.public_key,
    }
    key = audit_checkpoint.signing_key(audit_key)
    signature = key.sign(_canonical(manifest))
    manifest["signature"] = base64.b64encode(signature).decode()
    files[MANIFEST] = json.dumps(manifest, indent=1).encode()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"evidence-{checkpoint.at.replace(':', '')}-{exported_entry.id}.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in files.items():
            bundle.writestr(name, data)
    path.write_bytes(buffer.getvalue())
    path.chmod(0o600)
    return Exported(path, len(calls), hashlib.sha256(buffer.getvalue()).hexdigest())


def calls_between(session: Session, start: dt.datetime, end: dt.datetime) -> list[str]:
    query = select(Call.id).where(Call.started_at >= start, Call.started_at < end)
    return list(session.scalars(query.order_by(Call.started_at, Call.id)))


# --- checking a bundle ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    problems: tuple[str, ...]
    calls: int
    entries: int
    key_checked: bool  # signatures checked against a key the auditor gave, not the bundle's own

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(
    path: Path, *, public_key: Ed25519PublicKey | None = None, audit_key: bytes | None = None
) -> Verdict:
    """Everything wrong with the bundle at `path` (nothing: it is whole and signed)."""
    try:
        with zipfile.ZipFile(path) as bundle:
            files = {name: bundle.read(name) for name in bundle.namelist()}
    except (OSError, zipfile.BadZipFile) as error:
        return Verdict((f"not a readable bundle: {error}",), 0, 0, False)
    problems: list[str] = []
    try:
        manifest = json.loads(files.pop(MANIFEST))
        signature = base64.b64decode(manifest.pop("signature"), validate=True)
        embedded = audit_checkpoint.public_key_from_text(manifest["public_key"])
    except (KeyError, ValueError, TypeError) as error:
        return Verdict((f"{MANIFEST} is missing or unreadable: {error}",), 0, 0, False)
    key = public_key or embedded
    if public_key is not None and manifest["public_key"] != audit_checkpoint.public_key_text(
        public_key
    ):
        problems.append("the bundle was signed with another key than the one you gave")
    try:
        key.verify(signature, _canonical(manifest))
    except InvalidSignature:
        problems.append(f"{MANIFEST}: the signature does not match its content")
    listed: dict[str, str] = manifest.get("files", {})
    for name in sorted(set(listed) | set(files)):
        if name not in files:
            problems.append(f"{name} is listed in the manifest but missing")
        elif name not in listed:
            problems.append(f"{name} is in the bundle but not in the manifest")
        elif hashlib.sha256(files[name]).hexdigest() != listed[name]:
            problems.append(f"{name} was changed: its SHA-256 is not the manifest's")
    calls = 0
    try:
        calls = len(BundleCalls.model_validate_json(files.get("calls.json", b"")).calls)
    except ValidationError as error:
        problems.append(f"calls.json does not follow its schema: {error.error_count()} errors")
    entries = _check_chain(files, key, audit_key, problems)
    return Verdict(tuple(problems), calls, entries, public_key is not None)


def _check_chain(
    files: dict[str, bytes],
    key: Ed25519PublicKey,
    audit_key: bytes | None,
    problems: list[str],
) -> int:
    try:
        chain = [ChainEntry.model_validate(raw) for raw in json.loads(files["audit.json"])]
        checkpoint = audit_checkpoint.Checkpoint.from_json(files["checkpoint.json"].decode())
    except (KeyError, ValueError, ValidationError) as error:
        problems.append(f"audit.json or checkpoint.json is unreadable: {error}")
        return 0
    if not checkpoint.signed_by(key):
        problems.append("checkpoint.json is not signed by the bundle's key")
    for before, after in itertools.pairwise(chain):
        if after.id != before.id + 1 or after.prev_mac != before.mac:
            problems.append(f"audit entry {after.id} does not follow entry {before.id}")
            break
    if not chain or (chain[-1].id, chain[-1].mac) != (checkpoint.entry_id, checkpoint.mac):
        problems.append("the audit entries do not end at the signed checkpoint")
    if audit_key is not None:
        for entry in chain:
            row = AuditEntry(**entry.model_dump())
            if not hmac.compare_digest(entry.mac, audit.mac_of(audit_key, row)):
                problems.append(f"audit entry {entry.id}: its MAC is not the audit key's")
                break
    return len(chain)


# --- the files ---------------------------------------------------------------------------------


def _files(
    calls: list[CallDetail], chain: list[ChainEntry], checkpoint: audit_checkpoint.Checkpoint
) -> dict[str, bytes]:
    bundle = BundleCalls(format=FORMAT, calls=calls)
    return {
        "calls.json": bundle.model_dump_json(indent=1).encode(),
        "schema.json": json.dumps(BundleCalls.model_json_schema(), indent=1).encode(),
        "audit.json": json.dumps([e.model_dump(mode="json") for e in chain], indent=1).encode(),
        "checkpoint.json": checkpoint.to_json().encode(),
        "calls.csv": _csv(
            [
                "call_id",
                "line",
                "caller",
                "to",
                "started_at",
                "ended_at",
                "outcome",
                "end_reason",
                "redaction_policy",
            ],
            [
                [
                    c.id,
                    c.line,
                    c.caller,
                    c.to_number,
                    c.started_at,
                    c.ended_at,
                    c.outcome,
                    c.end_reason,
                    c.redaction_policy,
                ]
                for c in calls
            ],
        ),
        "disclosures.csv": _csv(
            [
                "call_id",
                "disclosure",
                "version",
                "jurisdiction",
                "audio_sha256",
                "started_at",
                "ended_at",
                "interrupted",
                "consent",
                "consent_method",
                "text",
            ],
            [
                [
                    c.id,
                    p.disclosure,
                    p.version,
                    p.jurisdiction,
                    p.audio_sha256,
                    p.started_at,
                    p.ended_at,
                    p.interrupted,
                    p.consent,
                    p.consent_method,
                    p.text,
                ]
                for c in calls
                for p in c.disclosure_plays
            ],
        ),
        "transcript.csv": _csv(
            [
                "call_id",
                "speaker",
                "start_ms",
                "end_ms",
                "text",
                "interrupted",
                "heard_text",
                "redaction",
            ],
            [
                [
                    c.id,
                    s.speaker,
                    s.start_ms,
                    s.end_ms,
                    s.text,
                    s.interrupted,
                    s.heard_text,
                    s.redaction,
                ]
                for c in calls
                for s in c.transcript
            ],
        ),
        "recordings.csv": _csv(
            ["call_id", "state", "duration_ms", "pcm_sha256", "file_sha256", "pauses"],
            [
                [
                    c.id,
                    r.state,
                    r.duration_ms,
                    r.pcm_sha256,
                    r.file_sha256,
                    json.dumps([p.model_dump() for p in r.pauses]),
                ]
                for c in calls
                if (r := c.recording) is not None
            ],
        ),
        "audit.csv": _csv(
            ["id", "at", "actor", "action", "target", "details", "prev_mac", "mac"],
            [
                [e.id, e.at, e.actor, e.action, e.target, json.dumps(e.details), e.prev_mac, e.mac]
                for e in chain
            ],
        ),
        "report.html": _report(calls, chain, checkpoint).encode(),
    }


def _csv(header: list[str], rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if value is None else _plain(value) for value in row])
    return out.getvalue().encode()


def _plain(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(getattr(value, "value", value))


def _report(
    calls: list[CallDetail], chain: list[ChainEntry], checkpoint: audit_checkpoint.Checkpoint
) -> str:
    e = html.escape
    parts = [
        "<!doctype html><meta charset=utf-8><title>Parley evidence</title>",
        "<style>body{font:14px system-ui;margin:2em}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}"
        "code{font-size:12px}</style>",
        f"<h1>Evidence: {len(calls)} call(s)</h1>",
        f"<p>Audit chain head at the export: entry {checkpoint.entry_id}, MAC "
        f"<code>{e(checkpoint.mac)}</code>, signed at {e(checkpoint.at)} by "
        f"<code>{e(checkpoint.public_key)}</code>. Check the bundle with "
        "<code>parley audit verify-bundle</code>.</p>",
    ]
    for call in calls:
        parts.append(f"<h2>Call {e(call.id)}</h2>")
        parts.append(
            _table(
                ["line", "caller", "started", "ended", "outcome", "end reason", "redaction"],
                [
                    [
                        call.line,
                        call.caller,
                        call.started_at,
                        call.ended_at,
                        call.outcome,
                        call.end_reason,
                        call.redaction_policy,
                    ]
                ],
            )
        )
        parts.append("<h3>What the caller was told, and their consent</h3>")
        parts.append(
            _table(
                [
                    "disclosure",
                    "version",
                    "text",
                    "audio SHA-256",
                    "played",
                    "interrupted",
                    "consent",
                    "how",
                ],
                [
                    [
                        p.disclosure,
                        p.version,
                        p.text,
                        p.audio_sha256,
                        f"{_plain(p.started_at)} to {_plain(p.ended_at)}",
                        p.interrupted,
                        p.consent,
                        p.consent_method,
                    ]
                    for p in call.disclosure_plays
                ],
            )
        )
        parts.append("<h3>Recording</h3>")
        recording = call.recording
        if recording is None:
            parts.append("<p>Not recorded.</p>")
        else:
            pauses = (
                "; ".join(f"{p.start_ms}-{p.end_ms} ms by {p.by}" for p in recording.pauses)
                or "none"
            )
            parts.append(
                _table(
                    ["state", "duration ms", "audio SHA-256", "file SHA-256", "PCI pauses"],
                    [
                        [
                            recording.state,
                            recording.duration_ms,
                            recording.pcm_sha256,
                            recording.file_sha256,
                            pauses,
                        ]
                    ],
                )
            )
        parts.append("<h3>Transcript (redacted)</h3>")
        parts.append(
            _table(
                ["ms", "who", "said"],
                [[s.start_ms, s.speaker, s.text] for s in call.transcript],
            )
        )
        parts.append("<h3>People on the call</h3>")
        parts.append(
            _table(
                ["at", "escalation", "event", "to", "actor"],
                [
                    [t.at, x.ref, t.event, t.to_state, t.actor]
                    for x in call.escalations
                    for t in x.transitions
                ],
            )
        )
        parts.append("<h3>Audit entries</h3>")
        parts.append(
            _table(
                ["id", "at", "actor", "action"],
                [[a.id, a.at, a.actor, a.action] for a in chain if a.target == f"call:{call.id}"],
            )
        )
    parts.append("<h2>Audit chain in this bundle</h2>")
    parts.append(
        _table(
            ["id", "at", "actor", "action", "target", "MAC"],
            [[a.id, a.at, a.actor, a.action, a.target, a.mac[:16] + "…"] for a in chain],
        )
    )
    return "\n".join(parts)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return "<p>None.</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(_plain(v) if v is not None else '')}</td>" for v in row)
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _canonical(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
