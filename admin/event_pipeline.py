"""Wires the event pipeline from the settings: the worker's shipper, the ingester process."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from admin.db import create_engine, session_factory
from admin.heartbeat import Heartbeat
from admin.ingest import REJECTED_FILE, Carrier, FileCarrier, Ingester, RedisCarrier
from admin.outbox import SpoolShipper
from admin.projection import Projection
from admin.settings import Settings
from admin.spool import Quarantine

log = logging.getLogger(__name__)


def redis_client(settings: Settings) -> redis.Redis:
    assert settings.redis_url is not None
    return redis.Redis.from_url(
        settings.redis_url, socket_timeout=5.0, socket_connect_timeout=2.0, health_check_interval=10
    )


def quarantine(settings: Settings) -> Quarantine:
    return Quarantine(settings.events_dir() / REJECTED_FILE)


def start_shipper(settings: Settings, spool: Path) -> SpoolShipper | None:
    """In a media worker: ships its spool to Redis, when Redis is the carrier."""
    if settings.events_carrier() != "redis":
        return None
    events = settings.events
    shipper = SpoolShipper(
        spool,
        redis_client(settings),
        stream=events.stream,
        source=events.source,
        batch_size=events.ship_batch_size,
        poll_interval_s=events.poll_interval_s,
        max_backoff_s=events.max_backoff_s,
        quarantine=quarantine(settings),
    )
    shipper.start()
    return shipper


def carrier(settings: Settings, *, consumer: str | None = None) -> Carrier:
    events = settings.events
    if settings.events_carrier() == "redis":
        return RedisCarrier(
            redis_client(settings),
            stream=events.stream,
            group=events.group,
            consumer=consumer,
            claim_idle_s=events.claim_idle_s,
            block_s=min(1.0, events.poll_interval_s * 5),
        )
    return FileCarrier(settings.events_dir(), poll_interval_s=events.poll_interval_s)


def build_ingester(
    settings: Settings,
    *,
    on_call_ended: Callable[[str], None] = lambda _call_id: None,
    consumer: str | None = None,
) -> tuple[Ingester, Any]:
    """The ingester and the database engine it writes through (dispose it when done)."""
    engine = create_engine(settings.database_url())
    keys = settings.keys()
    ingester = Ingester(
        carrier(settings, consumer=consumer),
        session_factory(engine),
        projection=Projection(
            number_key=keys.number_hash,
            audit_key=keys.audit_hmac,
            redaction=settings.redaction_policy,
        ),
        quarantine=quarantine(settings),
        batch_size=settings.events.batch_size,
        max_backoff_s=settings.events.max_backoff_s,
        on_call_ended=on_call_ended,
    )
    return ingester, engine


def post_call_hook(settings: Settings) -> Callable[[str], None]:
    """What the ingester does when a call has ended: queue its metrics rollup and redaction,
    when background jobs are enabled. A broker that is down costs nothing but a log line: the
    schedule's `parley.rollup_missing` rolls up such calls later."""
    if not settings.jobs.enabled:
        return lambda _call_id: None
    from admin.jobs.celery_app import create_app
    from admin.jobs.enqueue import JobsUnavailable, after_call

    app = create_app(settings)
    # The ingester never reads job results; without a result store, queueing a job touches
    # only the broker (a Redis result store that is down would retry for many seconds).
    app.conf.update(result_backend=None)

    def queue_post_call_jobs(call_id: str) -> None:
        try:
            after_call(call_id, app=app)
        except JobsUnavailable as error:
            log.warning(
                "post-call jobs not queued; the schedule will roll the call up later",
                extra={"call_id": call_id, "error": str(error)},
            )

    return queue_post_call_jobs


def heartbeat_path(settings: Settings) -> Path:
    """The file the ingester's loop touches while it turns (the supervisor's liveness probe)."""
    return settings.events_dir() / "ingest.alive"


def run_ingester(settings: Settings) -> int:
    """`parley ingest`: runs until SIGINT or SIGTERM."""
    try:
        ingester, engine = build_ingester(settings, on_call_ended=post_call_hook(settings))
    except RuntimeError as error:
        log.error("ingester cannot start", extra={"error": str(error)})
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _signum, _frame: stop.set())
    ingester.on_alive = Heartbeat(heartbeat_path(settings))
    log.info(
        "ingester ready",
        extra={"carrier": ingester.carrier.name, "backlog": ingester.carrier.backlog()},
    )
    try:
        ingester.run(stop)
    finally:
        ingester.carrier.close()
        engine.dispose()
    log.info("ingester stopped", extra=ingester.counters())
    return 0
