"""Disclosures, lines, users, API keys and the audit log through the API, on PostgreSQL: every
change is audited, evidence stays frozen, nobody locks the admins out."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from admin import accounts
from admin.accounts import AccountConflict
from admin.models import Role, User
from tests.api_data import PASSWORD, Api

pytest_plugins = ["tests.db_support", "tests.api_support"]


@pytest.fixture
def admin(api: Api) -> dict[str, str]:
    return api.actors["admin"].bearer()


def _latest_audit(client: httpx.Client, admin: dict[str, str]) -> dict[str, object]:
    entry: dict[str, object] = client.get("/audit", params={"limit": 1}, headers=admin).json()[
        "items"
    ][0]
    return entry


def test_disclosure_versions_and_the_played_one_is_frozen(
    api: Api, client: httpx.Client, admin: dict[str, str]
) -> None:
    created = client.post(
        "/disclosures",
        json={
            "name": "recording-eu",
            "text": "Recorded.",
            "audio_sha256": "e" * 64,
            "jurisdiction": "EU",
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    disclosure = created.json()
    assert [v["version"] for v in disclosure["versions"]] == [1]
    assert _latest_audit(client, admin)["action"] == "disclosure.create"
    again = client.post(
        "/disclosures",
        json={"name": "recording-eu", "text": "x", "audio_sha256": "e" * 64, "jurisdiction": "EU"},
        headers=admin,
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    added = client.post(
        f"/disclosures/{disclosure['id']}/versions",
        json={"text": "Recorded, v2.", "audio_sha256": "f" * 64, "jurisdiction": "EU"},
        headers=admin,
    )
    assert added.status_code == 201 and added.json()["version"] == 2
    edited = client.patch(
        f"/disclosures/{disclosure['id']}/versions/2",
        json={"text": "Recorded (v2)."},
        headers=admin,
    )
    assert edited.status_code == 200 and edited.json()["text"] == "Recorded (v2)."

    listed = client.get("/disclosures", headers=api.actors["auditor"].bearer()).json()
    played = next(d for d in listed if d["name"] == "ai-and-recording-us")
    assert played["versions"][0]["played"] is True
    frozen = client.patch(
        f"/disclosures/{played['id']}/versions/1", json={"text": "Something else."}, headers=admin
    )
    assert frozen.status_code == 409
    assert frozen.json()["error"]["code"] == "immutable"
    assert "add a new version" in frozen.json()["error"]["message"]
    detail = client.get(f"/disclosures/{played['id']}", headers=admin).json()
    assert detail["versions"][0]["text"].startswith("This call is answered by an AI")


@pytest.mark.parametrize(
    "body",
    [
        {
            "name": "x",
            "text": "t",
            "audio_sha256": "A" * 64,
            "jurisdiction": "EU",
        },  # not lowercase hex
        {"name": "x", "text": "t", "audio_sha256": "a" * 63, "jurisdiction": "EU"},
        {"name": "x", "text": "", "audio_sha256": "a" * 64, "jurisdiction": "EU"},
        {"name": "x", "text": "nul\x00", "audio_sha256": "a" * 64, "jurisdiction": "EU"},
        {"name": "bad name", "text": "t", "audio_sha256": "a" * 64, "jurisdiction": "EU"},
        {"name": "x", "text": "t", "audio_sha256": "a" * 64, "jurisdiction": "EU", "extra": 1},
    ],
)
def test_a_bad_disclosure_is_422(
    client: httpx.Client, admin: dict[str, str], body: dict[str, object]
) -> None:
    response = client.post("/disclosures", json=body, headers=admin)
    assert response.status_code == 422
    assert response.json()["error"]["details"]


def test_lines_and_their_numbers(client: httpx.Client, admin: dict[str, str]) -> None:
    created = client.post(
        "/lines",
        json={"name": "sales", "agent_profile": "echo", "numbers": ["300", "301", "300"]},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    line = created.json()
    assert line["numbers"] == ["300", "301"]
    taken = client.post("/lines", json={"name": "other", "numbers": ["301"]}, headers=admin)
    assert taken.status_code == 409 and "301" in taken.json()["error"]["message"]
    moved = client.patch(
        f"/lines/{line['id']}", json={"numbers": ["301", "302"], "queue": "sales"}, headers=admin
    )
    assert moved.status_code == 200
    assert (moved.json()["numbers"], moved.json()["queue"]) == (["301", "302"], "sales")
    unknown = client.patch(f"/lines/{line['id']}", json={"disclosure_id": 999_999}, headers=admin)
    assert unknown.status_code == 422
    bad_profile = client.post("/lines", json={"name": "x", "agent_profile": "gpt"}, headers=admin)
    assert bad_profile.status_code == 422
    assert client.patch("/lines/999999", json={}, headers=admin).status_code == 404
    assert _latest_audit(client, admin)["action"] == "line.update"


def test_users_roles_and_the_last_admin(
    api: Api, client: httpx.Client, admin: dict[str, str]
) -> None:
    created = client.post(
        "/users",
        json={"username": "carol", "role": "supervisor", "password": PASSWORD},
        headers=admin,
    )
    assert created.status_code == 201 and created.json()["has_password"] is True
    assert (
        client.post(
            "/users", json={"username": "carol", "role": "auditor"}, headers=admin
        ).status_code
        == 409
    )
    short = client.post(
        "/users", json={"username": "dave", "role": "auditor", "password": "hunter2"}, headers=admin
    )
    assert short.status_code == 422 and "hunter2" not in short.text
    carol = created.json()["id"]
    promoted = client.patch(f"/users/{carol}", json={"role": "admin"}, headers=admin)
    assert promoted.json()["role"] == "admin"
    entry = _latest_audit(client, admin)
    assert (entry["action"], entry["target"], entry["actor"]) == (
        "user.update",
        f"user:{carol}",
        "user:admin",
    )
    me = api.actors["admin"].user_id
    myself = client.patch(f"/users/{me}", json={"active": False}, headers=admin)
    assert myself.status_code == 409 and "yourself" in myself.json()["error"]["message"]
    # carol, now an admin, may demote the other admins but never the last one
    carol_token = client.post(
        "/auth/token", data={"username": "carol", "password": PASSWORD}
    ).json()["access_token"]
    as_carol = {"Authorization": f"Bearer {carol_token}"}
    assert (
        client.patch(f"/users/{me}", json={"role": "auditor"}, headers=as_carol).status_code == 200
    )
    last = client.patch(
        f"/users/{carol}", json={"active": False}, headers=admin
    )  # admin is an auditor now
    assert last.status_code == 403
    assert client.patch(f"/users/{me}", json={"role": "admin"}, headers=as_carol).status_code == 200
    assert client.patch(f"/users/{carol}", json={"active": False}, headers=admin).status_code == 200
    assert client.patch(f"/users/{me}", json={"role": "auditor"}, headers=admin).status_code == 409
    assert PASSWORD not in client.get("/audit", params={"limit": 500}, headers=admin).text


def test_the_last_active_admin_stays(session: Session) -> None:
    def make(name: str, role: Role) -> User:
        return accounts.create_user(
            session, username=name, role=role, password=None, actor="t", audit_key=b"k" * 32
        )

    session.execute(text("UPDATE users SET active = false"))  # only this test's users count
    only, other = make("only", Role.ADMIN), make("other", Role.SUPERVISOR)
    for change in ({"active": False}, {"role": Role.AUDITOR}):
        with pytest.raises(AccountConflict, match="last active admin"):
            accounts.update_user(session, user=only, actor="t", audit_key=b"k" * 32, **change)
    accounts.update_user(session, user=other, role=Role.ADMIN, actor="t", audit_key=b"k" * 32)
    accounts.update_user(session, user=only, active=False, actor="t", audit_key=b"k" * 32)
    assert (only.active, other.role) == (False, Role.ADMIN)


def test_an_api_key_is_shown_once(api: Api, client: httpx.Client, admin: dict[str, str]) -> None:
    supervisor = api.actors["supervisor"].user_id
    issued = client.post(
        "/api-keys", json={"name": "wallboard", "user_id": supervisor}, headers=admin
    )
    assert issued.status_code == 201
    key = issued.json()["key"]
    assert key.startswith(f"parley_{issued.json()['prefix']}_")
    listed = client.get("/api-keys", headers=admin)
    assert key not in listed.text and issued.json()["prefix"] in listed.text
    me = client.get("/auth/me", headers={"X-API-Key": key}).json()
    assert me["username"] == "supervisor"
    no_user = client.post("/api-keys", json={"name": "x", "user_id": 999_999}, headers=admin)
    assert no_user.status_code == 422
    assert client.post("/api-keys/999999/revoke", headers=admin).status_code == 404
    key_id = issued.json()["id"]
    assert client.post(f"/api-keys/{key_id}/revoke", headers=admin).status_code == 200
    before = _latest_audit(client, admin)["id"]
    assert client.post(f"/api-keys/{key_id}/revoke", headers=admin).status_code == 200  # again
    assert _latest_audit(client, admin)["id"] == before  # nothing changed, nothing audited


def test_the_audit_log_pages_and_verifies_and_names_a_tampered_entry(
    api: Api, client: httpx.Client
) -> None:
    auditor = api.actors["auditor"].bearer()
    pages, cursor = [], None
    while True:
        body = client.get(
            "/audit", params={"limit": 3} | ({"cursor": cursor} if cursor else {}), headers=auditor
        ).json()
        pages += [entry["id"] for entry in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == sorted(pages, reverse=True) and pages[-1] == 1
    assert len(pages) == len(set(pages)) == pages[0]
    assert client.get("/audit/verify", headers=auditor).json() == {
        "ok": True,
        "entries": pages[0],
        "first_bad_id": None,
        "checkpoints": 0,
        "problems": [],
    }
    target = pages[len(pages) // 2]
    with api.engine.connect() as connection:  # a superuser can switch the triggers off
        connection.execute(text("SET session_replication_role = replica"))
        original = connection.execute(
            text("SELECT actor FROM audit_log WHERE id = :id"), {"id": target}
        ).scalar()
        connection.execute(
            text("UPDATE audit_log SET actor = 'mallory' WHERE id = :id"), {"id": target}
        )
        connection.commit()
        try:
            verdict = client.get("/audit/verify", headers=auditor).json()
            assert (verdict["ok"], verdict["first_bad_id"]) == (False, target)
        finally:
            connection.execute(
                text("UPDATE audit_log SET actor = :a WHERE id = :id"),
                {"a": original, "id": target},
            )
            connection.commit()
    assert client.get("/audit/verify", headers=auditor).json()["ok"] is True
