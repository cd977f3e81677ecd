"""Legal holds and erasure through the API, on a database of this module's own: a hold on a
caller blocks their erasure (409, audited); released, the erasure leaves a receipt and the
caller's calls are gone."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from admin import audit, audit_checkpoint, evidence
from admin.models import AuditEntry
from tests.api_data import CALLER, KEYS, Api, running_api

pytest_plugins = ["tests.db_support"]


@pytest.fixture(scope="module")
def api(postgres_server: Engine) -> Iterator[Api]:
    with running_api(postgres_server) as running:
        yield running


def test_a_hold_blocks_erasure_until_released(api: Api) -> None:
    auditor, admin = api.actors["auditor"].bearer(), api.actors["admin"].bearer()
    contained = api.fixture.contained
    with api.client() as client:
        placed = client.post(
            "/legal-holds",
            json={"caller_number": CALLER, "reason": "subpoena 42"},
            headers=auditor,
        )
        assert placed.status_code == 201, placed.text
        hold = placed.json()
        assert hold["active"] and hold["caller_masked"] == "+1******4567"
        refused = client.post("/erasures", json={"caller_number": CALLER}, headers=admin)
        assert refused.status_code == 409
        assert f"legal hold #{hold['id']}" in refused.json()["error"]["message"]
        assert client.get(f"/calls/{contained}", headers=admin).status_code == 200

        released = client.post(f"/legal-holds/{hold['id']}/release", headers=auditor)
        assert released.status_code == 200 and not released.json()["active"]
        again = client.post(f"/legal-holds/{hold['id']}/release", headers=auditor)
        assert again.status_code == 409

        erased = client.post(
            "/erasures", json={"caller_number": "555 123 4567", "region": "us"}, headers=admin
        )
        assert erased.status_code == 201, erased.text
        receipt = erased.json()
        assert receipt["calls"] >= 1 and receipt["removed"]["calls"] == receipt["calls"]
        assert client.get(f"/calls/{contained}", headers=admin).status_code == 404
        assert [r["id"] for r in client.get("/erasures", headers=admin).json()] == [receipt["id"]]
        assert (
            client.post(
                "/erasures", json={"caller_number": "not a number"}, headers=admin
            ).status_code
            == 422
        )

    with api.sessions() as session:
        actions = [e.action for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
        assert audit.verify(session, key=KEYS.audit_hmac) is None
    tail = [a for a in actions if a.startswith(("legal_hold.", "caller."))]
    assert tail == [
        "legal_hold.placed",
        "caller.erasure_refused",
        "legal_hold.released",
        "caller.erased",
    ]


def test_an_evidence_bundle_from_the_api_verifies_offline(api: Api, tmp_path: Path) -> None:
    auditor = api.actors["auditor"]
    call_id = api.fixture.escalated
    with api.client() as client:
        response = client.post(
            "/audit/evidence", json={"call_ids": [call_id]}, headers=auditor.bearer()
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/zip"
        bad = client.post("/audit/evidence", json={"from": "2026-01-01T00:00:00Z"},
                          headers=auditor.bearer())  # fmt: skip
        assert bad.status_code == 422
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(response.content)
    public = audit_checkpoint.signing_key(KEYS.audit_hmac).public_key()
    verdict = evidence.verify(bundle, public_key=public, audit_key=KEYS.audit_hmac)
    assert verdict.ok, verdict.problems
    assert verdict.calls == 1
    with zipfile.ZipFile(bundle) as opened:
        [detail] = json.loads(opened.read("calls.json"))["calls"]
        chain = json.loads(opened.read("audit.json"))
    assert detail["id"] == call_id and detail["escalations"]
    assert chain[-1]["action"] == "evidence.exported"
    assert chain[-1]["actor"] == f"user:{auditor.username}"
