"""Handing work to the jobs worker from other processes (the event ingester, the CLI)."""

from __future__ import annotations

import functools
from typing import Any

from celery import Celery
from celery.result import AsyncResult
from kombu.exceptions import OperationalError as BrokerError

from admin.jobs.calls import check_call_id
from admin.jobs.errors import JobInputError

ROLLUP = "parley.rollup_call"
REDACT = "parley.redact_call"
EXPORT = "parley.export_calls"
PURGE = "parley.purge_expired"


class JobsUnavailable(RuntimeError):
    """The broker did not take the job; nothing was queued, so the caller should try again."""


@functools.cache
def default_app() -> Celery:
    """The app for this process's settings, built once."""
    from admin.jobs.celery_app import create_app
    from admin.settings import get_settings

    return create_app(get_settings())


def after_call(call_id: str, *, app: Celery | None = None) -> tuple[str, str]:
    """Queues the post-call jobs of a finished call: metrics rollup, then transcript redaction.

    They are independent jobs, not a chain: a call whose metrics cannot be computed still gets
    its transcript redacted. Returns both task ids. Raises ValueError for a malformed call id
    and JobsUnavailable when the broker cannot be reached.
    """
    try:
        check_call_id(call_id)
    except JobInputError as error:
        raise ValueError(str(error)) from None
    target = app or default_app()
    return send(target, ROLLUP, call_id).id, send(target, REDACT, call_id).id


def send(app: Celery, name: str, *args: Any, **kwargs: Any) -> AsyncResult[Any]:
    try:
        return app.send_task(name, args=args, kwargs=kwargs)
    except BrokerError as error:
        raise JobsUnavailable(
            f"could not queue {name}: the jobs broker is unreachable ({error}); "
            "check redis_url or that the jobs folder is writable, then try again"
        ) from error
