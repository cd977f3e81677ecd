"""The worker side of the Redis carrier: ships one worker's spool to the events stream.

Runs as a thread in the media worker process. It reads the spool (the worker's durable outbox)
in bounded batches and adds each line to the stream with the event id in the entry. The spool
position is saved in Redis in the same MULTI/EXEC as the entries, so a batch is either shipped
and recorded or neither: nothing is shipped twice after a restart, and nothing is lost while
Redis is down, since the spool keeps growing on disk and is read again from the saved position.
Segments are deleted once shipped; from then on Redis holds the events (run it with AOF).

Whatever goes wrong (Redis down, or answering with an error such as OOM, MISCONF or READONLY;
the spool unreadable) the thread stays alive: it logs the trouble once, counts it, waits with a
doubling pause and reads again from the saved position. A refused MULTI/EXEC applies nothing,
so the retry ships each line once.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
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
        self.shipped = 0  # spool lines moved past (shipped, or quarantined as not events)
        self.stalls = 0  # times shipping stopped: Redis or the spool failing
        self.errors = 0  # failed attempts while stalled
        self.stalled_since: float | None = None  # monotonic time; None while shipping
        self._errors_before = 0  # errors before the stall in progress
        self._position: Position | None = None
        self._quarantined: set[str] = set()  # lines of the batch in hand, quarantined already
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def counters(self) -> dict[str, int]:
        return {
            "shipped": self.shipped,
            "stalls": self.stalls,
            "errors": self.errors,
            "stalled": int(self.stalled_since is not None),
        }

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="spool-shipper", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Ships what it can within `timeout_s`; the rest waits in the spool for next time."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        backoff = self.poll_interval_s
        while True:
            try:
                shipped = self.ship_once()
            except Exception as error:  # any failure stalls shipping; the thread must live on
                self._stalled(error)
                self._position = None  # read it again from Redis when it is back
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            self._resumed()
            backoff = self.poll_interval_s
            if shipped == 0 and self._stop.wait(self.poll_interval_s):
                return
            if self._stop.is_set() and shipped == 0:
                return

    def _stalled(self, error: Exception) -> None:
        self.errors += 1
        if self.stalled_since is not None:
            return
        self.stalled_since = time.monotonic()
        self.stalls += 1
        self._errors_before = self.errors - 1
        where = {"spool": self.reader.name, "error": type(error).__name__}
        if isinstance(error, redis.RedisError):
            detail = _redis_words(error)
            log.warning(
                "redis unavailable; events wait in the spool", extra={**where, "detail": detail}
            )
        else:
            log.warning("shipping failed; events wait in the spool", exc_info=error, extra=where)

    def _resumed(self) -> None:
        if self.stalled_since is None:
            return
        log.info(
            "redis is back; shipping the spool",
            extra={
                "spool": self.reader.name,
                "outage_s": round(time.monotonic() - self.stalled_since, 1),
                "retries": self.errors - self._errors_before,
            },
        )
        self.stalled_since = None

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
                if line.where not in self._quarantined:  # once, however often this is retried
                    self.quarantine.add(line.where, line.text, str(error))
                    self._quarantined.add(line.where)
                continue
            pipe.xadd(self.stream, {"id": event.event_id, "e": line.text})
        pipe.hset(self.offsets_key, self.field, after.encode())
        pipe.execute()
        self._quarantined.clear()
        self._position = after
        self.shipped += len(lines)
        self.reader.release(after)
        return max(1, len(lines))


def _redis_words(error: redis.RedisError) -> str:
    """Redis's own words for an error (OOM, MISCONF, READONLY…), which name the cause, without
    the command redis-py quotes for an error in a pipeline (it holds the start of an event)."""
    text = str(error)
    _, quoted, words = text.partition("of pipeline caused error: ")
    return (words if quoted else text)[:200]
