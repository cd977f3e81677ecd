"""Tells storage when a media worker's calls are gone: the `worker.reset` event.

A worker killed with SIGKILL (or hung, then killed) never writes `call.ended` for its calls.
Its spool tells instead: the worker writes `worker.reset` when it boots, and the supervisor
writes one when the worker exits or hangs, before starting it again. Each lands after every
event the dead process wrote, so the projection ends, as `worker_lost`, every call of that
worker that is still live when the reset is stored, and nothing written before is lost.

A worker is named by its index and its host (`events.source`, default the hostname): indexes
repeat across hosts. Its `call.started` events carry the host so that a reset on one host
never ends calls on another.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import uuid
from pathlib import Path

from telephony.events import CallEvent, CallEventKind, JsonlOutlet, keys_masked

log = logging.getLogger(__name__)

WORKER_LOST = "worker_lost"  # the end reason of each call a worker.reset ends


def worker_host(source: str | None) -> str:
    """The name the worker's events carry for its host: `events.source`, or the hostname."""
    return source or socket.gethostname()


def reset_event(*, worker: int, host: str, cause: str) -> CallEvent:
    """`worker.reset`: every call `worker` on `host` held before now is gone. `cause`:
    `boot` (the worker starts), `exited` or `hung` (the supervisor saw it go)."""
    event_id = uuid.uuid4().hex  # not a call: the event's own id stands in the call_id column
    data: dict[str, object] = {"worker": worker, "host": host, "cause": cause}
    return CallEvent(event_id, CallEventKind.WORKER_RESET, data, event_id=event_id)


def write_reset(spool: Path, *, worker: int, host: str, cause: str, segment_bytes: int) -> None:
    """Appends a reset to a worker's spool while no worker process writes it (the supervisor,
    between the worker's end and its restart)."""
    outlet = JsonlOutlet(spool, segment_bytes=segment_bytes)
    try:
        outlet.emit(reset_event(worker=worker, host=host, cause=cause))
    finally:
        outlet.close()
    log.info("worker reset written", extra={"worker": worker, "cause": cause})


class HostStampedSpool(JsonlOutlet):
    """A worker's spool outlet: adds the worker's host to its `call.started` events, and
    writes no key the caller pressed (telephony.events.keys_masked)."""

    def __init__(self, path: Path, *, host: str, segment_bytes: int) -> None:
        super().__init__(path, segment_bytes=segment_bytes)
        self.host = host

    def emit(self, event: CallEvent) -> None:
        if event.kind is CallEventKind.STARTED:
            event = dataclasses.replace(event, data={**event.data, "host": self.host})
        super().emit(keys_masked(event))
