"""Call events and the one outlet through which they leave a worker process.

Events carry personal data (caller numbers, digits) as fields, never in log text. The outlet
appends JSON lines to a spool file: it is durable across a crash of whatever consumes it, and
the persistence layer reads it as an outbox.
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import json
import logging
import os
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from io import FileIO
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)


class CallEventKind(enum.StrEnum):
    STARTED = "call.started"
    ANSWERED = "call.answered"
    REJECTED = "call.rejected"
    DTMF = "call.dtmf"
    DTMF_SENT = "call.dtmf_sent"
    MEDIA_STATS = "call.media_stats"
    PLAYOUT_FLUSHED = "call.playout_flushed"
    AGENT = "call.agent_event"
    SESSION_FAILED = "call.session_failed"
    TRANSFERRED = "call.transferred"
    DISCLOSURE_PLAYED = "call.disclosure_played"
    # The call's recording (data: event = started (file), paused / resumed (by), finished (file,
    # pcm_sha256, file_sha256, duration_ms, pauses) or failed (reason)); telephony/recording.py.
    RECORDING = "call.recording"
    # The call's phase changed (data: phase, mode, agent, supervisor; telephony.phases).
    PHASE = "call.phase"
    # A command from another process was carried out (data: command, actor, command_id).
    COMMAND = "call.command"
    # The supervisor's leg (data: event = ringing, answered, ended (status, by) or failed).
    SUPERVISOR = "call.supervisor"
    # A transition of the call's escalation to a person (escalation/service.py; data:
    # escalation_id, event, from, to, actor, reason, queue, supervisor, detail).
    ESCALATION = "call.escalation"
    ENDED = "call.ended"
    EVENTS_DROPPED = "call.events_dropped"  # the worker's spool lost events of the call
    # Not about one call: the media worker (data: worker, host) starts afresh, so every call it
    # held before is gone. Its call_id is the event's own id. Emitted when the worker boots,
    # and by the supervisor when the worker exits or hangs.
    WORKER_RESET = "worker.reset"


@dataclass(frozen=True, slots=True)
class CallEvent:
    call_id: str
    kind: CallEventKind
    data: dict[str, object] = field(default_factory=dict)
    t_mono_ns: int = field(default_factory=time.monotonic_ns)
    t_wall: float = field(default_factory=time.time)
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_json(self) -> str:
        return json.dumps(
            {
                "event_id": self.event_id,
                "call_id": self.call_id,
                "kind": self.kind.value,
                "t_mono_ns": self.t_mono_ns,
                "t_wall": self.t_wall,
                "data": self.data,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, line: str) -> CallEvent:
        raw = json.loads(line)
        return cls(
            call_id=raw["call_id"],
            kind=CallEventKind(raw["kind"]),
            data=raw["data"],
            t_mono_ns=raw["t_mono_ns"],
            t_wall=raw["t_wall"],
            event_id=raw["event_id"],
        )


_KEYS_KEPT = frozenset("*#")  # not data: kept, so a menu's use of them can be followed


def keys_masked(event: CallEvent) -> CallEvent:
    """An event as it is written down: keys a caller pressed or the agent sent (a card number,
    a PIN, an account number keyed in) are not, only that they were (`masked`, how many);
    '*' and '#' stay. The live fan-out still carries them for the escalation service, which
    reads a callback number or a 0 from them as they come."""
    if event.kind is CallEventKind.DTMF:
        digit = event.data.get("digit")
        if digit is None or digit in _KEYS_KEPT:
            return event
        rest = {key: value for key, value in event.data.items() if key != "digit"}
        return dataclasses.replace(event, data={**rest, "masked": True})
    if event.kind is CallEventKind.DTMF_SENT:
        digits = event.data.get("digits")
        if not isinstance(digits, str) or not digits or set(digits) <= _KEYS_KEPT:
            return event
        rest = {key: value for key, value in event.data.items() if key != "digits"}
        return dataclasses.replace(event, data={**rest, "masked": True, "count": len(digits)})
    return event


class EventOutlet(Protocol):
    def emit(self, event: CallEvent) -> None: ...

    def close(self) -> None: ...


DEFAULT_SEGMENT_BYTES = 16 * 2**20
DEFAULT_MAX_HELD = 10_000  # events held in memory while the spool's disk refuses them
_SEGMENT = re.compile(r"(?P<spool>[A-Za-z0-9_-]+)(?:\.(?P<seq>[0-9]{8}))?\.jsonl")


def segment_path(spool: Path, seq: int) -> Path:
    """Segment `seq` of the spool `spool` (var/events/worker-0.jsonl: worker-0.00000001.jsonl)."""
    return spool.with_name(f"{spool.stem}.{seq:08d}{spool.suffix}")


def spool_segments(spool: Path) -> list[tuple[int, Path]]:
    """The spool's segment files, oldest first. A plain `worker-0.jsonl` (written before spools
    had segments) counts as segment 0."""
    found = []
    if spool.is_file():
        found.append((0, spool))
    for path in spool.parent.glob(f"{spool.stem}.*{spool.suffix}"):
        match = _SEGMENT.fullmatch(path.name)
        if match and match["spool"] == spool.stem and match["seq"]:
            found.append((int(match["seq"]), path))
    return sorted(found)


def spools_in(folder: Path) -> list[Path]:
    """The spools whose segments are in `folder`, by their base path (folder/worker-0.jsonl)."""
    names = set()
    for path in folder.glob("*.jsonl"):
        match = _SEGMENT.fullmatch(path.name)
        if match:
            names.add(match["spool"])
    return [folder / f"{name}.jsonl" for name in sorted(names)]


class JsonlOutlet:
    """Appends events to a spool, one JSON object a line; safe to call from any thread.

    The spool is a series of segment files: once one passes `segment_bytes` it is closed and
    the next one started, so a reader can delete segments it has stored. A restarted worker
    goes on appending to its last segment, after ending a line torn by a crash (a reader
    reports that line as garbage and skips it; the lines around it stay whole).

    `emit` runs on the pjsua2 thread and in asyncio callbacks, so it never raises. A spool that
    cannot be written (a full disk, an I/O error) holds events in memory, in order, and writes
    them when the disk takes them again: on the next `emit`, or every `retry_interval_s`.
    At most `max_held` events wait; later ones are dropped, counted, logged, and once the disk
    has room a `call.events_dropped` event for each call that lost events says how many, at
    the place in the spool where they would have been.
    """

    def __init__(
        self,
        path: Path,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        max_held: int = DEFAULT_MAX_HELD,
        retry_interval_s: float = 1.0,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.spool = path
        self.segment_bytes = segment_bytes
        self.max_held = max_held
        self.retry_interval_s = retry_interval_s
        self.written = 0  # lines written, drop markers included
        self.dropped = 0  # events never written: the memory buffer was full, or lost at close
        self.write_errors = 0  # failed attempts to write
        self.outages = 0  # times the spool stopped taking events
        self._lock = threading.Lock()
        self._held: deque[bytes] = deque()
        self._head_written = 0  # bytes of the first held line already in the file
        self._lost: dict[str, _Lost] = {}  # per call: dropped, not yet marked in the spool
        self._down_since: float | None = None
        self._drop_logged = False
        self._timer: threading.Timer | None = None
        self._closed = False
        segments = [(seq, p) for seq, p in spool_segments(path) if seq > 0]
        self._seq = segments[-1][0] if segments else 1
        self.path = segment_path(path, self._seq)
        self._file: FileIO | None = None
        self._size = 0
        with self._lock:
            try:
                self._segment()
            except OSError as error:
                self._failed(error)

    @property
    def held(self) -> int:
        """Events waiting in memory for the disk."""
        with self._lock:
            return len(self._held)

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {
                "written": self.written,
                "held": len(self._held),
                "dropped": self.dropped,
                "write_errors": self.write_errors,
                "outages": self.outages,
            }

    def emit(self, event: CallEvent) -> None:
        try:
            line = (event.to_json() + "\n").encode()
        except (TypeError, ValueError) as error:  # a field that is not JSON: a bug upstream
            log.error(
                "call event is not JSON; dropped",
                extra={"call_id": event.call_id, "kind": event.kind.value, "error": str(error)},
            )
            with self._lock:
                self.dropped += 1
            return
        with self._lock:
            if self._closed:
                self.dropped += 1
                return
            if len(self._held) >= self.max_held:
                self._flush()  # the disk may have room by now
            if len(self._held) >= self.max_held:
                self._drop(event)
                return
            self._held.extend(self._markers())
            self._held.append(line)
            self._flush()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            self._flush()
            if self._held or self._lost:
                self.dropped += len(self._held)  # those in _lost are counted already
                unmarked = sum(lost.count for lost in self._lost.values())
                log.error(
                    "spool not writable at close; held events lost",
                    extra={"spool": self.spool.name, "events": len(self._held) + unmarked},
                )
            if self._file is not None:
                self._file.close()
                self._file = None

    # --- with the lock held --------------------------------------------------------------

    def _flush(self) -> None:
        """Writes what is held; on failure keeps it and tries again later."""
        try:
            self._write_held()
        except OSError as error:
            self._failed(error)
            return
        if self._down_since is not None:
            log.info(
                "spool writable again; held events written",
                extra={
                    "spool": self.spool.name,
                    "outage_s": round(time.monotonic() - self._down_since, 1),
                    "dropped": self.dropped,
                },
            )
            self._down_since, self._drop_logged = None, False

    def _failed(self, error: OSError) -> None:
        self.write_errors += 1
        if self._down_since is None:
            self._down_since = time.monotonic()
            self.outages += 1
            log.warning(
                "spool not writable; holding events in memory",
                extra={"spool": self.spool.name, "error": _os_error(error)},
            )
        if not self._closed and self._timer is None:
            self._timer = threading.Timer(self.retry_interval_s, self._retry)
            self._timer.daemon = True
            self._timer.start()

    def _retry(self) -> None:
        with self._lock:
            self._timer = None
            if not self._closed:
                self._flush()

    def _write_held(self) -> None:
        """Writes the held lines, oldest first, then the marks of what was dropped. Raises
        OSError where the disk refuses; a line then stays held with how much of it is written,
        so the file never gets a line twice or a torn one that is later continued wrongly."""
        while True:
            if not self._held:
                self._held.extend(self._markers())
                if not self._held:
                    return
            file = self._segment()
            line = self._held[0]
            while self._head_written < len(line):
                written = file.write(memoryview(line)[self._head_written :]) or 0
                self._head_written += written
                self._size += written
            self._held.popleft()
            self._head_written = 0
            self.written += 1
            if self._size >= self.segment_bytes:
                # Closed before the next segment exists: a reader that sees segment N+1 knows
                # segment N is complete.
                file.close()
                self._file = None
                self._seq += 1
                self.path = segment_path(self.spool, self._seq)
                try:
                    self._segment()
                except OSError:
                    pass  # opened by the next write

    def _segment(self) -> FileIO:
        if self._file is None:
            file = FileIO(self.path, "a+")  # read too: the last byte says if a line is torn
            try:
                size = os.fstat(file.fileno()).st_size
                if size > 0 and os.pread(file.fileno(), 1, size - 1) != b"\n":
                    if file.write(b"\n") != 1:  # end a line torn by a crash
                        raise OSError(errno.ENOSPC, "the torn line could not be ended")
                    size += 1
            except OSError:
                file.close()
                raise
            self._file, self._size = file, size
        return self._file

    def _drop(self, event: CallEvent) -> None:
        self.dropped += 1
        lost = self._lost.setdefault(event.call_id, _Lost(event.t_mono_ns))
        lost.count += 1
        lost.kinds[event.kind.value] = lost.kinds.get(event.kind.value, 0) + 1
        lost.last_mono_ns = event.t_mono_ns
        if not self._drop_logged:
            self._drop_logged = True
            log.warning(
                "spool buffer full; dropping events until the disk takes them again",
                extra={"spool": self.spool.name, "held": len(self._held)},
            )

    def _markers(self) -> list[bytes]:
        """One `call.events_dropped` line per call that lost events since the last marks."""
        markers = [
            CallEvent(
                call_id,
                CallEventKind.EVENTS_DROPPED,
                {
                    "dropped": lost.count,
                    "kinds": dict(lost.kinds),
                    "first_mono_ns": lost.first_mono_ns,
                    "last_mono_ns": lost.last_mono_ns,
                },
            )
            for call_id, lost in self._lost.items()
        ]
        self._lost = {}
        return [(marker.to_json() + "\n").encode() for marker in markers]


@dataclass(slots=True)
class _Lost:
    first_mono_ns: int
    last_mono_ns: int = 0
    count: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


def _os_error(error: OSError) -> str:
    return errno.errorcode.get(error.errno or 0, type(error).__name__)


class MemoryOutlet:
    """Keeps events in a list; for in-process use such as the softphone."""

    def __init__(self) -> None:
        self.events: list[CallEvent] = []
        self._lock = threading.Lock()

    def emit(self, event: CallEvent) -> None:
        with self._lock:
            self.events.append(event)

    def close(self) -> None:
        return None


def read_events(path: Path) -> list[CallEvent]:
    """Every complete event in a spool file (a torn last line from a crash is skipped)."""
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(CallEvent.from_json(line))
        except (ValueError, KeyError):
            continue
    return events


def media_totals(events: list[CallEvent]) -> dict[str, int]:
    """Sums the integer media counters of the `call.ended` events among `events`."""
    totals: dict[str, int] = {}
    for event in events:
        media = event.data.get("media") if event.kind is CallEventKind.ENDED else None
        if not isinstance(media, dict):
            continue
        for key, value in media.items():
            if isinstance(value, int) and not isinstance(value, bool):
                totals[key] = totals.get(key, 0) + value
    return totals
