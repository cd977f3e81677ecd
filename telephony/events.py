"""Call events and the one outlet through which they leave a worker process.

Events carry personal data (caller numbers, digits) as fields, never in log text. The outlet
appends JSON lines to a spool file: it is durable across a crash of whatever consumes it, and
the persistence layer reads it as an outbox.
"""

from __future__ import annotations

import enum
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol


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
    ENDED = "call.ended"


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


class EventOutlet(Protocol):
    def emit(self, event: CallEvent) -> None: ...

    def close(self) -> None: ...


DEFAULT_SEGMENT_BYTES = 16 * 2**20
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
    """

    def __init__(self, path: Path, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.spool = path
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        segments = [(seq, p) for seq, p in spool_segments(path) if seq > 0]
        self._seq = segments[-1][0] if segments else 1
        self.path = segment_path(path, self._seq)
        self._file: IO[str] | None = self._open(self.path)

    @staticmethod
    def _open(path: Path) -> IO[str]:
        file = path.open("a", encoding="utf-8")
        if file.tell() > 0:
            with path.open("rb") as existing:
                existing.seek(-1, 2)
                if existing.read(1) != b"\n":
                    file.write("\n")
                    file.flush()
        return file

    def emit(self, event: CallEvent) -> None:
        line = event.to_json() + "\n"
        with self._lock:
            if self._file is None:
                return
            self._file.write(line)
            self._file.flush()
            if self._file.tell() >= self.segment_bytes:
                # Close before the next segment exists: a reader that sees segment N+1 knows
                # segment N is complete.
                self._file.close()
                self._seq += 1
                self.path = segment_path(self.spool, self._seq)
                self._file = self._open(self.path)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


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
