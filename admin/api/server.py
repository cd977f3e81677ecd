"""`parley api`: the admin API under uvicorn, on settings.http_host:http_port."""

from __future__ import annotations

import uvicorn

from admin.api.app import create_app_from_settings
from admin.settings import Settings


def serve(settings: Settings) -> None:
    app = create_app_from_settings(settings)
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        access_log=False,  # admin.api.access_log logs requests without their query strings
        log_config=None,  # keep Parley's structured logging (admin.logs)
        ws="websockets-sansio",
    )
