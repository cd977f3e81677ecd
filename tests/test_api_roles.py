"""Every route by every role: the expected status, against a real server on PostgreSQL.

The table below is written out by hand, apart from admin.api.roles, so a change to the
permissions that nobody meant shows up here. A route missing from the table fails the test.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from admin import accounts, erasure
from admin.models import DisclosureVersion, Role, User
from tests.api_data import ESCALATION_REFS, KEYS, PASSWORD, Api

pytest_plugins = ["tests.db_support", "tests.api_support"]

ALL = {"admin", "supervisor", "auditor"}
COMMANDERS = {"admin", "supervisor"}
PUBLIC = {("POST", "/auth/token"), ("GET", "/healthz")}  # and the OpenAPI document and docs


@dataclass(frozen=True)
class Targets:
    user_id: int
    key_id: int
    disclosure_id: int


@dataclass(frozen=True)
class Case:
    allowed: set[str]
    success: int
    request: Callable[[Api, Targets, str], dict[str, Any]]  # httpx.request keyword arguments


def _get(path: str) -> Callable[[Api, Targets, str], dict[str, Any]]:
    return lambda _api, _targets, _role: {"method": "GET", "url": path}


def _post(path: str) -> Callable[[Api, Targets, str], dict[str, Any]]:
    return lambda _api, _targets, _role: {"method": "POST", "url": path}


def _command(action: str, body: object) -> Callable[[Api, Targets, str], dict[str, Any]]:
    return lambda api, _targets, _role: {
        "method": "POST",
        "url": f"/calls/{api.fixture.live}/{action}",
        "json": body,
    }


def _a_fresh_hold(api: Api, _targets: Targets, _role: str) -> dict[str, Any]:
    with api.sessions() as session:
        hold = erasure.place_hold(
            session,
            reason="role matrix",
            actor="test",
            audit_key=KEYS.audit_hmac,
            call_id=api.fixture.live,
        )
        session.commit()
        return {"method": "POST", "url": f"/legal-holds/{hold.id}/release"}


CASES: dict[tuple[str, str], Case] = {
    ("GET", "/auth/me"): Case(ALL, 200, _get("/auth/me")),
    ("GET", "/calls"): Case(ALL, 200, _get("/calls")),
    ("GET", "/calls/{call_id}"): Case(
        ALL, 200, lambda api, _t, _r: {"method": "GET", "url": f"/calls/{api.fixture.live}"}
    ),
    ("GET", "/escalations"): Case(ALL, 200, _get("/escalations")),
    ("GET", "/escalations/{ref}"): Case(ALL, 200, _get(f"/escalations/{ESCALATION_REFS[0]}")),
    ("GET", "/metrics/summary"): Case(
        ALL,
        200,
        _get("/metrics/summary?from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z"),
    ),
    ("GET", "/lines"): Case(ALL, 200, _get("/lines")),
    # Call control and supervision: this API has no control plane, so the roles that may get
    # past their check get 503 (tests.test_api_call_control has the matrix with one).
    **{
        ("POST", f"/calls/{{call_id}}/{action}"): Case(
            COMMANDERS,
            503,
            _command(action, body),
        )
        for action, body in [
            ("hold", None),
            ("unhold", None),
            ("hangup", None),
            ("transfer", {"target": "sip:desk@pbx.example.com"}),
            ("mode", {"mode": "monitor"}),
            ("whisper", {"text": "hi"}),
            ("hand-back", None),
            ("supervise", {"phone": "desk"}),
            ("dismiss", None),
            ("recording/pause", None),
            ("recording/resume", None),
        ]
    },
    # Every role that reads calls may ask; the fixture's call has no recording (404).
    ("GET", "/calls/{call_id}/recording"): Case(
        ALL,
        404,
        lambda api, _t, _r: {"method": "GET", "url": f"/calls/{api.fixture.live}/recording"},
    ),
    ("GET", "/queues"): Case(ALL, 503, _get("/queues")),
    ("PUT", "/supervisors/{name}/presence"): Case(
        COMMANDERS,
        503,
        lambda _a, _t, role: {
            "method": "PUT",
            "url": f"/supervisors/{role}/presence",
            "json": {"state": "away"},
        },
    ),
    **{
        ("POST", f"/escalations/{{ref}}/{action}"): Case(
            COMMANDERS,
            503,
            _post(f"/escalations/{ESCALATION_REFS[0]}/{action}"),
        )
        for action in ("accept", "decline")
    },
    ("POST", "/lines"): Case(
        {"admin"},
        201,
        lambda _a, _t, role: {"method": "POST", "url": "/lines", "json": {"name": f"m-{role}"}},
    ),
    ("PATCH", "/lines/{line_id}"): Case(
        {"admin"},
        200,
        lambda api, _t, _r: {
            "method": "PATCH",
            "url": f"/lines/{api.fixture.line_id}",
            "json": {"queue": "general"},
        },
    ),
    ("GET", "/disclosures"): Case({"admin", "auditor"}, 200, _get("/disclosures")),
    ("GET", "/disclosures/{disclosure_id}"): Case(
        {"admin", "auditor"},
        200,
        lambda _a, t, _r: {"method": "GET", "url": f"/disclosures/{t.disclosure_id}"},
    ),
    ("POST", "/disclosures"): Case(
        {"admin"},
        201,
        lambda _a, _t, role: {
            "method": "POST",
            "url": "/disclosures",
            "json": {
                "name": f"matrix-{role}",
                "text": "This call is recorded.",
                "audio_sha256": "b" * 64,
                "jurisdiction": "EU",
            },
        },
    ),
    ("POST", "/disclosures/{disclosure_id}/versions"): Case(
        {"admin"},
        201,
        lambda _a, t, _r: {
            "method": "POST",
            "url": f"/disclosures/{t.disclosure_id}/versions",
            "json": {"text": "Recorded.", "audio_sha256": "c" * 64, "jurisdiction": "EU"},
        },
    ),
    ("PATCH", "/disclosures/{disclosure_id}/versions/{version}"): Case(
        {"admin"},
        200,
        lambda _a, t, _r: {
            "method": "PATCH",
            "url": f"/disclosures/{t.disclosure_id}/versions/1",
            "json": {"jurisdiction": "EU"},
        },
    ),
    ("GET", "/users"): Case({"admin"}, 200, _get("/users")),
    ("POST", "/users"): Case(
        {"admin"},
        201,
        lambda _a, _t, role: {
            "method": "POST",
            "url": "/users",
            "json": {"username": f"made-by-{role}", "role": "auditor"},
        },
    ),
    ("PATCH", "/users/{user_id}"): Case(
        {"admin"},
        200,
        lambda _a, t, _r: {
            "method": "PATCH",
            "url": f"/users/{t.user_id}",
            "json": {"role": "auditor"},
        },
    ),
    ("GET", "/api-keys"): Case({"admin"}, 200, _get("/api-keys")),
    ("POST", "/api-keys"): Case(
        {"admin"},
        201,
        lambda _a, _t, _r: {"method": "POST", "url": "/api-keys", "json": {"name": "x"}},
    ),
    ("POST", "/api-keys/{key_id}/revoke"): Case(
        {"admin"}, 200, lambda _a, t, _r: {"method": "POST", "url": f"/api-keys/{t.key_id}/revoke"}
    ),
    ("GET", "/audit"): Case({"admin", "auditor"}, 200, _get("/audit")),
    ("GET", "/audit/verify"): Case({"admin", "auditor"}, 200, _get("/audit/verify")),
    ("POST", "/audit/evidence"): Case(
        {"admin", "auditor"},
        200,
        lambda api, _t, _r: {
            "method": "POST",
            "url": "/audit/evidence",
            "json": {"call_ids": [api.fixture.live]},
        },
    ),
    ("GET", "/legal-holds"): Case({"admin", "auditor"}, 200, _get("/legal-holds")),
    ("POST", "/legal-holds"): Case(
        {"admin", "auditor"},
        201,
        lambda api, _t, _r: {
            "method": "POST",
            "url": "/legal-holds",
            "json": {"call_id": api.fixture.live, "reason": "role matrix"},
        },
    ),
    ("POST", "/legal-holds/{hold_id}/release"): Case({"admin", "auditor"}, 200, _a_fresh_hold),
    ("GET", "/erasures"): Case({"admin"}, 200, _get("/erasures")),
    ("POST", "/erasures"): Case(
        {"admin"},
        201,
        lambda _a, _t, _r: {
            "method": "POST",
            "url": "/erasures",
            "json": {"caller_number": "+1 202 555 0100"},  # nobody who called
        },
    ),
}


@pytest.fixture(scope="module")
def targets(api: Api) -> Targets:
    with api.sessions() as session:
        user = accounts.create_user(
            session,
            username="matrix-target",
            role=Role.SUPERVISOR,
            password=None,
            actor="test",
            audit_key=KEYS.audit_hmac,
        )
        key, _ = accounts.issue_key(
            session, user=user, name="matrix", actor="test", audit_key=KEYS.audit_hmac
        )
        from admin.models import Disclosure

        disclosure = Disclosure(name="matrix-unplayed")
        session.add(disclosure)
        session.flush()
        session.add(
            DisclosureVersion(
                disclosure_id=disclosure.id,
                version=1,
                text="Unplayed.",
                audio_sha256="d" * 64,
                jurisdiction="US",
            )
        )
        session.commit()
        return Targets(user.id, key.id, disclosure.id)


def test_the_table_covers_every_route(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    routes = {(method.upper(), path) for path, operations in paths.items() for method in operations}
    assert routes == set(CASES) | PUBLIC  # (and the /live WebSocket: tests/test_api_live.py)


@pytest.mark.parametrize("route", sorted(CASES), ids=lambda r: f"{r[0]} {r[1]}")
@pytest.mark.parametrize("role", ["anonymous", "admin", "supervisor", "auditor"])
def test_role_matrix(
    api: Api, client: httpx.Client, targets: Targets, route: tuple[str, str], role: str
) -> None:
    case = CASES[route]
    request = case.request(api, targets, role)
    headers = api.actors[role].bearer() if role != "anonymous" else {}
    response = client.request(**request, headers=headers)
    expected = 401 if role == "anonymous" else case.success if role in case.allowed else 403
    assert response.status_code == expected, response.text
    if expected in (401, 403):
        assert set(response.json()) == {"error"}
        assert response.json()["error"]["code"] == (
            "not_authenticated" if expected == 401 else "forbidden"
        )


@pytest.mark.parametrize("role", ["admin", "supervisor", "auditor"])
def test_api_keys_carry_their_users_role(api: Api, client: httpx.Client, role: str) -> None:
    headers = {"X-API-Key": api.actors[role].api_key}
    me = client.get("/auth/me", headers=headers).json()
    assert (me["username"], me["role"], me["via"][:8]) == (role, role, "api_key:")
    assert client.get("/users", headers=headers).status_code == (200 if role == "admin" else 403)


def test_supervisors_see_live_and_escalated_calls_only(api: Api, client: httpx.Client) -> None:
    fixture = api.fixture
    supervisor = api.actors["supervisor"].bearer()
    listed = {
        c["id"]
        for c in client.get("/calls", params={"limit": 200}, headers=supervisor).json()["items"]
    }
    assert {fixture.live, fixture.escalated} <= listed
    assert not {fixture.contained, fixture.abandoned} & listed
    for hidden in (fixture.contained, fixture.abandoned):
        response = client.get(f"/calls/{hidden}", headers=supervisor)
        assert response.status_code == 404
    auditor = api.actors["auditor"].bearer()
    assert client.get(f"/calls/{fixture.contained}", headers=auditor).status_code == 200


def test_login_gives_a_token_that_works(api: Api, client: httpx.Client) -> None:
    response = client.post("/auth/token", data={"username": "auditor", "password": PASSWORD})
    assert response.status_code == 200
    token = response.json()["access_token"]
    assert response.json()["token_type"] == "bearer"
    me = client.get("/auth/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["role"] == "auditor"


@pytest.mark.parametrize(
    "form",
    [
        {"username": "auditor", "password": "wrong password"},
        {"username": "nobody", "password": PASSWORD},
        {"username": "auditor\x00", "password": PASSWORD},
        {"username": "a" * 5000, "password": PASSWORD},
    ],
)
def test_a_wrong_login_is_401(client: httpx.Client, form: dict[str, str]) -> None:
    response = client.post("/auth/token", data=form)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.fixture
def temporary_user(api: Api) -> Iterator[tuple[User, str, str]]:
    """A supervisor with a password, a token and an API key, for tests that take them away."""
    from admin.api import auth

    with api.sessions() as session:
        name = f"temp-{dt.datetime.now().timestamp():.6f}".replace(".", "-")
        user = accounts.create_user(
            session,
            username=name,
            role=Role.SUPERVISOR,
            password=PASSWORD,
            actor="test",
            audit_key=KEYS.audit_hmac,
        )
        _, key = accounts.issue_key(
            session, user=user, name="t", actor="test", audit_key=KEYS.audit_hmac
        )
        session.commit()
        yield user, auth.issue_token(user, keys=KEYS, minutes=5).token, key


def test_a_deactivated_user_is_401_at_once(
    api: Api, client: httpx.Client, temporary_user: tuple[User, str, str]
) -> None:
    user, token, key = temporary_user
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/calls", headers=bearer).status_code == 200
    admin = api.actors["admin"].bearer()
    assert (
        client.patch(f"/users/{user.id}", json={"active": False}, headers=admin).status_code == 200
    )
    assert client.get("/calls", headers=bearer).status_code == 401
    assert client.get("/calls", headers={"X-API-Key": key}).status_code == 401
    login = client.post("/auth/token", data={"username": user.username, "password": PASSWORD})
    assert login.status_code == 401


def test_a_demotion_takes_effect_at_once(
    api: Api, client: httpx.Client, temporary_user: tuple[User, str, str]
) -> None:
    user, token, _ = temporary_user
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/lines", headers=bearer).status_code == 200
    admin = api.actors["admin"].bearer()
    client.patch(f"/users/{user.id}", json={"role": "auditor"}, headers=admin)
    assert client.get("/audit", headers=bearer).status_code == 200  # auditors may
    client.patch(f"/users/{user.id}", json={"role": "supervisor"}, headers=admin)
    assert client.get("/audit", headers=bearer).status_code == 403


def test_a_revoked_key_is_401(
    api: Api, client: httpx.Client, temporary_user: tuple[User, str, str]
) -> None:
    _, _, key = temporary_user
    admin = api.actors["admin"].bearer()
    assert client.get("/auth/me", headers={"X-API-Key": key}).status_code == 200
    listed = client.get("/api-keys", headers=admin).json()
    key_id = next(k["id"] for k in listed if key.startswith(f"parley_{k['prefix']}_"))
    assert next(k for k in listed if k["id"] == key_id)["last_used_at"] is not None
    revoked = client.post(f"/api-keys/{key_id}/revoke", headers=admin).json()
    assert revoked["revoked_at"] is not None
    response = client.get("/auth/me", headers={"X-API-Key": key})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize(
    "token",
    ["not-a-jwt", "a.b.c", "Bearer", "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."],  # the last: alg none
)
def test_garbage_tokens_are_401(client: httpx.Client, token: str) -> None:
    response = client.get("/calls", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_expired_and_forged_tokens_are_401(api: Api, client: httpx.Client) -> None:
    from admin.api import tokens

    user_id = api.actors["admin"].user_id
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    expired = tokens.issue(user_id, key=KEYS.jwt_signing, minutes=60, now=long_ago).token
    forged = tokens.issue(user_id, key=b"x" * 32, minutes=60, now=dt.datetime.now(dt.UTC)).token
    for token in (expired, forged):
        response = client.get("/users", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
