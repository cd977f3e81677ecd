"""Which stored call events a live watcher has not been sent yet.

Events are read by `received_at`, which each writer stamps before its transaction commits, so
an event can become visible a little after later-stamped ones. Each poll therefore looks back
LAG before the newest time already sent and skips the ids it has sent. (When call_events gets
an insertion-order cursor column, `poll` is the one place to switch to it.)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from admin.models import CallEventRecord, utcnow

LAG = dt.timedelta(seconds=2)


@dataclass
class FeedPosition:
    watermark: dt.datetime  # the newest received_at sent (or the time the watcher joined)
    sent: dict[str, dt.datetime] = field(default_factory=dict)  # ids sent within the lag window


def start(session: Session) -> FeedPosition:
    """A position from which only events stored from now on are new."""
    newest = session.scalar(select(func.max(CallEventRecord.received_at)))
    now = utcnow()
    watermark = max(newest, now) if newest is not None else now
    recent = session.execute(
        select(CallEventRecord.event_id, CallEventRecord.received_at).where(
            CallEventRecord.received_at >= watermark - LAG
        )
    ).all()
    return FeedPosition(watermark, {event_id: at for event_id, at in recent})


def poll(session: Session, position: FeedPosition) -> list[CallEventRecord]:
    """The events stored since the last poll, oldest first; advances `position`."""
    rows = session.scalars(
        select(CallEventRecord)
        .where(CallEventRecord.received_at >= position.watermark - LAG)
        .order_by(CallEventRecord.received_at, CallEventRecord.event_id)
    ).all()
    new = [row for row in rows if row.event_id not in position.sent]
    for row in new:
        position.sent[row.event_id] = row.received_at
        position.watermark = max(position.watermark, row.received_at)
    horizon = position.watermark - LAG
    position.sent = {event_id: at for event_id, at in position.sent.items() if at >= horizon}
    return new
