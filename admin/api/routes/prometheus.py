"""GET /metrics: the platform's figures in the Prometheus text format, for a scraper.

No login: the figures are counts, durations and states, never personal data, and a scraper
rarely holds a token. Keep the API's port off networks that should not see them.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as CONTENT_TYPE

from admin.api.deps import Context

router = APIRouter(tags=["health"])


# Not in the OpenAPI document: a scraper's endpoint, not part of the admin API's contract
# (tests/test_api_roles.py checks that every documented route needs a login or is listed).
@router.get("/metrics", response_class=Response, include_in_schema=False)
def metrics(context: Context) -> Response:
    """The API process's figures, the media workers', the SIP edge's and the event
    pipeline's backlog (docs/operators.md, "Metrics"). No login."""
    return Response(generate_latest(context.metrics), media_type=CONTENT_TYPE)
