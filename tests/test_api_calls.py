"""/calls on a real server and PostgreSQL: filters, sorting, keyset paging, one call in full,
and caller numbers that never come back in clear."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import httpx
import pytest

from admin.models import Call, CallMetrics, Line, Outcome
from tests.api_data import CALLER, CALLER_DIGITS, Api, new_call_id

pytest_plugins = ["tests.db_support", "tests.api_support"]

PAGING_T0 = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def admin(api: Api) -> dict[str, str]:
    return api.actors["admin"].bearer()


@pytest.fixture(scope="module")
def paging_line(api: Api) -> Iterator[tuple[int, list[Call]]]:
    """23 calls on their own line, some starting at the same instant, some with durations."""
    with api.sessions() as session:
        line = Line(name="paging", agent_profile="echo")
        session.add(line)
        session.flush()
        calls = []
        for i in range(23):
            call = Call(
                id=new_call_id(),
                line_id=line.id,
                to_number="200",
                started_at=PAGING_T0 + dt.timedelta(minutes=i // 3),  # three per instant
            )
            session.add(call)
            session.flush()
            if i % 4:
                session.add(CallMetrics(call_id=call.id, duration_ms=(i * 7919) % 50_000))
            calls.append(call)
        session.commit()
        yield line.id, calls


def _pages(client: httpx.Client, headers: dict[str, str], **params: str | int) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        query = params | ({"cursor": cursor} if cursor else {})
        body = client.get("/calls", params=query, headers=headers).json()
        pages.append([item["id"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def test_pages_cover_every_call_once_in_order(
    api: Api, client: httpx.Client, admin: dict[str, str], paging_line: tuple[int, list[Call]]
) -> None:
    line_id, calls = paging_line
    pages = _pages(client, admin, line_id=line_id, limit=5)
    assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
    newest_first = sorted(calls, key=lambda c: (c.started_at, c.id), reverse=True)
    assert [i for page in pages for i in page] == [c.id for c in newest_first]
    oldest_first = [
        i
        for page in _pages(client, admin, line_id=line_id, limit=7, sort="started_at")
        for i in page
    ]
    assert oldest_first == [c.id for c in reversed(newest_first)]


def test_duration_sort_pages_through_ties_and_calls_without_metrics(
    client: httpx.Client, admin: dict[str, str], paging_line: tuple[int, list[Call]]
) -> None:
    line_id, calls = paging_line
    seen = [
        i
        for page in _pages(client, admin, line_id=line_id, limit=4, sort="-duration")
        for i in page
    ]
    body = client.get(
        "/calls", params={"line_id": line_id, "limit": 200, "sort": "-duration"}, headers=admin
    ).json()
    assert seen == [item["id"] for item in body["items"]]
    durations = [
        item["duration_ms"] if item["duration_ms"] is not None else -1 for item in body["items"]
    ]
    assert durations == sorted(durations, reverse=True) and len(seen) == len(calls)
    ascending = [
        i for page in _pages(client, admin, line_id=line_id, limit=6, sort="duration") for i in page
    ]
    assert ascending == list(reversed(seen))


def test_paging_is_stable_while_calls_arrive(
    api: Api, client: httpx.Client, admin: dict[str, str], paging_line: tuple[int, list[Call]]
) -> None:
    line_id, calls = paging_line
    first = client.get("/calls", params={"line_id": line_id, "limit": 10}, headers=admin).json()
    with api.sessions() as session:
        newer = Call(
            id=new_call_id(),
            line_id=line_id,
            to_number="200",
            started_at=PAGING_T0 + dt.timedelta(hours=1),
        )
        older = Call(
            id=new_call_id(),
            line_id=line_id,
            to_number="200",
            started_at=PAGING_T0 - dt.timedelta(hours=1),
        )
        session.add_all([newer, older])
        session.commit()
    try:
        rest = _pages(client, admin, line_id=line_id, limit=10)
        cursor = first["next_cursor"]
        later: list[str] = []
        while cursor:
            body = client.get(
                "/calls", params={"line_id": line_id, "limit": 10, "cursor": cursor}, headers=admin
            ).json()
            later += [item["id"] for item in body["items"]]
            cursor = body["next_cursor"]
        shown = [item["id"] for item in first["items"]] + later
        newest_first = [
            c.id for c in sorted(calls, key=lambda c: (c.started_at, c.id), reverse=True)
        ]
        # Nothing repeated or skipped; the call that arrived in the unread part shows up there.
        assert shown == [*newest_first, older.id]
        assert rest[0][0] == newer.id
    finally:
        with api.sessions() as session:
            for call_id in (newer.id, older.id):
                session.delete(session.get_one(Call, call_id))
            session.commit()


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"outcome": "contained"}, {"contained"}),
        ({"outcome": "escalated"}, {"escalated"}),
        ({"escalated": "true"}, {"escalated"}),
        ({"escalated": "false"}, {"contained", "live", "abandoned"}),
        ({"caller": CALLER}, {"contained", "live"}),
        ({"caller": "+15551234567"}, {"contained", "live"}),
        ({"caller": "+15550000000"}, set()),
        ({"from": "2026-03-01T09:01:00Z", "to": "2026-03-01T09:03:00Z"}, {"escalated", "live"}),
        ({"from": "2026-03-01T10:01:00+01:00"}, {"escalated", "live", "abandoned"}),
    ],
)
def test_filters(
    api: Api,
    client: httpx.Client,
    admin: dict[str, str],
    params: dict[str, str],
    expected: set[str],
) -> None:
    fixture = api.fixture
    names = {
        fixture.contained: "contained",
        fixture.escalated: "escalated",
        fixture.live: "live",
        fixture.abandoned: "abandoned",
    }
    query = {"line_id": fixture.line_id, "limit": 200} | params
    response = client.get("/calls", params=query, headers=admin)
    assert response.status_code == 200, response.text
    assert {names[item["id"]] for item in response.json()["items"]} == expected


def test_the_caller_shows_masked_only(
    api: Api, client: httpx.Client, admin: dict[str, str]
) -> None:
    listed = client.get("/calls", params={"caller": CALLER, "limit": 200}, headers=admin)
    detail = client.get(f"/calls/{api.fixture.contained}", headers=admin)
    assert {item["caller"] for item in listed.json()["items"]} == {"+1******4567"}
    assert detail.json()["caller"] == "+1******4567"
    assert (
        detail.json()["events"][0]["data"]["from"]
        == '"+1******4567" <sip:+1******4567@pbx.example>'
    )
    for response in (listed, detail):
        text = response.text.replace(" ", "").replace("-", "")
        assert CALLER_DIGITS not in text and "5551234" not in text and "1234567" not in text


def test_a_call_in_full(api: Api, client: httpx.Client, admin: dict[str, str]) -> None:
    call = client.get(f"/calls/{api.fixture.contained}", headers=admin).json()
    assert (call["line"], call["outcome"], call["escalated"], call["duration_ms"]) == (
        "main",
        "contained",
        False,
        62_000,
    )
    agent = call["transcript"][1]
    assert (agent["interrupted"], agent["heard_text"], agent["heard_ms"]) == (
        True,
        "We open at nine",
        800,
    )
    assert [s["speaker"] for s in call["transcript"]] == ["caller", "agent"]
    play = call["disclosure_plays"][0]
    assert (play["disclosure"], play["version"], play["consent"], play["consent_method"]) == (
        "ai-and-recording-us",
        1,
        "granted",
        "implied",
    )
    assert play["audio_sha256"] == "a" * 64
    assert [e["kind"] for e in call["events"]] == ["call.started", "call.dtmf", "call.ended"]
    assert [t["voice_to_voice_ms"] for t in call["turn_metrics"]] == [300, 500]
    assert call["metrics"]["barge_ins"] == 1
    escalated = client.get(f"/calls/{api.fixture.escalated}", headers=admin).json()
    assert [(e["reason"], e["state"]) for e in escalated["escalations"]] == [
        ("dtmf_zero", "callback"),
        ("caller_request", "connected"),
    ]
    assert [t["event"] for t in escalated["escalations"][1]["transitions"]] == [
        "request",
        "enqueue",
        "offer",
        "accept",
        "connect",
    ]
    assert escalated["escalated"] is True


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"cursor": "garbage!"}, 400, "bad_cursor"),
        ({"cursor": "WyJ4Il0"}, 400, "bad_cursor"),  # valid base64 JSON, not a cursor
        ({"limit": 0}, 422, "validation_error"),
        ({"limit": 201}, 422, "validation_error"),
        ({"sort": "caller"}, 422, "validation_error"),
        ({"from": "2026-03-01T09:00:00"}, 422, "validation_error"),  # no timezone
        ({"from": "0001-01-01T00:00:00Z"}, 422, "validation_error"),
        ({"caller": "anonymous"}, 422, "validation_error"),
        ({"outcome": "won"}, 422, "validation_error"),
        ({"line_id": 2**40}, 422, "validation_error"),
    ],
)
def test_bad_list_parameters(
    client: httpx.Client,
    admin: dict[str, str],
    params: dict[str, str | int],
    status: int,
    code: str,
) -> None:
    response = client.get("/calls", params=params, headers=admin)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_a_cursor_from_another_query_is_refused(
    client: httpx.Client, admin: dict[str, str], paging_line: tuple[int, list[Call]]
) -> None:
    line_id, _ = paging_line
    cursor = client.get("/calls", params={"line_id": line_id, "limit": 2}, headers=admin).json()[
        "next_cursor"
    ]
    others: list[dict[str, str | int]] = [
        {"line_id": line_id, "sort": "started_at"},
        {"outcome": "contained"},
    ]
    for other in others:
        response = client.get("/calls", params=other | {"cursor": cursor}, headers=admin)
        assert response.status_code == 400
        assert "another query" in response.json()["error"]["message"]


def test_an_unknown_or_malformed_call_id(client: httpx.Client, admin: dict[str, str]) -> None:
    missing = client.get(f"/calls/{'0' * 32}", headers=admin)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert client.get("/calls/not-a-call", headers=admin).status_code == 422


def test_a_bad_caller_number_is_not_echoed(client: httpx.Client, admin: dict[str, str]) -> None:
    response = client.get("/calls", params={"caller": "+1555123456789012345678"}, headers=admin)
    assert response.status_code == 422
    assert "555123" not in json.dumps(response.json())


def test_outcome_enum_is_the_models(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    outcome = spec["components"]["schemas"]["Outcome"]["enum"]
    assert outcome == [o.value for o in Outcome]
