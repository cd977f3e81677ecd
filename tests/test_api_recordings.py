"""A call's recording through the API: its hashes and pauses with the call, the decrypted WAV
for those who may read the call, each opening and listening audited, and a recording that
does not verify refused."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, select

from admin.models import AuditEntry, Recording, RecordingState
from telephony.recording import EncryptedWriter, RecordingStore, recording_key
from tests.api_data import T0, Api, running_api

pytest_plugins = ["tests.db_support"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> RecordingStore:
    return RecordingStore(tmp_path_factory.mktemp("recordings"), recording_key(b"k" * 32))


@pytest.fixture(scope="module")
def api(postgres_server: Engine, store: RecordingStore) -> Iterator[Api]:
    with running_api(postgres_server, recordings=store) as running:
        yield running


PCM = (np.arange(32000, dtype="<i2") % 200 - 100).astype("<i2").tobytes()  # 1 s of stereo


@pytest.fixture(scope="module")
def recorded(api: Api, store: RecordingStore) -> str:
    call_id = api.fixture.contained
    writer = EncryptedWriter(store.path(call_id), key=store.key, call_id=call_id)
    writer.write(PCM)
    pcm_sha256, file_sha256 = writer.close()
    with api.sessions() as session, session.begin():
        session.add(
            Recording(
                call_id=call_id,
                file=store.path(call_id).name,
                state=RecordingState.FINISHED,
                started_at=T0 + dt.timedelta(seconds=3),
                duration_ms=1000,
                pcm_sha256=pcm_sha256,
                file_sha256=file_sha256,
                pauses=[{"start_ms": 200, "end_ms": 400, "by": "dtmf"}],
            )
        )
    return call_id


def _audit(api: Api, action: str) -> list[AuditEntry]:
    with api.sessions() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def test_the_call_shows_its_recording_and_the_opening_is_audited(api: Api, recorded: str) -> None:
    auditor = api.actors["auditor"]
    with api.client() as client:
        body = client.get(f"/calls/{recorded}", headers=auditor.bearer()).json()
    assert body["recording"] == {
        "state": "finished",
        "started_at": "2026-03-01T09:00:03Z",
        "duration_ms": 1000,
        "pcm_sha256": hashlib.sha256(PCM).hexdigest(),
        "file_sha256": body["recording"]["file_sha256"],
        "pauses": [{"start_ms": 200, "end_ms": 400, "by": "dtmf"}],
        "reason": None,
    }
    opened = [e for e in _audit(api, "call.read") if e.target == f"call:{recorded}"]
    assert opened and opened[-1].actor == f"user:{auditor.username}"


def test_the_recording_is_served_decrypted_and_each_listening_is_audited(
    api: Api, recorded: str
) -> None:
    admin = api.actors["admin"]
    before = len(_audit(api, "recording.read"))
    with api.client() as client:
        response = client.get(f"/calls/{recorded}/recording", headers=admin.bearer())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(response.content)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (2, 16000, 2)
        assert wav.readframes(wav.getnframes()) == PCM
    listened = _audit(api, "recording.read")
    assert len(listened) == before + 1
    assert listened[-1].actor == f"user:{admin.username}"
    assert listened[-1].details["pcm_sha256"] == hashlib.sha256(PCM).hexdigest()


def test_a_supervisor_cannot_listen_to_a_call_out_of_their_scope(api: Api, recorded: str) -> None:
    with api.client() as client:
        response = client.get(
            f"/calls/{recorded}/recording", headers=api.actors["supervisor"].bearer()
        )
    assert response.status_code == 404


def test_a_recording_that_does_not_verify_is_refused(
    api: Api, recorded: str, store: RecordingStore
) -> None:
    path: Path = store.path(recorded)
    original = path.read_bytes()
    changed = bytearray(original)
    changed[-5] ^= 0x01
    path.write_bytes(bytes(changed))
    try:
        with api.client() as client:
            response = client.get(
                f"/calls/{recorded}/recording", headers=api.actors["admin"].bearer()
            )
        assert response.status_code == 409
        assert "does not verify" in response.json()["error"]["message"]
    finally:
        path.write_bytes(original)
    path.unlink()
    try:
        with api.client() as client:
            gone = client.get(f"/calls/{recorded}/recording", headers=api.actors["admin"].bearer())
        assert gone.status_code == 404
    finally:
        path.write_bytes(original)
