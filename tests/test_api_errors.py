"""Every error in one JSON shape: validation, auth, unknown routes, conflicts, a database that
is down (503) and the unexpected (500), none with a stack trace or the input echoed."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from admin.api.app import create_app
from admin.api.context import ApiContext
from admin.db import create_engine, session_factory
from tests.api_data import KEYS, PASSWORD, Api, serve

pytest_plugins = ["tests.db_support", "tests.api_support"]


def _assert_shape(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code and body["error"]["message"]
    assert "Traceback" not in response.text
    error: dict[str, object] = body["error"]
    return error


def test_unknown_routes_and_methods(client: httpx.Client) -> None:
    _assert_shape(client.get("/no/such/route"), 404, "not_found")
    _assert_shape(client.delete("/calls"), 405, "method_not_allowed")


def test_validation_errors_say_where_but_not_what_was_sent(api: Api, client: httpx.Client) -> None:
    secret = "s3cret-but-short"
    response = client.post(
        "/users",
        json={"username": "bob", "role": "boss", "password": secret[:5]},
        headers=api.actors["admin"].bearer(),
    )
    error = _assert_shape(response, 422, "validation_error")
    details = response.json()["error"]["details"]
    assert {tuple(d["loc"]) for d in details} == {("body", "role"), ("body", "password")}
    assert error["code"] == "validation_error"
    assert secret[:5] not in response.text
    broken = client.post(
        "/users",
        content=b"{not json",
        headers=api.actors["admin"].bearer() | {"content-type": "application/json"},
    )
    _assert_shape(broken, 422, "validation_error")
    form = client.post("/auth/token", json={"username": "admin", "password": PASSWORD})
    _assert_shape(form, 422, "validation_error")  # the password flow takes a form


def test_auth_errors(client: httpx.Client, api: Api) -> None:
    _assert_shape(client.get("/calls"), 401, "not_authenticated")
    _assert_shape(client.get("/users", headers=api.actors["auditor"].bearer()), 403, "forbidden")
    _assert_shape(
        client.get("/calls", headers={"X-API-Key": "parley_00000000_nope"}),
        401,
        "not_authenticated",
    )


@pytest.fixture(scope="module")
def no_database() -> Iterator[str]:
    """An API whose PostgreSQL is not there (nothing listens on port 1)."""
    engine = create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:1/parley", connect_args={"connect_timeout": 2}
    )
    app = create_app(ApiContext(sessions=session_factory(engine), keys=KEYS))
    with serve(app) as url:
        yield url
    engine.dispose()


def test_a_database_that_is_down_is_503(no_database: str, api: Api) -> None:
    with httpx.Client(base_url=no_database, timeout=30) as client:
        for response in (
            client.get("/healthz"),
            client.get("/calls", headers=api.actors["admin"].bearer()),
            client.get("/calls", headers={"X-API-Key": api.actors["admin"].api_key}),
            client.post("/auth/token", data={"username": "admin", "password": PASSWORD}),
        ):
            _assert_shape(response, 503, "database_unavailable")
            assert response.headers["Retry-After"] == "5"
        _assert_shape(client.get("/calls"), 401, "not_authenticated")  # no database needed


def test_the_unexpected_is_a_bare_500(api: Api) -> None:
    app = create_app(ApiContext(sessions=api.sessions, keys=KEYS))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("internal detail that must not leak")

    with serve(app) as url, httpx.Client(base_url=url) as client:
        response = client.get("/boom")
    error = _assert_shape(response, 500, "internal_error")
    assert "internal detail" not in response.text and error["details"] == []


def test_the_openapi_document_documents_the_error_shape(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    calls = spec["paths"]["/calls"]["get"]["responses"]
    assert calls["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert {"401", "403", "503"} <= set(calls)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
