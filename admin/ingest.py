"""The ingester: moves call events from their carrier into the database, exactly once.

A carrier hands out batches of spool lines: `FileCarrier` reads this host's spool files itself,
`RedisCarrier` reads the stream the workers ship to (admin.outbox), through a consumer group.
Each batch is written in one transaction (the new events and their projection); only after the
commit does the carrier move on (offsets saved, entries acknowledged). A crash in between means
the batch comes again, and the events' ids make the second insert a no-op.

When the database or Redis is down (or Redis answers with an error: OOM, MISCONF, READONLY),
the batch in hand is kept (memory holds one batch; the rest waits in the spool or the stream),
retried with a growing pause, and the outage is logged once when it starts and once when it ends.

A poison event, one the projection raises on or the database refuses, never stops the rest: a
batch that fails for such a reason is stored again event by event, and each event that still
fails is stored without its projection (or, refused outright, not stored) and quarantined.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import redis
from sqlalchemy import text
from sqlalchemy.exc import (
    DBAPIError,
    InterfaceError,
    InternalError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker

from admin.call_events import insert_new_events
from admin.projection import Projection
from admin.spool import (
    NOT_PROJECTED,
    REFUSED,
    Position,
    Quarantine,
    SpoolLine,
    SpoolReader,
    decode_event,
    write_atomically,
)
from telephony.events import CallEvent, spools_in

log = logging.getLogger(__name__)

OFFSETS_FILE = "ingest-offsets.json"
REJECTED_FILE = "rejected/rejected.jsonl"
_LOCK_KEY = 0x7061726C6579  # 'parley': ingesters take turns inserting, so seq follows commits


@dataclass
class Batch:
    lines: list[SpoolLine]
    token: Any  # what the carrier needs to move past the batch (positions, entry ids)
    events: list[CallEvent] = field(default_factory=list)
    rejected: list[tuple[SpoolLine, str]] = field(default_factory=list)  # not quarantined yet
    _lines: dict[str, SpoolLine] = field(default_factory=dict)  # by event id

    def decode(self) -> None:
        for line in self.lines:
            if not line.text:
                continue
            try:
                event = decode_event(line.text)
            except ValueError as error:
                self.rejected.append((line, str(error)))
                continue
            self.events.append(event)
            self._lines[event.event_id] = line

    def line_of(self, event: CallEvent) -> SpoolLine:
        """Where `event` came from and its text as it came, for the quarantine."""
        return self._lines.get(event.event_id) or SpoolLine(
            f"event {event.event_id}", event.to_json()
        )


class Carrier(Protocol):
    name: str

    def fetch(self, limit: int) -> Batch | None:
        """The next batch, or None when nothing is waiting (after a short wait)."""

    def commit(self, batch: Batch) -> None:
        """Moves past `batch`; called only after its events are committed."""

    def backlog(self) -> int:
        """How many events or bytes wait, for reports (-1 when it cannot be told)."""

    def close(self) -> None: ...


class CarrierUnavailable(Exception):
    """The carrier cannot be reached (Redis down); the ingester waits and tries again."""


# --- the embedded carrier: the spool files themselves --------------------------------------


class FileCarrier:
    """Reads every spool in `folder` from saved positions; deletes segments once stored.

    One ingester per folder: a lock file refuses a second one.
    """

    name = "spool"

    def __init__(self, folder: Path, *, poll_interval_s: float = 0.2) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.poll_interval_s = poll_interval_s
        self._lock: IO[str] = (folder / ".ingest.lock").open("w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise RuntimeError(
                f"another ingester is reading {folder}; run one per events folder"
            ) from None
        self._offsets_path = folder / OFFSETS_FILE
        self.positions = self._load_positions()
        self._next = 0  # round-robin start, so a busy worker cannot starve the others

    def _load_positions(self) -> dict[str, Position]:
        try:
            raw = json.loads(self._offsets_path.read_text())
            return {name: Position.decode(value) for name, value in raw.items()}
        except FileNotFoundError:
            return {}
        except (ValueError, AttributeError) as error:
            # Starting over only re-reads what is stored already: the inserts ignore it.
            log.warning(
                "spool offsets unreadable; reading the spools again from the start",
                extra={"error": str(error)},
            )
            return {}

    def fetch(self, limit: int) -> Batch | None:
        try:
            return self._fetch(limit)
        except OSError as error:
            raise CarrierUnavailable(f"spool unreadable: {error}") from None

    def _fetch(self, limit: int) -> Batch | None:
        spools = spools_in(self.folder)
        lines: list[SpoolLine] = []
        positions = dict(self.positions)
        for index in range(len(spools)):
            spool = spools[(self._next + index) % len(spools)]
            reader = SpoolReader(spool)
            found, after = reader.read(positions.get(reader.name, Position()), limit - len(lines))
            positions[reader.name] = after
            lines += found
            if len(lines) >= limit:
                break
        self._next += 1
        if positions == self.positions:
            time.sleep(self.poll_interval_s)
            return None
        return Batch(lines, positions)

    def commit(self, batch: Batch) -> None:
        positions: dict[str, Position] = batch.token
        try:
            write_atomically(
                self._offsets_path,
                json.dumps({name: pos.encode() for name, pos in sorted(positions.items())}),
            )
        except OSError as error:  # a full disk: the batch is stored, and is replayed as a no-op
            raise CarrierUnavailable(f"spool offsets not saved: {error}") from None
        self.positions = positions
        for name, position in positions.items():
            SpoolReader(self.folder / f"{name}.jsonl").release(position)

    def backlog(self) -> int:
        return sum(
            SpoolReader(spool).backlog_bytes(self.positions.get(spool.stem, Position()))
            for spool in spools_in(self.folder)
        )

    def close(self) -> None:
        self._lock.close()


# --- Redis: a stream and a consumer group ---------------------------------------------------


class RedisCarrier:
    """Reads the events stream as one consumer of the ingesters' group.

    Entries of a consumer that died before acknowledging them are claimed after `claim_idle_s`.
    Acknowledged entries are deleted from the stream with the acknowledgement, so the stream
    only holds what is not stored yet.
    """

    name = "redis"

    def __init__(
        self,
        client: redis.Redis,
        *,
        stream: str,
        group: str,
        consumer: str | None = None,
        claim_idle_s: float = 30.0,
        block_s: float = 1.0,
    ) -> None:
        self.client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.claim_idle_ms = int(claim_idle_s * 1000)
        self.block_ms = max(1, int(block_s * 1000))
        self._group_ready = False
        self._claim_at = 0.0

    def _call(self, action: Callable[[], Any]) -> Any:
        try:
            if not self._group_ready:
                self._create_group()
            return action()
        except redis.ResponseError as error:
            # Redis refuses (MISCONF, OOM, READONLY…) or lost the group (NOGROUP: it lost its
            # data, or someone deleted the stream): wait, and create the group again if need be.
            self._group_ready = False
            raise CarrierUnavailable(f"{type(error).__name__}: {str(error)[:200]}") from None
        except (redis.RedisError, OSError) as error:
            self._group_ready = False
            raise CarrierUnavailable(f"{type(error).__name__}: {error}") from None

    def _create_group(self) -> None:
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._group_ready = True

    def fetch(self, limit: int) -> Batch | None:
        now = time.monotonic()
        if now >= self._claim_at:
            self._claim_at = now + self.claim_idle_ms / 2000
            claimed: Batch | None = self._call(lambda: self._claim(limit))
            if claimed:
                return claimed
        reply = self._call(
            lambda: self.client.xreadgroup(
                self.group, self.consumer, {self.stream: ">"}, count=limit, block=self.block_ms
            )
        )
        entries = reply[0][1] if reply else []
        return self._batch(entries) if entries else None

    def _claim(self, limit: int) -> Batch | None:
        """Takes over entries that a dead consumer read and never acknowledged."""
        reply = self.client.xautoclaim(
            self.stream, self.group, self.consumer, self.claim_idle_ms, "0-0", count=limit
        )
        entries = [entry for entry in reply[1] if entry and entry[1] is not None]
        if entries:
            log.info("claimed events of a stopped ingester", extra={"events": len(entries)})
        return self._batch(entries) if entries else None

    def _batch(self, entries: list[Any]) -> Batch:
        lines = []
        for entry_id, fields in entries:
            raw = fields.get(b"e", b"")
            lines.append(
                SpoolLine(f"{self.stream}:{entry_id.decode()}", raw.decode("utf-8", "replace"))
            )
        return Batch(lines, [entry_id for entry_id, _ in entries])

    def commit(self, batch: Batch) -> None:
        ids = batch.token

        def ack() -> None:
            pipe = self.client.pipeline(transaction=True)
            pipe.xack(self.stream, self.group, *ids)
            pipe.xdel(self.stream, *ids)
            pipe.execute()

        if ids:
            self._call(ack)

    def backlog(self) -> int:
        try:
            groups = self.client.xinfo_groups(self.stream)
        except (redis.RedisError, OSError):
            return -1
        for group in groups:
            if group.get("name") in (self.group, self.group.encode()):
                lag = group.get("lag")
                return int(group.get("pending", 0)) + int(lag or 0)
        return -1

    def close(self) -> None:
        self.client.close()


# --- the ingester ---------------------------------------------------------------------------


def _database_fault(error: BaseException) -> bool:
    """A failure of the database rather than of the events in hand: waiting (or an operator)
    cures it, and quarantining events for it would be wrong. Down, gone away, out of disk, or
    unable to run the statement at all (SQLSTATE class 42: a table or column missing, no
    privilege) whatever the events hold."""
    if isinstance(error, OperationalError | InterfaceError | InternalError):
        return True
    if not isinstance(error, DBAPIError):
        return False
    sqlstate = getattr(error.orig, "sqlstate", None)
    return error.connection_invalidated or (isinstance(sqlstate, str) and sqlstate[:2] == "42")


def _reason(error: BaseException) -> str:
    """Names an error without its text, which may quote the event (personal data)."""
    orig = getattr(error, "orig", None)
    return type(error).__name__ + (f" ({type(orig).__name__})" if orig is not None else "")


class _Outage:
    """Logs an outage once when it starts and once when it ends, not on every retry."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.since: float | None = None
        self.attempts = 0
        self.episodes = 0

    def failed(self, error: BaseException, **counts: int) -> None:
        self.attempts += 1
        if self.since is None:
            self.since = time.monotonic()
            self.episodes += 1
            detail = str(error)[:200] if isinstance(error, CarrierUnavailable) else ""
            log.warning(
                f"{self.what} unavailable; holding events until it returns",
                extra={"error": _reason(error), "detail": detail, **counts},
            )

    def recovered(self, **counts: int) -> None:
        if self.since is not None:
            log.info(
                f"{self.what} is back; events flowing again",
                extra={
                    "outage_s": round(time.monotonic() - self.since, 1),
                    "retries": self.attempts,
                    **counts,
                },
            )
        self.since, self.attempts = None, 0


