"""`parley jobs ...`: run the jobs worker, start an export and follow it, purge now, look up a job.

Imports Celery only when a command runs, so `parley --help` stays quick.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("parley")

_FOLLOW_INTERVAL_S = 0.5


def add_parser(sub: Any, func: Callable[[argparse.Namespace], int]) -> None:
    """Adds `jobs` and its actions to the `parley` parser; each runs `func`."""
    jobs = sub.add_parser("jobs", help="background jobs: the worker, exports, retention purge")
    actions = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")

    worker = actions.add_parser(
        "worker", help="run the jobs worker (parley run starts one), with the schedule"
    )
    worker.add_argument("--no-beat", action="store_true", help="do not run the schedule here")

    export = actions.add_parser("export", help="export calls in a time range and follow progress")
    export.add_argument("--from", dest="start", required=True, help="e.g. 2025-01-01T00:00:00Z")
    export.add_argument("--to", dest="end", required=True, help="end of the range (exclusive)")
    export.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    export.add_argument("--transcripts", action="store_true", help="include transcripts")
    export.add_argument("--line", help="only this line's calls")
    export.add_argument("--no-wait", action="store_true", help="print the job id and return")

    purge = actions.add_parser("purge", help="run the retention purge now and wait for it")
    purge.add_argument("--no-wait", action="store_true", help="print the job id and return")

    status = actions.add_parser("status", help="a job's state, progress and result as JSON")
    status.add_argument("job_id")
    for parser in (worker, export, purge, status):
        parser.set_defaults(func=func)


def run(args: argparse.Namespace, settings: Any) -> int:
    if args.jobs_command == "worker":
        return _worker(settings, beat=settings.jobs.beat and not args.no_beat)
    from admin.jobs.enqueue import EXPORT, PURGE, JobsUnavailable, default_app, send

    app = default_app()
    try:
        if args.jobs_command == "status":
            print(json.dumps(_describe(app.AsyncResult(args.job_id)), indent=2))
            return 0
        if args.jobs_command == "export":
            kwargs = {
                "format": args.format,
                "transcripts": args.transcripts,
                "line": args.line,
                "actor": f"cli:{getpass.getuser()}",
            }
            result = send(app, EXPORT, args.start, args.end, **kwargs)
        else:
            result = send(app, PURGE)
    except JobsUnavailable as error:
        print(f"parley jobs: {error}", file=sys.stderr)
        return 2
    print(result.id, flush=True)
    return 0 if args.no_wait else _follow(result)


def _worker(settings: Any, *, beat: bool) -> int:
    from admin.jobs.celery_app import create_app
    from admin.logs import configure

    configure("jobs", level=settings.log_level, fmt=settings.log_format)
    unknown = sorted(set(settings.jobs.lines) - {line.name for line in settings.lines})
    if unknown:
        # Lines may live only in the database; a typo here would silently use the defaults.
        log.warning("jobs.lines names lines not in the settings", extra={"lines": unknown})
    try:
        app = create_app(settings)
    except ValueError as error:
        print(f"parley jobs: {error}", file=sys.stderr)
        return 2
    argv = [
        "worker",
        f"--queues={settings.jobs.queue}",
        f"--concurrency={settings.jobs.concurrency}",
        f"--hostname=parley-jobs-{settings.jobs.queue}@{socket.gethostname()}",
        f"--loglevel={settings.log_level}",
        "--without-mingle",  # one worker per queue in Parley's layout: nobody to sync with
        "--without-gossip",
    ]
    if beat:
        argv.append("--beat")  # its schedule file: beat_schedule_filename
    log.info(
        "jobs worker is starting",
        extra={
            "broker": "redis" if settings.redis_url else "filesystem",
            "queue": settings.jobs.queue,
            "beat": beat,
        },
    )
    app.worker_main(argv)
    return 0


def _follow(result: Any) -> int:
    """Prints progress to stderr until the job ends; its result goes to stdout."""
    last: Any = None
    while True:
        state = result.state
        info = result.info
        if state == "PROGRESS" and isinstance(info, dict) and info != last:
            print(f"{info.get('done')}/{info.get('total')} calls", file=sys.stderr, flush=True)
            last = info
        if result.ready():
            break
        time.sleep(_FOLLOW_INTERVAL_S)
    if result.successful():
        print(json.dumps(result.result, indent=2))
        return 0
    print(f"parley jobs: job {result.id} failed: {result.result}", file=sys.stderr)
    return 1


def _describe(result: Any) -> dict[str, Any]:
    info = result.info
    shown = info if isinstance(info, dict | list | str | int | float | None) else repr(info)
    return {"id": result.id, "state": result.state, "info": shown}
