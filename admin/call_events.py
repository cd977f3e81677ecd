"""Storing call events from the media workers: each event id is stored once, however often
the spool is replayed."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from admin.models import CallEventRecord
from telephony.events import CallEvent

_EVENT_ID = re.compile(r"[0-9a-f]{32}")
_BATCH = 500  # rows per INSERT, well under SQLite's limit on bound parameters


def store_events(session: Session, events: Iterable[CallEvent]) -> int:
    """Inserts the events whose ids are new (INSERT … ON CONFLICT DO NOTHING); returns how many.

    Raises ValueError, naming the event, for an id that is not a UUID hex string; nothing of
    that batch is written.
    """
    return len(insert_new_events(session, events))


def insert_new_events(session: Session, events: Iterable[CallEvent]) -> list[CallEvent]:
    """Like `store_events`, but returns the events that were new, in the order given (an id
    repeated within `events` counts once)."""
    given = list(events)
    rows = [_row(event) for event in given]
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    inserted: set[str] = set()
    for start in range(0, len(rows), _BATCH):
        batch: Sequence[dict[str, Any]] = rows[start : start + _BATCH]
        statement = (
            insert(CallEventRecord)
            .values(batch)
            .on_conflict_do_nothing(index_elements=[CallEventRecord.event_id])
            .returning(CallEventRecord.event_id)  # only the rows actually inserted
        )
        inserted.update(session.scalars(statement).all())
    new: list[CallEvent] = []
    for event in given:
        if event.event_id in inserted:
            inserted.discard(event.event_id)
            new.append(event)
    return new


def _row(event: CallEvent) -> dict[str, Any]:
    if not _EVENT_ID.fullmatch(event.event_id):
        raise ValueError(
            f"call event {event.event_id!r} ({event.kind.value}): the id must be 32 lowercase "
            "hex digits (uuid4().hex)"
        )
    return {
        "event_id": event.event_id,
        "call_id": event.call_id,
        "kind": event.kind.value,
        "occurred_at": dt.datetime.fromtimestamp(event.t_wall, dt.UTC),
        "t_mono_ns": event.t_mono_ns,
        "data": event.data,
    }
