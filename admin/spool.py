"""Reading the media workers' spool files: complete lines from a position, in bounded batches.

A spool (telephony.events.JsonlOutlet) is a series of segment files. A reader keeps a position
(segment, byte offset) per spool; it only ever returns whole lines, and moves into the next
segment once the worker has started it, which also means the previous one is complete and,
once its lines are stored, can be deleted. Lines that are not a valid event are reported with
their reason and kept in a quarantine file, never passed on and never allowed to block the rest.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telephony.events import CallEvent, CallEventKind, spool_segments

log = logging.getLogger(__name__)

_HEX32 = re.compile(r"[0-9a-f]{32}")
_MAX_LINE_BYTES = 1 << 20  # a line longer than this is garbage, read no further into it
_EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC).timestamp()
_LATEST = dt.datetime(2200, 1, 1, tzinfo=dt.UTC).timestamp()


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where a reader is in a spool: the next byte to read in segment `seq`."""

    seq: int = 0
    offset: int = 0

    def encode(self) -> str:
        return f"{self.seq}:{self.offset}"

    @classmethod
    def decode(cls, text: str) -> Position:
        seq, _, offset = text.partition(":")
        return cls(int(seq), int(offset))


@dataclass(frozen=True, slots=True)
class SpoolLine:
    where: str  # spool, segment and byte offset, for reports
    text: str


def decode_event(text: str) -> CallEvent:
    """The event on one spool line; ValueError says what is wrong with it (never the content,
    which may hold personal data)."""
    try:
        raw = json.loads(text)
    except ValueError:
        raise ValueError("not JSON (a torn or corrupted line)") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    return _checked(raw)


def _checked(raw: dict[str, Any]) -> CallEvent:
    event_id, call_id = raw.get("event_id"), raw.get("call_id")
    if not isinstance(event_id, str) or not _HEX32.fullmatch(event_id):
        raise ValueError("event_id is not 32 lowercase hex digits")
    if not isinstance(call_id, str) or not _HEX32.fullmatch(call_id):
        raise ValueError("call_id is not 32 lowercase hex digits")
    try:
        kind = CallEventKind(str(raw.get("kind")))
    except ValueError:
        raise ValueError("unknown kind") from None
    t_mono_ns: Any = raw.get("t_mono_ns")
    t_wall: Any = raw.get("t_wall")
    data = raw.get("data")
    if not _is_int(t_mono_ns) or not 0 <= t_mono_ns < 2**63:
        raise ValueError("t_mono_ns is not a non-negative integer")
    if not _is_number(t_wall) or not _EARLIEST <= t_wall <= _LATEST:
        raise ValueError("t_wall is not a plausible UNIX time")
    if not isinstance(data, dict):
        raise ValueError("data is not a JSON object")
    return CallEvent(call_id, kind, data, t_mono_ns, float(t_wall), event_id)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


class SpoolReader:
    """Reads one spool's complete lines from a position."""

    def __init__(self, spool: Path) -> None:
        self.spool = spool
        self.name = spool.stem

    def read(self, position: Position, limit: int) -> tuple[list[SpoolLine], Position]:
        """Up to `limit` lines from `position`, and the position after them."""
        lines: list[SpoolLine] = []
        segments = [(seq, path) for seq, path in spool_segments(self.spool) if seq >= position.seq]
        for index, (seq, path) in enumerate(segments):
            # Listed before reading: a later segment means the worker has closed this one.
            sealed = index + 1 < len(segments)
            offset = position.offset if seq == position.seq else 0
            offset = self._read_segment(path, offset, sealed, limit - len(lines), lines)
            position = Position(seq, offset)
            if len(lines) >= limit or not sealed or offset < _size(path):
                break
            position = Position(segments[index + 1][0], 0)
        return lines, position

    def _read_segment(
        self, path: Path, offset: int, sealed: bool, limit: int, into: list[SpoolLine]
    ) -> int:
        try:
            file = path.open("rb")
        except FileNotFoundError:
            return offset
        with file:
            file.seek(offset)
            while len(into) < limit:
                raw = file.readline(_MAX_LINE_BYTES)
                if not raw:
                    break
                if not raw.endswith(b"\n") and len(raw) < _MAX_LINE_BYTES and not sealed:
                    break  # the worker is still writing this line
                where = f"{self.name}:{path.name}:{offset}"
                offset += len(raw)
                into.append(SpoolLine(where, raw.decode("utf-8", errors="replace").strip()))
        return offset

    def release(self, position: Position) -> int:
        """Deletes the segments before `position` (all their lines are stored); how many."""
        removed = 0
        for seq, path in spool_segments(self.spool):
            if seq >= position.seq:
                break
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def backlog_bytes(self, position: Position) -> int:
        """Bytes written to the spool after `position`: what is not stored yet."""
        total = 0
        for seq, path in spool_segments(self.spool):
            if seq > position.seq:
                total += _size(path)
            elif seq == position.seq:
                total += max(0, _size(path) - position.offset)
        return total


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


NOT_AN_EVENT = "spool line is not an event; quarantined"
REFUSED = "event refused by the database; quarantined"
NOT_PROJECTED = "event stored without its records; quarantined"


class Quarantine:
    """Keeps what the pipeline cannot use, with where it came from and why, for a person to
    look at; the pipeline goes on without it.

    Three kinds of record, told apart by the log message and `stored`: a line that is not an
    event; an event the database refuses (not stored); an event it stored but could not
    project (`stored: true`: it is in call_events, its records are missing or incomplete).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0  # records written since start

    def add(
        self,
        where: str,
        text: str,
        reason: str,
        *,
        message: str = NOT_AN_EVENT,
        stored: bool = False,
    ) -> None:
        """Raises OSError when the record cannot be written: the caller keeps the line."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record: dict[str, object] = {"at": where, "why": reason, "line": text}
        if stored:
            record["stored"] = True
        record["t"] = round(_now(), 3)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")
        self.count += 1
        log.warning(message, extra={"at": where, "why": reason})


def _now() -> float:
    return dt.datetime.now(dt.UTC).timestamp()


def write_atomically(path: Path, text: str) -> None:
    """Replaces `path` with `text` so a crash leaves either the old or the new content."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
