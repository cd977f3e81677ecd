"""Evidence bundles: exported for a call, valid against their own schema, verified offline with
the public key alone; a changed file, a changed entry, a forged signature or another key's
bundle fails. On both database backends, and through the CLI and the API."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import zipfile
from pathlib import Path

import jsonschema_rs  # an independent JSON Schema validator (schemathesis brings it)
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from admin import audit, audit_checkpoint, evidence
from admin.models import Recording, RecordingState
from tests.jobs_support import add_call, add_disclosure_play, add_event, add_segment
from tests.support import parley_command

pytest_plugins = ["tests.db_support"]

AUDIT_KEY = b"audit-key-for-evidence-tests-0123456789"
NOW = dt.datetime(2026, 11, 2, 10, 0, tzinfo=dt.UTC)


def _a_call(session: Session) -> str:
    call = add_call(session, started_at=NOW)
    add_disclosure_play(session, call)
    add_segment(session, call, "my card is [card]")
    add_event(session, call, "call.command", {"command": "set_mode", "actor": "supervisor:ann"})
    session.add(
        Recording(
            call_id=call.id,
            file=f"{call.id}.prec",
            state=RecordingState.FINISHED,
            started_at=NOW,
            duration_ms=60_000,
            pcm_sha256="a" * 64,
            file_sha256="b" * 64,
            pauses=[{"start_ms": 1000, "end_ms": 9000, "by": "dtmf"}],
        )
    )
    audit.append(
        session, key=AUDIT_KEY, actor="user:ann", action="call.read", target=f"call:{call.id}"
    )
    session.flush()
    return call.id


def _rewrite(path: Path, name: str, change: bytes) -> Path:
    """A copy of the bundle with one file's content replaced."""
    with zipfile.ZipFile(path) as bundle:
        files = {n: bundle.read(n) for n in bundle.namelist()}
    files[name] = change
    out = path.with_name(f"changed-{name}.zip")
    with zipfile.ZipFile(out, "w") as bundle:
        for n, data in files.items():
            bundle.writestr(n, data)
    return out


def test_a_bundle_verifies_offline_and_any_change_fails(session: Session, tmp_path: Path) -> None:
    call_id = _a_call(session)
    made = evidence.export(
        session,
        call_ids=[call_id],
        scope={"calls": [call_id]},
        folder=tmp_path / "exports",
        actor="user:auditor",
        audit_key=AUDIT_KEY,
        checkpoint_file=tmp_path / "checkpoints.jsonl",
    )
    public = audit_checkpoint.signing_key(AUDIT_KEY).public_key()
    verdict = evidence.verify(made.path, public_key=public, audit_key=AUDIT_KEY)
    assert verdict.ok, verdict.problems
    assert (verdict.calls, verdict.key_checked) == (1, True)

    with zipfile.ZipFile(made.path) as bundle:
        names = set(bundle.namelist())
        calls = json.loads(bundle.read("calls.json"))
        jsonschema_rs.validate(json.loads(bundle.read("schema.json")), calls)
        chain = json.loads(bundle.read("audit.json"))
        report = bundle.read("report.html").decode()
    assert names == {
        "manifest.json", "calls.json", "schema.json", "audit.json", "checkpoint.json",
        "calls.csv", "disclosures.csv", "transcript.csv", "recordings.csv", "audit.csv",
        "report.html",
    }  # fmt: skip
    [detail] = calls["calls"]
    assert detail["id"] == call_id
    assert detail["disclosure_plays"][0]["audio_sha256"] == "a" * 64
    assert detail["recording"]["pauses"] == [{"start_ms": 1000, "end_ms": 9000, "by": "dtmf"}]
    assert detail["transcript"][0]["text"] == "my card is [card]"
    actions = [entry["action"] for entry in chain]
    assert actions[0] == "call.read" and actions[-1] == "evidence.exported"
    assert "What the caller was told" in report and call_id in report
    # The bundle's checkpoint was also appended to the checkpoint file.
    assert audit_checkpoint.read(tmp_path / "checkpoints.jsonl", public_key=public).checkpoints

    changed_csv = _rewrite(made.path, "transcript.csv", b"call_id,text\nx,my card is 4111\n")
    assert "transcript.csv was changed" in evidence.verify(changed_csv).problems[0]

    with zipfile.ZipFile(made.path) as bundle:
        manifest = json.loads(bundle.read("manifest.json"))
        entries = json.loads(bundle.read("audit.json"))
    entries[0]["actor"] = "user:nobody"
    forged_entries = json.dumps(entries).encode()
    manifest["files"]["audit.json"] = hashlib.sha256(forged_entries).hexdigest()
    forged = _rewrite(_rewrite(made.path, "audit.json", forged_entries), "manifest.json",
                      json.dumps(manifest).encode())  # fmt: skip
    problems = evidence.verify(forged, public_key=public, audit_key=AUDIT_KEY).problems
    assert "manifest.json: the signature does not match its content" in problems
    assert any("its MAC is not the audit key's" in p for p in problems)

    other = audit_checkpoint.signing_key(b"another audit key, 0123456789abcd").public_key()
    assert "signed with another key" in evidence.verify(made.path, public_key=other).problems[0]
    assert not evidence.verify(tmp_path / "nothing.zip").ok


def test_export_and_verify_bundle_from_the_shell(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    data = tmp_path / "var"
    env = clean | {"PARLEY_DATA_DIR": str(data), "PARLEY_KEYS_DIR": str(tmp_path / "keys")}
    assert parley_command(env, "db", "upgrade").returncode == 0
    engine = create_engine(f"sqlite:///{data / 'parley.db'}")
    with sessionmaker(engine)() as session, session.begin():
        call = add_call(session, started_at=NOW)
        add_segment(session, call, "hello")
        call_id = call.id
    engine.dispose()
    out = tmp_path / "bundles"
    made = parley_command(
        env, "audit", "export", "--from", "2026-11-01T00:00:00Z", "--to",
        "2026-11-03T00:00:00Z", "--out", str(out), "--by", "auditor",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    [bundle] = out.glob("evidence-*.zip")
    assert f"{bundle}: 1 call(s)" in made.stdout
    key = parley_command(env, "audit", "public-key").stdout.strip()
    checked = parley_command(env, "audit", "verify-bundle", str(bundle), "--public-key", key)
    assert checked.returncode == 0, checked.stdout
    assert "OK: signature, file hashes, audit chain and checkpoint, schema" in checked.stdout
    with zipfile.ZipFile(bundle) as opened:
        assert call_id in opened.read("calls.csv").decode()
    tampered = _rewrite(bundle, "calls.csv", b"call_id\n")
    refused = parley_command(env, "audit", "verify-bundle", str(tampered), "--public-key", key)
    assert refused.returncode == 1
    assert "FAILED: calls.csv was changed" in refused.stdout
