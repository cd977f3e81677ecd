"""Exporting the calls that started in a time range as CSV or JSON Lines.

Calls are read in pages (keyset pagination on started_at, id) and written as they come, so
memory stays bounded whatever the range holds. The file is written under a `.part` name and
renamed when complete: a reader never sees half an export. Its name follows from the request,
so exporting the same range again replaces the file with the same content.

What a caller sent (the number it dialled, an end reason) is written cleaned (admin.display_text),
and a CSV cell that a spreadsheet would run as a formula ('=HYPERLINK(...)', '+cmd|...') starts
with an apostrophe, so opening an export runs nothing a caller wrote.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session, selectinload

from admin import display_text
from admin.jobs.errors import JobInputError
from admin.models import Call, CallMetrics, Line, TranscriptSegment

ExportFormat = Literal["csv", "jsonl"]
FORMATS: tuple[ExportFormat, ...] = ("csv", "jsonl")
PAGE = 200  # calls per query
Progress = Callable[[int, int, Path], None]  # done, total, the file being written
# What a spreadsheet would run as a formula; a sign before only digits and stars (a masked
# number, '+1******4567') cannot call anything, and stays as it is.
_FORMULA = re.compile(r"[=@\t\r]|[+-](?![0-9*]*$)")

COLUMNS = (
    "call_id",
    "line",
    "caller",
    "to_number",
    "started_at",
    "answered_at",
    "ended_at",
    "end_reason",
    "outcome",
    "duration_ms",
    "turns",
    "barge_ins",
    "backchannels",
    "voice_to_voice_p50_ms",
    "voice_to_voice_p95_ms",
)


@dataclass(frozen=True, slots=True)
class ExportRequest:
    start: dt.datetime
    end: dt.datetime
    format: ExportFormat
    transcripts: bool
    line: str | None

    def file_name(self) -> str:
        stamp = "%Y%m%dT%H%M%SZ"
        parts = ["calls", self.start.strftime(stamp), self.end.strftime(stamp)]
        if self.line is not None:
            parts.append(re.sub(r"[^A-Za-z0-9_-]", "_", self.line))
        if self.transcripts:
            parts.append("transcripts")
        return "_".join(parts) + f".{self.format}"


@dataclass(frozen=True, slots=True)
class ExportResult:
    path: Path
    rows: int
    format: ExportFormat

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "rows": self.rows, "format": self.format}


def parse_request(
    *, start: str, end: str, format: str, transcripts: bool, line: str | None
) -> ExportRequest:
    """The request from a job's plain arguments; JobInputError says what is wrong."""
    begins, ends = _instant("start", start), _instant("end", end)
    if ends <= begins:
        raise JobInputError(f"export range is empty: end {end} is not after start {start}")
    if format not in FORMATS:
        raise JobInputError(f"export format {format!r} is not one of {', '.join(FORMATS)}")
    if line is not None and not isinstance(line, str):
        raise JobInputError(f"export line must be a line name, not {line!r}")
    return ExportRequest(begins, ends, format, bool(transcripts), line)


def _instant(name: str, value: object) -> dt.datetime:
    if not isinstance(value, str):
        raise JobInputError(f"export {name} must be an ISO 8601 time, not {value!r}")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise JobInputError(
            f"export {name} {value!r} is not an ISO 8601 time (e.g. 2025-01-31T00:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        raise JobInputError(f"export {name} {value!r} has no time zone: add Z or +hh:mm")
    return parsed.astimezone(dt.UTC)


def export_calls(
    session: Session, request: ExportRequest, *, folder: Path, progress: Progress
) -> ExportResult:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)  # exports hold personal data
    path = folder / request.file_name()
    partial = path.with_name(path.name + ".part")
    query = _calls_in_range(request)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    progress(0, total, path)
    done = 0
    try:
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(descriptor, "w", encoding="utf-8", newline="") as out:
            write = _writer(out, request)
            for page in _pages(session, query, request.transcripts):
                for call in page:
                    write(call)
                done += len(page)
                out.flush()
                progress(done, total, path)
                session.expunge_all()  # what was written is not needed again
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return ExportResult(path, done, request.format)


def _calls_in_range(request: ExportRequest) -> Select[Call]:
    query = select(Call).where(Call.started_at >= request.start, Call.started_at < request.end)
    if request.line is not None:
        query = query.join(Line, Line.id == Call.line_id).where(Line.name == request.line)
    return query


def _pages(session: Session, query: Select[Call], transcripts: bool) -> Iterator[Sequence[Call]]:
    options = [selectinload(Call.line), selectinload(Call.metrics)]
    if transcripts:
        options.append(selectinload(Call.segments))
    after: tuple[dt.datetime, str] | None = None
    while True:
        page_query = query.options(*options).order_by(Call.started_at, Call.id).limit(PAGE)
        if after is not None:
            started, call_id = after
            page_query = page_query.where(
                or_(
                    Call.started_at > started,
                    and_(Call.started_at == started, Call.id > call_id),
                )
            )
        page = session.scalars(page_query).all()
        if not page:
            return
        yield page
        after = (page[-1].started_at, page[-1].id)


def _writer(out: IO[str], request: ExportRequest) -> Callable[[Call], None]:
    if request.format == "jsonl":

        def write_json(call: Call) -> None:
            row = _row(call)
            if request.transcripts:
                row["transcript"] = [_segment(segment) for segment in call.segments]
            out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")

        return write_json
    columns = [*COLUMNS, "transcript"] if request.transcripts else list(COLUMNS)
    table = csv.DictWriter(out, fieldnames=columns)
    table.writeheader()

    def write_csv(call: Call) -> None:
        row = _row(call)
        if request.transcripts:
            row["transcript"] = "\n".join(_transcript_line(s) for s in call.segments)
        table.writerow({key: _cell(value) for key, value in row.items()})

    return write_csv


def _row(call: Call) -> dict[str, Any]:
    metrics: CallMetrics | None = call.metrics
    return {
        "call_id": call.id,
        "line": call.line.name if call.line else None,
        "caller": call.caller_masked,
        "to_number": display_text.clean(call.to_number),
        "started_at": _iso(call.started_at),
        "answered_at": _iso(call.answered_at),
        "ended_at": _iso(call.ended_at),
        "end_reason": display_text.clean(call.end_reason) if call.end_reason else None,
        "outcome": call.outcome.value if call.outcome else None,
        "duration_ms": metrics.duration_ms if metrics else None,
        "turns": metrics.turns if metrics else None,
        "barge_ins": metrics.barge_ins if metrics else None,
        "backchannels": metrics.backchannels if metrics else None,
        "voice_to_voice_p50_ms": metrics.voice_to_voice_p50_ms if metrics else None,
        "voice_to_voice_p95_ms": metrics.voice_to_voice_p95_ms if metrics else None,
    }


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and _FORMULA.match(value):
        return "'" + value
    return value


def _segment(segment: TranscriptSegment) -> dict[str, Any]:
    return {
        "speaker": segment.speaker.value,
        "start_ms": segment.start_ms,
        "end_ms": segment.end_ms,
        "text": segment.text,
        "interrupted": segment.interrupted,
        "heard_text": segment.heard_text,
        "heard_ms": segment.heard_ms,
        "redaction": segment.redaction.value,
    }


def _transcript_line(segment: TranscriptSegment) -> str:
    spoken = segment.heard_text if segment.interrupted and segment.heard_text else segment.text
    return f"[{segment.start_ms / 1000:.1f}s] {segment.speaker.value}: {spoken}"


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None
