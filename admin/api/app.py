"""The API's composition root: routers, error handling, logging and the shared context."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import text

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

DESCRIPTION = """Parley's admin API: calls and their transcripts, disclosures, metrics, lines,
users, API keys and the audit log. People log in at `POST /auth/token` and send
`Authorization: Bearer <token>`; systems send `X-API-Key: <key>`. Every error is
`{"error": {"code", "message", "details"}}`. See docs/api.md; `GET /metrics` (Prometheus,
no login) in docs/operators.md."""


def create_app(context: ApiContext) -> FastAPI:
    app = FastAPI(title="Parley admin API", version="1", description=DESCRIPTION)
    app.state.context = context
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
        live,
        prometheus,
    )
    for module in routers:
        app.include_router(module.router)
    app.add_api_route("/healthz", healthz, methods=["GET"], tags=["health"])
    errors.install(app)
    app.add_middleware(AccessLog)
    return app


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
    )
    return create_app(context)
