"""A real admin API for the API tests: its own PostgreSQL database, a uvicorn server on a free
port, and one user (with a token and an API key) for each role (tests.api_data).

A pytest plugin next to tests.db_support: test modules name both in `pytest_plugins` and import
what they need from tests.api_data. The database is the test session's own (the storage tests
roll back; these commit), dropped at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine

from tests.api_data import Api, running_api


@pytest.fixture(scope="session")
def api(postgres_server: Engine) -> Iterator[Api]:
    with running_api(postgres_server) as running:
        yield running


@pytest.fixture
def client(api: Api) -> Iterator[httpx.Client]:
    with api.client() as http:
        yield http
