"""/escalations on a real server and PostgreSQL: roles, filters, paging, one escalation with
its transitions, and callback numbers that never come back in clear."""

from __future__ import annotations

import httpx
import pytest

from tests.api_data import CALLBACK_DIGITS, ESCALATION_REFS, Api

pytest_plugins = ["tests.db_support", "tests.api_support"]

CONNECTED, CALLBACK = ESCALATION_REFS


@pytest.mark.parametrize("role", ["admin", "supervisor", "auditor"])
def test_every_role_lists_escalations_newest_request_first(
    api: Api, client: httpx.Client, role: str
) -> None:
    response = client.get("/escalations", headers=api.actors[role].bearer())
    assert response.status_code == 200
    refs = [item["ref"] for item in response.json()["items"]]
    assert refs[:2] == [CONNECTED, CALLBACK]


def test_escalations_need_a_login(client: httpx.Client) -> None:
    assert client.get("/escalations").status_code == 401
    assert client.get(f"/escalations/{CONNECTED}").status_code == 401


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"state": "callback"}, [CALLBACK]),
        ({"state": "connected", "queue": "general"}, [CONNECTED]),
        ({"queue": "billing"}, [CALLBACK]),
        ({"queue": "nobody"}, []),
        ({"state": "abandoned", "queue": "billing"}, []),
    ],
)
def test_filters(
    api: Api, client: httpx.Client, params: dict[str, str], expected: list[str]
) -> None:
    body = client.get("/escalations", params=params, headers=api.actors["admin"].bearer()).json()
    assert [item["ref"] for item in body["items"]] == expected


def test_pages_follow_the_cursor_and_a_cursor_keeps_its_filters(
    api: Api, client: httpx.Client
) -> None:
    headers = api.actors["auditor"].bearer()
    first = client.get("/escalations", params={"limit": 1}, headers=headers).json()
    assert [item["ref"] for item in first["items"]] == [CONNECTED]
    second = client.get(
        "/escalations", params={"limit": 1, "cursor": first["next_cursor"]}, headers=headers
    ).json()
    assert [item["ref"] for item in second["items"]] == [CALLBACK]
    other = client.get(
        "/escalations",
        params={"limit": 1, "cursor": first["next_cursor"], "state": "callback"},
        headers=headers,
    )
    assert (other.status_code, other.json()["error"]["code"]) == (400, "bad_cursor")


@pytest.mark.parametrize(
    "params", [{"state": "handed_back"}, {"limit": 0}, {"limit": 201}, {"queue": ""}]
)
def test_bad_queries_are_refused(api: Api, client: httpx.Client, params: dict[str, str]) -> None:
    response = client.get("/escalations", params=params, headers=api.actors["admin"].bearer())
    assert response.status_code == 422


def test_one_escalation_in_full(api: Api, client: httpx.Client) -> None:
    body = client.get(f"/escalations/{CONNECTED}", headers=api.actors["supervisor"].bearer()).json()
    assert (body["call_id"], body["state"], body["queue"], body["supervisor"]) == (
        api.fixture.escalated,
        "connected",
        "general",
        "alice",
    )
    assert [(t["seq"], t["event"], t["to_state"], t["actor"]) for t in body["transitions"]] == [
        (1, "request", "requested", "caller"),
        (2, "enqueue", "queued", "system"),
        (3, "offer", "offered", "system"),
        (4, "accept", "accepted", "supervisor:alice"),
        (5, "connect", "connected", "system"),
    ]
    missing = client.get(f"/escalations/{'0' * 32}", headers=api.actors["admin"].bearer())
    assert missing.status_code == 404
    assert client.get(
        "/escalations/not-a-ref", headers=api.actors["admin"].bearer()
    ).status_code in (
        404,
        422,
    )


def test_a_callback_number_is_only_ever_masked(api: Api, client: httpx.Client) -> None:
    headers = api.actors["admin"].bearer()
    responses = [
        client.get(f"/escalations/{CALLBACK}", headers=headers),
        client.get("/escalations", headers=headers),
        client.get(f"/calls/{api.fixture.escalated}", headers=headers),
    ]
    detail = responses[0].json()
    assert detail["callback_number"] is not None
    assert detail["callback_number"].endswith("4321")
    for response in responses:
        assert response.status_code == 200
        assert CALLBACK_DIGITS not in response.text
        assert "callback_number_hash" not in response.text