class Ingester:
    def __init__(
        self,
        carrier: Carrier,
        sessions: sessionmaker[Session],
        *,
        projection: Projection,
        quarantine: Quarantine,
        batch_size: int = 500,
        max_backoff_s: float = 5.0,
        on_call_ended: Callable[[str], None] = lambda _call_id: None,
    ) -> None:
        self.carrier = carrier
        self.sessions = sessions
        self.projection = projection
        self.quarantine = quarantine
        self.batch_size = batch_size
        self.max_backoff_s = max_backoff_s
        # Called on every turn of `run`, stalled or not: the supervisor's sign that the loop
        # is alive (a heartbeat file), as opposed to stuck inside a call that never returns.
        self.on_alive: Callable[[], None] = lambda: None
        self.on_call_ended = on_call_ended
        self.stored = 0  # events new to the database, since start
        self.rejected = 0  # lines that are not events, quarantined
        self.refused = 0  # events the database refused, quarantined and not stored
        self.unprojected = 0  # events stored without their projection, and quarantined
        self.split_batches = 0  # batches a poison event made store one event at a time
        self._db = _Outage("database")
        self._carrier = _Outage(carrier.name)
        self._folder = _Outage("events folder")  # the quarantine file cannot be written

    def counters(self) -> dict[str, int]:
        return {
            "stored": self.stored,
            "rejected": self.rejected,
            "refused": self.refused,
            "unprojected": self.unprojected,
            "split_batches": self.split_batches,
            "database_outages": self._db.episodes,
            "carrier_outages": self._carrier.episodes,
            "stalled": int(
                any(o.since is not None for o in (self._db, self._carrier, self._folder))
            ),
        }

    def run(self, stop: threading.Event) -> None:
        """Moves batches until `stop` is set; a batch in hand is finished or left for later."""
        backoff = 0.1
        batch: Batch | None = None
        while not stop.is_set():
            self.on_alive()
            try:
                if batch is None:
                    batch = self.carrier.fetch(self.batch_size)
                    self._carrier.recovered()
                    if batch is None:
                        continue
                    batch.decode()
                self._write(batch)
                self._db.recovered(events=len(batch.events))
                self._folder.recovered()
                self.carrier.commit(batch)
                self._carrier.recovered()
                batch, backoff = None, 0.1
            except CarrierUnavailable as error:
                self._carrier.failed(error)
            except SQLAlchemyError as error:  # poison is handled in _write: this is the database
                self._db.failed(error, events=len(batch.events) if batch else 0)
            except OSError as error:
                self._folder.failed(error)
            else:
                continue
            stop.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)

    def drain(self) -> int:
        """Stores everything waiting now (tests, benchmarks); returns how many were new."""
        before = self.stored
        while (batch := self.carrier.fetch(self.batch_size)) is not None:
            batch.decode()
            self._write(batch)
            self.carrier.commit(batch)
        return self.stored - before

    def _write(self, batch: Batch) -> None:
        """Stores and projects the batch; called again for the same batch after a failure, so
        each step is done once: inserts are idempotent, and what is quarantined leaves it."""
        try:
            ended = self._transaction(batch.events, project=True)
        except Exception as error:
            if _database_fault(error):
                raise
            self.split_batches += 1
            log.warning(
                "batch refused; storing its events one at a time",
                extra={"events": len(batch.events), "error": _reason(error)},
            )
            ended = self._one_by_one(batch)
        while batch.rejected:
            line, reason = batch.rejected[0]
            self.quarantine.add(line.where, line.text, reason)
            batch.rejected.pop(0)
            self.rejected += 1
        for call_id in ended:
            try:
                self.on_call_ended(call_id)
            except Exception:
                log.exception("on_call_ended failed", extra={"call_id": call_id})

    def _transaction(self, events: list[CallEvent], *, project: bool) -> list[str]:
        with self.sessions() as session, session.begin():
            _serialize(session)
            new = insert_new_events(session, self.projection.scrub(session, events))
            ended = self.projection.apply(session, new) if project else []
        self.stored += len(new)
        return ended

    def _one_by_one(self, batch: Batch) -> list[str]:
        """A batch that failed for something in it: store the events that can be, and
        quarantine the rest.

        An event whose projection fails is stored without it (its records are then missing or
        incomplete; the call's other events still make theirs) and quarantined, marked as
        stored; one the database refuses outright is quarantined only.
        """
        ended: list[str] = []
        for event in list(batch.events):
            try:
                ended += self._transaction([event], project=True)
                continue
            except Exception as error:
                if _database_fault(error):
                    raise
                why = _reason(error)
            line = batch.line_of(event)
            try:
                self._transaction([event], project=False)
            except Exception as error:
                if _database_fault(error):
                    raise
                self.quarantine.add(line.where, line.text, _reason(error), message=REFUSED)
                self.refused += 1
            else:
                reason = f"projection failed: {why}"
                self.quarantine.add(
                    line.where, line.text, reason, message=NOT_PROJECTED, stored=True
                )
                self.unprojected += 1
            batch.events.remove(event)  # a retry of this batch must not quarantine it again
        return ended


def _serialize(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
