"""A real SIP call in which the agent collects a card number: the recording and the transcript
pause on their own while it asks, and the number, spoken or keyed, reaches nothing but the
agent — not the worker's spool, not Redis (its stream nor its append-only file), not the
database the ingester fills from Redis, not any file or log of the worker or the engine.

The line's knowledge base (tests/kb/payments) updates the card on file, whose card number is a
`sensitive` slot. The caller starts to say the number (half of
it: the agent asks again), then keys it in.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from admin.ingest import RedisCarrier
from admin.settings import Settings
from telephony.events import CallEvent, CallEventKind
from telephony.recording import decrypt
from tests.engine_harness import silence, speak
from tests.ingest_support import stored_dump
from tests.private_servers import PrivateRedis
from tests.support import (
    EngineProcess,
    PlatformConfig,
    Running,
    dial,
    read_wav,
    start_worker,
    sync_disclosures,
    write_wav,
)

pytestmark = pytest.mark.sip

CARD = "4532015112830366"  # a test Visa number (Luhn-valid)
SPOKEN_HALF = "It's 4 5 3 2, 0 1 5 1."  # the caller starts to say it, then keys it in
ASK = "I need to change the card on my account."
DONE = "the card on your account is updated"  # tests/kb/payments
STREAM = "parley:pci-events"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[PrivateRedis]:
    with PrivateRedis() as server:
        yield server


@pytest.fixture(scope="module")
def config(
    tmp_path_factory: pytest.TempPathFactory,
    engine: EngineProcess,
    redis_server: PrivateRedis,
) -> PlatformConfig:
    return PlatformConfig(
        tmp_path_factory.mktemp("pci"),
        lines=[
            {
                "name": "main",
                "numbers": ["100"],
                "agent": "embedded",
                "knowledge_base": "payments",
                "disclosure": "notice",
                "record_calls": True,
            }
        ],
        extra={
            "engine": {"url": engine.url},
            "redis_url": redis_server.url,
            "events": {"carrier": "redis", "stream": STREAM, "poll_interval_s": 0.05},
            "disclosures": [
                {
                    "name": "notice",
                    "text": "This call is recorded.",
                    "jurisdiction": "US",
                    "covers": ["ai", "recording"],
                }
            ],
        },
    )


@pytest.fixture(scope="module")
def worker(config: PlatformConfig) -> Iterator[Running]:
    sync_disclosures(config)
    running = start_worker(config)
    yield running
    assert running.stop() == 0, running.log()[-3000:]


def _agent(events: list[CallEvent], name: str) -> list[dict[str, Any]]:
    return [
        dict(e.data) for e in events if e.kind is CallEventKind.AGENT and e.data["event"] == name
    ]


def _found(text: str) -> list[str]:
    """Where the card number shows in `text`: whole or its first half, in any grouping
    ("4532 0151", "4.5.3.2. 0.1.5.1", "4532-0151"), or as digit words."""
    compact = re.sub(r"[\s,.\-]", "", text)
    hits = [CARD[:8]] if CARD[:8] in compact else []
    hits += re.findall(r"4532\W{1,3}0151", text)
    hits += re.findall(r"four,? five,? three,? two", text, flags=re.IGNORECASE)
    return hits


def _redis_dump(client: Any) -> str:
    """Every key Redis holds, with its values."""
    rows = []
    for key in client.keys("*"):
        kind = client.type(key).decode()
        if kind == "stream":
            rows += [f"{key!r} {entry!r}" for entry in client.xrange(key)]
        elif kind == "string":
            rows.append(f"{key!r} {client.get(key)!r}")
        elif kind == "hash":
            rows.append(f"{key!r} {client.hgetall(key)!r}")
        elif kind == "list":
            rows.append(f"{key!r} {client.lrange(key, 0, -1)!r}")
        else:
            rows.append(f"{key!r} ({kind})")
    return "\n".join(rows)


def _database_dump(client: Any, tmp: Path) -> str:
    """The ingester reads the Redis stream into a database of its own; every row of it."""
    carrier = RedisCarrier(client, stream=STREAM, group="pci-test", claim_idle_s=0.5)
    return stored_dump(carrier, tmp)


def _files_text(*folders: Path) -> dict[Path, str]:
    return {
        path: path.read_bytes().decode("latin-1")
        for folder in folders
        for path in folder.rglob("*")
        if path.is_file() and path.suffix != ".wav"  # caller audio holds sound, not text
    }


@pytest.mark.usefixtures("worker")
def test_a_card_number_the_agent_collects_reaches_nothing_but_the_agent(
    config: PlatformConfig,
    engine: EngineProcess,
    redis_server: PrivateRedis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The notice and the short greeting; the caller asks, starts to say the number when asked,
    # and keys it in as the agent asks again; then listens to the agent's thanks.
    caller = [silence(5500), speak(ASK), silence(5000), speak(SPOKEN_HALF)]
    keys_at = sum(len(part) for part in caller) / 16000 + 4.0
    caller.append(silence(4000 + 10000))
    play = write_wav(tmp_path / "caller.wav", np.concatenate(caller).astype(np.float64))
    [result] = dial(
        f"sip:100@127.0.0.1:{config.worker_base_port}",
        tmp_path,
        play=play,
        dtmf=CARD,
        dtmf_at=keys_at,
        hold=0.5,
        max_s=60,
    )
    assert result["answered"], result
    events = config.events()
    [call_id] = [e.call_id for e in events if e.kind is CallEventKind.STARTED]
    events = [e for e in events if e.call_id == call_id]

    # The agent asked, and the call paused until it had the number (the half it heard was not
    # enough; the keys were): then it said so, unpaused.
    said = [str(t["text"]) for t in _agent(events, "agent_transcript")]
    done = [text for text in said if DONE in text.lower()]
    assert len(done) == 1, said
    recorded: list[dict[str, Any]] = [
        dict(e.data) for e in events if e.kind is CallEventKind.RECORDING
    ]
    assert [(r["event"], r.get("by")) for r in recorded] == [
        ("started", None),
        ("paused", "agent"),
        ("resumed", "agent"),
        ("finished", None),
    ], recorded
    pauses = recorded[-1]["pauses"]
    assert [p["by"] for p in pauses] == ["agent"]
    # The spoken number was heard inside a pause: its transcript went out empty.
    first_pause = next(e.t_mono_ns for e in events if e.data.get("event") == "paused")
    heard_paused = [
        dict(e.data)
        for e in events
        if e.kind is CallEventKind.AGENT
        and e.data["event"] == "caller_transcript"
        and e.t_mono_ns > first_pause
    ]
    assert heard_paused, "the caller said nothing while paused"
    assert all(t["text"] == "" and t["pci_paused"] for t in heard_paused[:1]), heard_paused
    keyed = [e.data for e in events if e.kind is CallEventKind.DTMF]
    assert keyed == [{"masked": True, "pci": True}] * len(CARD), keyed

    # Nowhere: the spool, Redis (before the ingester deletes what it stored, and its
    # append-only file, which keeps every write), the database, any file or log.
    client = redis.Redis.from_url(redis_server.url)
    time.sleep(1.0)  # the shipper's last batch
    assert client.xlen(STREAM) > 0
    assert _found(_redis_dump(client)) == []
    stored = _database_dump(client, tmp_path)
    assert call_id in stored
    assert _found(stored) == []
    files = _files_text(config.tmp, redis_server.root, engine.running.config.tmp)
    assert any(path.suffix == ".jsonl" for path in files)  # the spool is among them
    assert any("appendonly" in str(path) for path in files)  # and Redis's own file
    leaked = {str(path): _found(text) for path, text in files.items() if _found(text)}
    assert leaked == {}

    # The recording: silence while the agent collected, the caller's voice outside it.
    monkeypatch.setenv("PARLEY_CONFIG", str(config.write()))
    store = Settings().recording_store()
    audio = decrypt(store.folder / recorded[-1]["file"], key=store.key).pcm
    stereo: np.ndarray[Any, Any] = np.frombuffer(audio, dtype="<i2").reshape(-1, 2)
    for pause in pauses:
        start, end = pause["start_ms"] * 16, pause["end_ms"] * 16
        assert end - start > 16000, pause  # a real stretch, not a blip
        assert not stereo[start + 960 : end - 960].any(), "a paused stretch is not silence"
    assert np.abs(stereo[: pauses[0]["start_ms"] * 16, 0]).max() > 1000
    assert read_wav(Path(result["recording"])).any()
