"""The Celery app, configured from Parley's settings.

Broker and result store: Redis when `redis_url` is set (production, CI); otherwise kombu's
filesystem transport (message files in `<data_dir>/jobs/queue`) with results in a SQLite file,
so `parley run` runs real background jobs with no server to install. docs/jobs.md says why the
filesystem transport and not kombu's SQLAlchemy one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery
from celery.schedules import crontab

from admin.jobs.tasks import JobContext, register_tasks
from admin.settings import Settings

PURGE_TASK = "parley.purge_expired"
HEAL_TASK = "parley.rollup_missing"
CHECKPOINT_TASK = "parley.audit_checkpoint"
_POLL_S = 0.1  # how often the no-server worker looks for new message files
_RESULTS_KEPT_S = 7 * 24 * 3600
# Redis re-delivers an unacknowledged job after this long; an export may take a while and jobs
# acknowledge only when done (task_acks_late), so it must outlast the longest job.
_REDIS_VISIBILITY_S = 6 * 3600


def create_app(settings: Settings) -> Celery:
    """A Celery app with Parley's jobs registered, talking to the configured broker."""
    app = Celery("parley", set_as_current=False)
    app.conf.update(broker_config(settings))
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=settings.jobs.queue,
        task_acks_late=True,  # every job is idempotent: one cut short by a crash runs again
        task_reject_on_worker_lost=True,
        task_track_started=True,
        result_extended=True,  # results carry the job's name, arguments and retries
        result_expires=_RESULTS_KEPT_S,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,  # admin.logs formats every Parley process's logs
        broker_connection_retry_on_startup=True,
        enable_utc=True,
        timezone="UTC",
        beat_schedule=beat_schedule(settings),
        beat_schedule_filename=str(jobs_dir(settings) / "beat-schedule"),
    )
    register_tasks(app, JobContext(settings))
    return app


def broker_config(settings: Settings) -> dict[str, Any]:
    if settings.redis_url:
        return {
            "broker_url": settings.redis_url,
            "result_backend": settings.redis_url,
            "broker_transport_options": {"visibility_timeout": _REDIS_VISIBILITY_S},
            "result_backend_transport_options": {"retry_policy": {"timeout": 5.0}},
        }
    folder = jobs_dir(settings)
    queue, control = folder / "queue", folder / "control"
    for path in (queue, control):
        path.mkdir(parents=True, exist_ok=True)
    return {
        "broker_url": "filesystem://",
        "broker_transport_options": {
            # One folder both ways: whoever sends writes a file, the worker claims it.
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            # Exchange tables; kombu's default is ./control in the working directory.
            "control_folder": str(control),
            "store_processed": False,
            "polling_interval": _POLL_S,
        },
        "result_backend": f"db+sqlite:///{(folder / 'results.db').resolve()}",
        # The filesystem transport has no broadcast: no remote control, no worker events.
        "worker_enable_remote_control": False,
    }


def jobs_dir(settings: Settings) -> Path:
    return settings.jobs.embedded_dir or settings.data_dir / "jobs"


def uses_redis(settings: Settings) -> bool:
    return settings.redis_url is not None


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    minute, hour, day_of_month, month_of_year, day_of_week = settings.jobs.purge_schedule.split()
    try:
        schedule = crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
        )
    except ValueError as error:
        raise ValueError(f"jobs.purge_schedule {settings.jobs.purge_schedule!r}: {error}") from None
    return {
        "retention purge": {"task": PURGE_TASK, "schedule": schedule},
        "missing metrics": {"task": HEAL_TASK, "schedule": settings.jobs.heal_interval_s},
        "audit checkpoint": {
            "task": CHECKPOINT_TASK,
            "schedule": settings.audit.checkpoint_interval_s,
        },
    }
