"""/metrics/summary on a known set of calls: through the API on PostgreSQL, and the same SQL
on SQLite and PostgreSQL directly."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from sqlalchemy.orm import Session

from admin.api.metrics_summary import bucket_starts, summarize
from tests.api_data import Api, seed_calls

pytest_plugins = ["tests.db_support", "tests.api_support"]

# The four calls of tests.api_data.seed_calls, all between 09:00 and 09:04 UTC on 2026-03-01.
EXPECTED: dict[str, object] = {
    "calls": 4,
    "finished": 3,
    "containment_rate": 0.3333,  # 1 contained of 3 with an outcome
    "escalation_rate": 0.25,
    "escalation_rate_by_reason": {"caller_request": 0.25, "dtmf_zero": 0.25},
    "aht_ms": 60_000.0,  # both answered calls: 60 s from answer to end
    "asa_ms": 3_000.0,  # answered after 2 s and 4 s
    "escalation_asa_ms": 30_000.0,  # a supervisor connected 30 s after the request
    "voice_to_voice_p50_ms": 500,  # of 300, 500, 700 (nearest rank)
    "voice_to_voice_p95_ms": 700,
    "barge_ins_per_call": 0.5,  # 1 and 0
}
EMPTY: dict[str, object] = {
    "calls": 0,
    "finished": 0,
    "containment_rate": None,
    "escalation_rate": None,
    "escalation_rate_by_reason": {},
    "aht_ms": None,
    "asa_ms": None,
    "escalation_asa_ms": None,
    "voice_to_voice_p50_ms": None,
    "voice_to_voice_p95_ms": None,
    "barge_ins_per_call": None,
}


def _figures(bucket: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in bucket.items() if key not in ("start", "end")}


def test_the_summary_over_the_api(api: Api, client: httpx.Client) -> None:
    response = client.get(
        "/metrics/summary",
        params={"from": "2026-03-01T08:00:00Z", "to": "2026-03-01T11:00:00Z", "bucket": "hour"},
        headers=api.actors["supervisor"].bearer(),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"], body["bucket"]) == (
        "2026-03-01T08:00:00Z",
        "2026-03-01T11:00:00Z",
        "hour",
    )
    assert _figures(body["total"]) == EXPECTED
    assert [b["start"] for b in body["buckets"]] == [
        "2026-03-01T08:00:00Z",
        "2026-03-01T09:00:00Z",
        "2026-03-01T10:00:00Z",
    ]
    assert [_figures(b) for b in body["buckets"]] == [EMPTY, EXPECTED, EMPTY]
    assert body["models"] == MODELS


# Side by side: the embedded engine's two turns (300, 500 ms) and a hosted model's one.
MODELS = [
    {
        "model": "gpt-realtime",
        "turns": 1,
        "voice_to_voice_p50_ms": 700,
        "voice_to_voice_p95_ms": 700,
        "endpointing_ms": None,
        "first_audio_ms": None,
    },
    {
        "model": "parley-embedded",
        "turns": 2,
        "voice_to_voice_p50_ms": 300,
        "voice_to_voice_p95_ms": 500,
        "endpointing_ms": 200.0,
        "first_audio_ms": 100.0,
    },
]


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
        {"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z", "bucket": "hour"},
        {"from": "2026-03-01T00:00:00Z", "to": "2026-03-02T00:00:00Z", "bucket": "week"},
        {"from": "2026-03-01T00:00:00Z"},
    ],
)
def test_bad_ranges_are_422(api: Api, client: httpx.Client, params: dict[str, str]) -> None:
    response = client.get("/metrics/summary", params=params, headers=api.actors["admin"].bearer())
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


def test_the_same_figures_on_both_databases(session: Session) -> None:
    seed_calls(session)
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    summary = summarize(session, start=start, end=start + dt.timedelta(days=2), bucket="day")
    assert _figures(summary.total.model_dump()) == EXPECTED
    assert [_figures(b.model_dump()) for b in summary.buckets] == [EXPECTED, EMPTY]
    assert [m.model_dump() for m in summary.models] == MODELS
    hourly = summarize(session, start=start, end=start + dt.timedelta(days=1), bucket="hour")
    assert len(hourly.buckets) == 24
    assert _figures(hourly.buckets[9].model_dump()) == EXPECTED


def test_buckets_align_to_utc_and_refuse_too_many() -> None:
    start = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    starts = bucket_starts(start, start + dt.timedelta(hours=2), "hour")
    assert starts == [dt.datetime(2026, 3, 1, hour, tzinfo=dt.UTC) for hour in (7, 8, 9)]
    assert bucket_starts(start, start + dt.timedelta(minutes=1), "day") == [
        dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    ]
    with pytest.raises(ValueError, match="more than 2000"):
        bucket_starts(start, start + dt.timedelta(days=100), "hour")
