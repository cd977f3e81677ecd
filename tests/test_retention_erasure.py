"""Retention with a shifted clock (parts of calls, orphan events, quarantined lines, export
files), legal holds, and erasure of a caller that leaves nothing but a receipt and an audit
entry — searched for in a dump of every table and every file. On both database backends."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, MetaData, create_engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from admin import audit, phone_numbers, schema
from admin.erasure import (
    Files,
    HeldError,
    erase_caller,
    place_hold,
    release_hold,
    scrub_freed_space,
)
from admin.jobs.config import JobsSettings
from admin.jobs.retention import purge_expired
from admin.models import (
    AuditEntry,
    Call,
    ErasureReceipt,
    Escalation,
    EscalationReason,
    Recording,
    RecordingState,
)
from admin.settings import Settings
from escalation.lifecycle import EscalationState
from telephony.recording import EncryptedWriter
from tests.jobs_support import add_call, add_disclosure_play, add_event, add_line, add_segment
from tests.support import parley_command

pytest_plugins = ["tests.db_support"]

AUDIT_KEY = b"audit-key-for-retention-tests-0123456789"
NUMBER_KEY = b"number-key-for-retention-tests-0123456789"
NOW = dt.datetime(2027, 6, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
CALLER = "+1 (415) 555-0142"


@pytest.fixture
def engine(empty_database_url: str) -> Iterator[Engine]:
    schema.upgrade(empty_database_url)
    found = create_engine(empty_database_url)
    yield found
    found.dispose()


@pytest.fixture
def files(tmp_path: Path) -> Files:
    found = Files(tmp_path / "recordings", tmp_path / "rejected.jsonl", tmp_path / "exports")
    found.recordings.mkdir()
    found.exports.mkdir()
    return found


def _recording(session: Session, call: Call, files: Files) -> Path:
    path = files.recordings / f"{call.id}.prec"
    path.write_bytes(b"sealed audio of " + call.id.encode())
    session.add(
        Recording(
            call_id=call.id,
            file=path.name,
            state=RecordingState.FINISHED,
            started_at=call.started_at,
            duration_ms=1000,
            pauses=[],
        )
    )
    session.flush()
    return path


def _orphan(session: Session, call_id: str, at: dt.datetime) -> None:
    from admin.models import CallEventRecord

    session.add(
        CallEventRecord(
            event_id=os.urandom(16).hex(),
            call_id=call_id,
            kind="call.agent_event",
            occurred_at=at,
            t_mono_ns=1,
            data={"event": "caller_transcript", "text": "orphaned words"},
        )
    )


def test_a_purge_with_a_shifted_clock_covers_parts_orphans_and_files(
    engine: Engine, files: Files
) -> None:
    sessions = sessionmaker(engine, expire_on_commit=False)
    jobs = JobsSettings(
        retention_days=365,
        export_retention_days=30,
        lines={"main": {"recordings_days": 30}},
    )
    with sessions() as session, session.begin():
        line = add_line(session, "main")
        gone = add_call(session, line=line, started_at=NOW - 400 * DAY)
        add_segment(session, gone, "old words")
        gone_file = _recording(session, gone, files)
        evidence = add_call(session, line=line, started_at=NOW - 400 * DAY)
        add_disclosure_play(session, evidence)
        evidence_file = _recording(session, evidence, files)
        kept = add_call(session, line=line, started_at=NOW - 400 * DAY)
        kept.caller_hash = phone_numbers.number_hash(CALLER, key=NUMBER_KEY)
        add_segment(session, kept, "held words")
        held_file = _recording(session, kept, files)
        recent = add_call(session, line=line, started_at=NOW - 40 * DAY)
        add_segment(session, recent, "recent words")
        recent_file = _recording(session, recent, files)
        _orphan(session, "a" * 32, NOW - 400 * DAY)
        _orphan(session, "b" * 32, NOW - 10 * DAY)
        hold = place_hold(
            session,
            caller_number="4155550142",
            number_key=NUMBER_KEY,
            reason="litigation 2027-118",
            actor="user:counsel",
            audit_key=AUDIT_KEY,
        )
        hold_id = hold.id
        named = [("gone", gone), ("evidence", evidence), ("kept", kept), ("recent", recent)]
        ids = {name: call.id for name, call in named}
    lines = [
        {"at": "worker-0", "why": "x", "line": "{}", "t": (NOW - 400 * DAY).timestamp()},
        {"at": "worker-0", "why": "y", "line": "{}", "t": (NOW - DAY).timestamp()},
    ]
    files.quarantine.write_text("".join(json.dumps(line) + "\n" for line in lines))
    old_export, new_export = files.exports / "old.csv", files.exports / "new.csv"
    for path, age in ((old_export, 31 * DAY), (new_export, 2 * DAY)):
        path.write_text("call_id\n")
        when = (NOW - age).timestamp()
        os.utime(path, (when, when))

    report = purge_expired(sessions, jobs=jobs, audit_key=AUDIT_KEY, now=NOW, files=files)

    assert report.deleted == 1 and report.anonymised == 1
    assert report.parts == {"recordings": 1}  # the recent call's; the held one is kept
    assert report.outside == {"orphan_events": 1, "quarantined_lines": 1, "export_files": 1}
    with sessions() as session:
        assert session.get(Call, ids["gone"]) is None
        assert session.get_one(Call, ids["evidence"]).caller_hash is None
        assert session.get(Call, ids["kept"]) is not None  # under the caller's hold
        recordings = set(session.scalars(select(Recording.call_id)))
        assert recordings == {ids["kept"]}
        actions = [e.action for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
        assert actions[0] == "legal_hold.placed"
        assert {"calls.purged", "calls.parts_purged", "retention.purged"} <= set(actions)
        assert audit.verify(session, key=AUDIT_KEY) is None
    assert not gone_file.exists() and not evidence_file.exists() and not recent_file.exists()
    assert held_file.exists()
    assert [json.loads(line)["why"] for line in files.quarantine.read_text().splitlines()] == ["y"]
    assert not old_export.exists() and new_export.exists()

    # Released, the hold no longer protects the caller's calls.
    with sessions() as session, session.begin():
        release_hold(session, hold_id=hold_id, actor="user:counsel", audit_key=AUDIT_KEY)
        with pytest.raises(ValueError, match="released"):
            release_hold(session, hold_id=hold_id, actor="user:counsel", audit_key=AUDIT_KEY)
    again = purge_expired(sessions, jobs=jobs, audit_key=AUDIT_KEY, now=NOW, files=files)
    assert again.deleted == 1 and not held_file.exists()


def _everything(engine: Engine, files: Files) -> str:
    """Every row of every table, and every file's bytes, as one text to search."""
    metadata = MetaData()
    metadata.reflect(engine)
    dumped = []
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(table.select()):
                dumped.append(f"{table.name}: {json.dumps(list(row), default=str)}")
    for folder in (files.recordings, files.exports, files.quarantine.parent):
        for path in folder.rglob("*"):
            if path.is_file() and ".db" not in path.name:  # the database: dumped above
                dumped.append(f"{path}: {path.read_bytes().decode(errors='replace')}")
    return "\n".join(dumped)


