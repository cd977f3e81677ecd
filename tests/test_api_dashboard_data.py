"""What the dashboard reads beyond the board: a call's audit trail (GET /audit?target=) and
service level and abandonment per queue (GET /metrics/summary's `queues`)."""

from __future__ import annotations

import datetime as dt
import uuid

import httpx
from sqlalchemy.orm import Session

from admin import audit
from admin.api.metrics_summary import summarize
from tests.api_data import KEYS, Api, seed_calls

pytest_plugins = ["tests.db_support", "tests.api_support"]


def test_the_audit_log_filtered_to_one_calls_trail_pages_within_the_filter(
    api: Api, client: httpx.Client
) -> None:
    mine, other = f"call:{uuid.uuid4().hex}", f"call:{uuid.uuid4().hex}"
    with api.sessions() as session:
        for n in range(5):
            for target in (mine, other):
                audit.append(
                    session, key=KEYS.audit_hmac, actor="user:ada", action=f"call.hold{n}",
                    target=target,
                )  # fmt: skip
        session.commit()
    auditor = api.actors["auditor"].bearer()
    first = client.get("/audit", params={"target": mine, "limit": 3}, headers=auditor).json()
    assert [e["target"] for e in first["items"]] == [mine] * 3
    assert [e["action"] for e in first["items"]] == ["call.hold4", "call.hold3", "call.hold2"]
    rest = client.get(
        "/audit", params={"target": mine, "limit": 3, "cursor": first["next_cursor"]},
        headers=auditor,
    ).json()  # fmt: skip
    assert [e["action"] for e in rest["items"]] == ["call.hold1", "call.hold0"]
    assert rest["next_cursor"] is None
    # A cursor is good only for the filter it came with.
    moved = client.get(
        "/audit", params={"target": other, "cursor": first["next_cursor"]}, headers=auditor
    )
    assert moved.status_code == 400 and moved.json()["error"]["code"] == "bad_cursor"
    nobody = client.get("/audit", params={"target": "call:none"}, headers=auditor).json()
    assert nobody == {"items": [], "next_cursor": None}
    too_long = client.get("/audit", params={"target": "x" * 201}, headers=auditor)
    assert too_long.status_code == 422
    supervisor = client.get(
        "/audit", params={"target": mine}, headers=api.actors["supervisor"].bearer()
    )
    assert supervisor.status_code == 403


def test_service_level_and_abandonment_per_queue_on_both_databases(session: Session) -> None:
    # The fixture's escalated call: a callback taken in 'billing' (neither reached a person nor
    # abandoned), and one connected in 'general' after 30 s.
    seed_calls(session)
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    within = summarize(
        session, start=start, end=end, bucket="day", service_level_targets={"general": 40}
    )
    queues = {q.name: q.model_dump() for q in within.queues}
    assert queues["general"] == {
        "name": "general", "escalations": 1, "connected": 1, "abandoned": 0,
        "service_level_target_s": 40, "service_level": 1.0, "abandonment_rate": 0.0,
    }  # fmt: skip
    assert queues["billing"]["service_level"] is None  # nobody reached or gave up: no figure
    assert queues["billing"]["abandonment_rate"] == 0.0
    # Against the default target (20 s), the 30 s wait misses it.
    default = summarize(session, start=start, end=end, bucket="day")
    assert {q.name: q.service_level for q in default.queues}["general"] == 0.0
    later = summarize(session, start=end, end=end + dt.timedelta(days=1), bucket="day")
    assert later.queues == []
