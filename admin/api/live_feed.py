"""Which stored call events a live watcher has not been sent yet.

`call_events.seq` numbers rows in commit order (the ingester serializes its inserts, so a
higher seq is never committed before a lower one): a watcher's position is the last seq it was
sent, and each poll reads the events after it, in seq order, from the primary key's index.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from admin.models import CallEventRecord

BATCH = 1000  # events per poll; a watcher behind by more catches up over the next polls


@dataclass
class FeedPosition:
    last_seq: int  # the newest seq sent (or the newest stored when the watcher joined)


def start(session: Session) -> FeedPosition:
    """A position from which only events stored from now on are new."""
    newest = session.scalar(select(func.max(CallEventRecord.seq)))
    return FeedPosition(newest or 0)


def poll(session: Session, position: FeedPosition, *, limit: int = BATCH) -> list[CallEventRecord]:
    """The events stored after `position`, oldest first (at most `limit`); advances it."""
    rows = list(
        session.scalars(
            select(CallEventRecord)
            .where(CallEventRecord.seq > position.last_seq)
            .order_by(CallEventRecord.seq)
            .limit(limit)
        )
    )
    if rows:
        position.last_seq = rows[-1].seq
    return rows