def _database_file_bytes(engine: Engine) -> bytes:
    """SQLite's file and its log as they are on disk (free pages included); PostgreSQL's are
    not this process's to read."""
    if engine.dialect.name != "sqlite" or not engine.url.database:
        return b""
    path = Path(engine.url.database)
    return b"".join(p.read_bytes() for p in path.parent.glob(f"{path.name}*"))


def test_erasure_leaves_only_a_receipt_and_an_audit_entry(engine: Engine, files: Files) -> None:
    sessions = sessionmaker(engine, expire_on_commit=False)
    hashes = phone_numbers.number_hashes(CALLER, key=NUMBER_KEY)
    legacy = phone_numbers.number_hashes("4155550142", key=NUMBER_KEY)
    with sessions() as session, session.begin():
        line = add_line(session, "main")
        first = add_call(session, line=line, started_at=NOW - 3 * DAY)
        first.caller_hash = phone_numbers.number_hash(CALLER, key=NUMBER_KEY)
        # Stored before numbers were put in E.164: the hash of the digits as they came.
        second = add_call(session, line=line, started_at=NOW - 2 * DAY)
        second.caller_hash = hmac_of("4155550142")
        for call in (first, second):
            add_segment(session, call, "my name is Ada")
            add_event(session, call, "call.agent_event", {"event": "caller_transcript"})
            add_disclosure_play(session, call)
            _recording(session, call, files)
        other = add_call(session, line=line, started_at=NOW - DAY)
        session.add(
            Escalation(
                ref="e" * 32,
                call_id=other.id,
                reason=EscalationReason.DTMF_ZERO,
                state=EscalationState.CALLBACK,
                requested_at=other.started_at,
                queue="default",
                callback_number_hash=hashes[0],
                callback_number_masked="+1******0142",
            )
        )
        ids = [first.id, second.id]
        other_id = other.id
        hold_id = place_hold(
            session, call_id=second.id, reason="complaint", actor="user:dpo", audit_key=AUDIT_KEY
        ).id
    files.quarantine.write_text(json.dumps({"line": f'{{"call_id":"{ids[0]}"}}', "t": 1}) + "\n")
    (files.exports / "march.csv").write_text(f"call_id\n{ids[1]}\n")
    (files.exports / "other.csv").write_text(f"call_id\n{other_id}\n")

    # Held: refused, and the refusal is audited.
    with sessions() as session, session.begin(), pytest.raises(HeldError, match=f"#{hold_id}"):
        erase_caller(
            session, number=CALLER, actor="user:dpo", number_key=NUMBER_KEY,
            audit_key=AUDIT_KEY, files=files,
        )  # fmt: skip
    with sessions() as session, session.begin():
        release_hold(session, hold_id=hold_id, actor="user:dpo", audit_key=AUDIT_KEY)
        receipt = erase_caller(
            session, number="415 555 0142", actor="user:dpo", number_key=NUMBER_KEY,
            audit_key=AUDIT_KEY, files=files,
        )  # fmt: skip
    assert receipt.calls == 2
    assert receipt.removed["recording_files"] == 2
    assert receipt.removed["export_files"] == ["march.csv"]
    assert receipt.removed["quarantined_lines"] == 1 and receipt.removed["callback_numbers"] == 1

    scrub_freed_space(engine)
    dump = _everything(engine, files)
    with sessions() as session:
        entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
        [stored] = session.scalars(select(ErasureReceipt)).all()
        assert audit.verify(session, key=AUDIT_KEY) is None
    erased = [e for e in entries if e.action == "caller.erased"]
    assert len(erased) == 1 and erased[0].target == f"erasure:{stored.id}"
    allowed = {stored.subject_hash}  # the receipt's own reference
    for trace in [*ids, *hashes, *legacy, "Ada", "+1******0142"]:
        lines = [line for line in dump.splitlines() if trace in line]
        lines = [
            line for line in lines
            if not line.startswith("audit_log:") and not (
                line.startswith("erasure_receipts:") and trace in allowed
            )
        ]  # fmt: skip
        assert lines == [], f"{trace} is still in: {lines}"
    # On disk, not even SQLite's free pages hold what was said or the caller's hashes (the
    # audit log in the same file names the calls by id, which is not personal data).
    raw = _database_file_bytes(engine)
    gone = {*hashes, *legacy, "Ada", "sealed audio"} - allowed
    for trace in gone:
        assert trace.encode() not in raw, f"{trace} is still in the database file"
    assert (files.exports / "other.csv").exists()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM calls")).scalar() == 1


