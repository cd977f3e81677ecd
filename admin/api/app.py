"""The API's composition root: routers, error handling, logging and the shared context."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy import select, text
from starlette.concurrency import run_in_threadpool

from admin.api import errors
from admin.api.access_log import AccessLog
from admin.api.context import ApiContext
from admin.api.control_plane import ControlPlane
from admin.api.deps import DbSession
from admin.api.metrics_registry import platform_registry
from admin.api.routes import (
    api_keys,
    audit,
    auth,
    call_control,
    calls,
    compliance,
    disclosures,
    escalations,
    lines,
    live,
    metrics,
    prometheus,
    supervision,
    users,
)
from admin.db import create_engine, session_factory
from admin.models import Line
from escalation.service import DEFAULT_QUEUE
from telephony.fanout import RedisChannel

DESCRIPTION = """Parley's admin API: calls and their transcripts, disclosures, metrics, lines,
users, API keys and the audit log. People log in at `POST /auth/token` and send
`Authorization: Bearer <token>`; systems send `X-API-Key: <key>`. Every error is
`{"error": {"code", "message", "details"}}`. See docs/api.md; `GET /metrics` (Prometheus,
no login) in docs/operators.md."""


def create_app(context: ApiContext) -> FastAPI:
    app = FastAPI(
        title="Parley admin API", version="1", description=DESCRIPTION, lifespan=_lifespan
    )
    app.state.context = context
    app.state.board_feed = None
    routers = (
        auth,
        calls,
        call_control,
        escalations,
        supervision,
        metrics,
        disclosures,
        lines,
        users,
        api_keys,
        audit,
        compliance,
        live,
        prometheus,
    )
    for module in routers:
        app.include_router(module.router)
    app.add_api_route("/healthz", healthz, methods=["GET"], tags=["health"])
    # Imported here: the dashboard builds on admin.api (its masking, auth and roles).
    from admin.dashboard import audio as dashboard_audio
    from admin.dashboard import routes as dashboard

    app.include_router(dashboard.router)
    app.include_router(dashboard_audio.router)
    app.mount("/static", StaticFiles(directory=dashboard.STATIC), name="static")
    errors.install(app)
    app.add_middleware(AccessLog)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Starts the dashboard's board feed where the context names a live source."""
    context: ApiContext = app.state.context
    if context.live_source is None:
        yield
        return

    from admin.dashboard.feed import BoardFeed

    async def line_queue(line: str) -> str | None:
        return await run_in_threadpool(_line_queue, context, line)

    feed = BoardFeed(context.live_source, line_queue=line_queue)
    app.state.board_feed = feed
    task = asyncio.create_task(feed.run(), name="parley-board-feed")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        app.state.board_feed = None


def _line_queue(context: ApiContext, line: str) -> str | None:
    """The queue a line's escalations go to; None for a line not in the database."""
    with context.sessions() as session:
        row = session.execute(select(Line.id, Line.queue).where(Line.name == line)).first()
    return None if row is None else (row.queue or DEFAULT_QUEUE)


def healthz(session: DbSession) -> dict[str, str]:
    """Whether the API can reach its database (503 in the error shape if not). No login."""
    session.execute(text("SELECT 1"))
    return {"status": "ok"}


def create_app_from_settings(settings: Any) -> FastAPI:
    """The app for `settings` (admin.settings.Settings), with its own database engine."""
    url = settings.database_url()
    options: dict[str, Any] = {"hide_parameters": True}  # no values in error messages or logs
    if url.startswith("postgresql"):
        options["connect_args"] = {"connect_timeout": 5}
    engine = create_engine(url, **options)
    context = ApiContext(
        sessions=session_factory(engine),
        keys=settings.keys(),
        token_minutes=settings.security.access_token_minutes,
        metrics=platform_registry(settings),
        control=ControlPlane.from_settings(settings),
        live_source=RedisChannel(settings.redis_url) if settings.redis_url else settings.run_dir(),
        checkpoint_file=settings.checkpoint_file(),
        recordings=settings.recording_store(),
        data_files=settings.data_files(),
    )
    return create_app(context)
