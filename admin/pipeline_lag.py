"""How far behind the event pipeline is, as Prometheus figures, measured from the outside.

A media worker appends its events to a spool; the next stage moves a saved position through
it: the ingester (embedded carrier: `ingest-offsets.json` in the events folder) or the worker's
shipper (Redis carrier: the `<stream>:shipped` hash). The backlog is what lies past that
position, in bytes and in the age of its oldest event. With Redis, the ingesters' consumer
group reports what it has not read yet (lag) and not acknowledged (pending).

Each scrape reads the positions and one line per spool: cheap, and nothing here writes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from redis.backoff import NoBackoff
from redis.retry import Retry

from admin.ingest import OFFSETS_FILE
from admin.spool import Position, SpoolReader, decode_event
from telephony.events import spools_in

log = logging.getLogger(__name__)

REDIS_TIMEOUT_S = 0.5


@dataclass(frozen=True, slots=True)
class RedisStream:
    """Where the Redis carrier keeps the events, and how this host's spools are named there."""

    client: redis.Redis
    stream: str
    group: str
    source: str  # the shipper's prefix for this host's spools (events.source, or the host name)

    @property
    def offsets_key(self) -> str:
        return f"{self.stream}:shipped"


def file_positions(events_dir: Path) -> dict[str, Position]:
    """The ingester's saved positions, by spool name; {} when it has saved none."""
    try:
        raw = json.loads((events_dir / OFFSETS_FILE).read_text())
        return {str(name): Position.decode(str(value)) for name, value in raw.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, AttributeError) as error:
        log.warning("ingest offsets unreadable for metrics", extra={"error": str(error)})
        return {}


def shipped_positions(stream: RedisStream) -> dict[str, Position]:
    """The shippers' saved positions of this host's spools; raises redis.RedisError."""
    raw: dict[Any, Any] = stream.client.hgetall(stream.offsets_key)
    prefix = f"{stream.source}/"
    found = {}
    for key, value in raw.items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        text = value.decode() if isinstance(value, bytes) else str(value)
        if name.startswith(prefix):
            try:
                found[name.removeprefix(prefix)] = Position.decode(text)
            except ValueError:
                continue
    return found


def oldest_age_s(reader: SpoolReader, position: Position, now: float) -> float | None:
    """Seconds since the first event past `position` was emitted; 0 when none waits, None
    when the line there is not an event (the pipeline quarantines it)."""
    lines, _ = reader.read(position, 1)
    if not lines:
        return 0.0
    try:
        event = decode_event(lines[0].text)
    except ValueError:
        return None
    return max(0.0, now - event.t_wall)


class PipelineCollector:
    """The event pipeline's backlog, per spool in `events_dir` (and the Redis group's)."""

    def __init__(self, events_dir: Path, *, redis_stream: RedisStream | None = None) -> None:
        self.events_dir = events_dir
        self.redis_stream = redis_stream

    def collect(self) -> Iterator[Metric]:
        backlog = GaugeMetricFamily(
            "parley_events_spool_backlog_bytes",
            "Bytes of events a worker has spooled that the next stage (ingester, or shipper to "
            "Redis) has not taken yet",
            labels=["spool"],
        )
        age = GaugeMetricFamily(
            "parley_events_spool_backlog_age_seconds",
            "Age of the oldest spooled event not taken yet (0: none waits)",
            labels=["spool"],
        )
        positions = self._positions()
        if positions is not None:
            now = time.time()
            for spool in spools_in(self.events_dir):
                reader = SpoolReader(spool)
                position = positions.get(reader.name, Position())
                try:
                    backlog.add_metric([reader.name], reader.backlog_bytes(position))
                    oldest = oldest_age_s(reader, position, now)
                except OSError:
                    continue
                if oldest is not None:
                    age.add_metric([reader.name], oldest)
        yield backlog
        yield age
        if self.redis_stream is not None:
            yield from self._stream_figures(self.redis_stream)

    def _positions(self) -> dict[str, Position] | None:
        if self.redis_stream is None:
            return file_positions(self.events_dir)
        try:
            return shipped_positions(self.redis_stream)
        except redis.RedisError:
            return None  # said by parley_events_stream_up

    def _stream_figures(self, stream: RedisStream) -> Iterator[Metric]:
        up = GaugeMetricFamily("parley_events_stream_up", "1 when the Redis stream answered")
        lag = GaugeMetricFamily(
            "parley_events_stream_lag",
            "Events in the Redis stream the ingesters' group has not read yet",
            labels=["group"],
        )
        pending = GaugeMetricFamily(
            "parley_events_stream_pending",
            "Events the ingesters have read but not stored and acknowledged yet",
            labels=["group"],
        )
        try:
            groups: list[dict[Any, Any]] = stream.client.xinfo_groups(stream.stream)
        except redis.ResponseError:
            groups = []  # no stream yet: nothing was shipped
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        for info in groups:
            name = info.get("name")
            group = name.decode() if isinstance(name, bytes) else str(name)
            if group != stream.group:
                continue
            if isinstance(info.get("lag"), int):
                lag.add_metric([group], info["lag"])
            if isinstance(info.get("pending"), int):
                pending.add_metric([group], info["pending"])
        yield up
        yield lag
        yield pending


def redis_stream(
    url: str, *, stream: str, group: str, source: str, timeout_s: float = REDIS_TIMEOUT_S
) -> RedisStream:
    """A RedisStream with a client that gives up fast: a scrape must not hang on Redis."""
    client = redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),  # the next scrape is the retry
    )
    return RedisStream(client, stream, group, source)