def hmac_of(digits: str) -> str:
    import hashlib
    import hmac

    return hmac.new(NUMBER_KEY, digits.encode(), hashlib.sha256).hexdigest()


def _parley(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return parley_command(env, *args)


def test_parley_hold_and_erase_from_the_shell(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env = clean | {"PARLEY_DATA_DIR": str(tmp_path / "var")}
    assert _parley(env, "db", "upgrade").returncode == 0
    placed = _parley(env, "hold", "place", "--caller", CALLER, "--reason", "matter 7")
    assert placed.returncode == 0, placed.stderr
    assert placed.stdout.strip() == "legal hold #1 placed on caller +1******0142"
    unsure = _parley(env, "erase", "--caller", CALLER)
    assert unsure.returncode == 2 and "--yes" in unsure.stderr
    held = _parley(env, "erase", "--caller", "415-555-0142", "--yes", "--by", "dpo")
    assert held.returncode == 1 and "under legal hold #1" in held.stderr
    released = _parley(env, "hold", "release", "1", "--by", "counsel")
    assert released.returncode == 0, released.stderr
    assert "#1 released" in _parley(env, "hold", "list").stdout
    erased = _parley(env, "erase", "--caller", "415-555-0142", "--yes", "--by", "dpo")
    assert erased.returncode == 0, erased.stderr
    receipt = json.loads(erased.stdout)
    assert receipt["calls"] == 0 and receipt["requested_by"] == "dpo"
    assert "released" not in _parley(env, "hold", "list").stdout  # the hold went with them


def test_parley_recording_export_checks_the_hash_and_audits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env = clean | {"PARLEY_DATA_DIR": str(tmp_path / "var")}
    assert _parley(env, "db", "upgrade").returncode == 0
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / "var"))
    settings = Settings()
    store = settings.recording_store()
    pcm = bytes(range(200)) * 160
    engine = create_engine(settings.database_url())
    with sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
        call = add_call(session, started_at=NOW)
        writer = EncryptedWriter(store.path(call.id), key=store.key, call_id=call.id)
        writer.write(pcm)
        pcm_sha256, file_sha256 = writer.close()
        session.add(
            Recording(
                call_id=call.id,
                file=store.path(call.id).name,
                state=RecordingState.FINISHED,
                started_at=NOW,
                duration_ms=1000,
                pcm_sha256=pcm_sha256,
                file_sha256=file_sha256,
                pauses=[],
            )
        )
    engine.dispose()
    out = tmp_path / "call.wav"
    exported = _parley(env, "recording", "export", call.id, "--out", str(out), "--by", "auditor")
    assert exported.returncode == 0, exported.stderr
    assert f"audio sha256 {pcm_sha256} (as stored)" in exported.stdout
    with wave.open(str(out)) as wav:
        assert wav.readframes(wav.getnframes()) == pcm
    store.path(call.id).write_bytes(store.path(call.id).read_bytes()[:-3])  # cut short
    refused = _parley(env, "recording", "export", call.id, "--out", str(out))
    assert refused.returncode == 1 and "cut short" in refused.stderr
    engine = create_engine(settings.database_url())
    with engine.connect() as connection:
        actions = connection.execute(text("SELECT actor, action FROM audit_log")).all()
    engine.dispose()
    assert [tuple(row) for row in actions] == [("auditor", "recording.read")]
