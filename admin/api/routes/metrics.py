"""Contact-center figures over a range, in hour or day buckets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from admin.api import metrics_summary
from admin.api.deps import Context, DbSession, MetricsReader
from admin.api.errors import ERROR_RESPONSES, ApiError, ErrorDetail
from admin.api.metrics_summary import Bucket
from admin.api.schemas import MetricsSummary, Timestamp

router = APIRouter(prefix="/metrics", tags=["metrics"], responses=ERROR_RESPONSES)


@router.get("/summary", response_model=MetricsSummary)
def summary(
    _principal: MetricsReader,
    context: Context,
    session: DbSession,
    start: Annotated[Timestamp, Query(alias="from", description="calls started at or after")],
    end: Annotated[Timestamp, Query(alias="to", description="calls started before")],
    bucket: Bucket = "hour",
) -> MetricsSummary:
    """Calls, containment, escalations by reason, AHT, ASA, voice-to-voice p50/p95 and
    barge-ins per call, for the whole range and per UTC-aligned bucket; service level and
    abandonment per escalation queue."""
    targets = context.control.service_level_targets if context.control else {}
    try:
        return metrics_summary.summarize(
            session, start=start, end=end, bucket=bucket, service_level_targets=targets
        )
    except ValueError as error:
        detail = ErrorDetail(loc=["query", "to"], message=str(error), type="value_error")
        raise ApiError(422, "the request is not valid; see details", details=[detail]) from None
