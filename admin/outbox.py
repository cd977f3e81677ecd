"""The worker side of the Redis carrier: ships one worker's spool to the events stream.

Runs as a thread in the media worker process. It reads the spool (the worker's durable outbox)
in bounded batches and adds each line to the stream with the event id in the entry. The spool
position is saved in Redis in the same MULTI/EXEC as the entries, so a batch is either shipped
and recorded or neither: nothing is shipped twice after a restart, and nothing is lost while
Redis is down, since the spool keeps growing on disk and is read again from the saved position.
Segments are deleted once shipped; from then on Redis holds the events (run it with AOF).
"""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

import redis

from admin.spool import Position, Quarantine, SpoolReader, decode_event

log = logging.getLogger(__name__)


class SpoolShipper:
    def __init__(
        self,
        spool: Path,
        client: redis.Redis,
        *,
        stream: str,
        source: str | None = None,
        batch_size: int = 500,
        poll_interval_s: float = 0.2,
        max_backoff_s: float = 5.0,
        quarantine: Quarantine,
    ) -> None:
        self.reader = SpoolReader(spool)
        self.client = client
        self.stream = stream
        self.offsets_key = f"{stream}:shipped"
        self.field = f"{source or socket.gethostname()}/{self.reader.name}"
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.max_backoff_s = max_backoff_s
        self.quarantine = quarantine
        self.shipped = 0
        self._position: Position | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="spool-shipper", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Ships what it can within `timeout_s`; the rest waits in the spool for next time."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        backoff, down_since_logged = self.poll_interval_s, False
        while True:
            try:
                shipped = self.ship_once()
            except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
                if not down_since_logged:
                    log.warning(
                        "redis unavailable; events wait in the spool",
                        extra={"error": type(error).__name__, "spool": self.reader.name},
                    )
                    down_since_logged = True
                self._position = None  # read it again from Redis when it is back
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            if down_since_logged:
                log.info("redis is back; shipping the spool", extra={"spool": self.reader.name})
                down_since_logged = False
            backoff = self.poll_interval_s
            if shipped == 0 and self._stop.wait(self.poll_interval_s):
                return
            if self._stop.is_set() and shipped == 0:
                return

    def ship_once(self) -> int:
        """Ships the next batch; returns how many lines it moved past (0: nothing waiting)."""
        if self._position is None:
            saved = self.client.hget(self.offsets_key, self.field)
            if isinstance(saved, bytes):
                saved = saved.decode()
            self._position = Position.decode(saved) if saved else Position()
        lines, after = self.reader.read(self._position, self.batch_size)
        if after == self._position:
            return 0
        pipe = self.client.pipeline(transaction=True)
        for line in lines:
            if not line.text:
                continue
            try:
                event = decode_event(line.text)
            except ValueError as error:
                self.quarantine.add(line.where, line.text, str(error))
                continue
            pipe.xadd(self.stream, {"id": event.event_id, "e": line.text})
        pipe.hset(self.offsets_key, self.field, after.encode())
        pipe.execute()
        self._position = after
        self.shipped += len(lines)
        self.reader.release(after)
        return max(1, len(lines))
