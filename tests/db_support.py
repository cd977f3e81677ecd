"""Databases for the storage tests, on both backends Parley supports.

A pytest plugin: test modules name it in `pytest_plugins` and import nothing from it. The test
session creates its own PostgreSQL database, brings it to head with Alembic, and drops it at
the end; SQLite gets a file. Each test runs in a transaction that is rolled back. PostgreSQL is
required: without it these tests fail, saying how to start it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from admin import schema
from admin.db import create_engine

# The server's maintenance database, reached as a superuser; CI may point elsewhere.
POSTGRES_URL = os.environ.get(
    "PARLEY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ["sqlite", "postgresql"]


@dataclass(frozen=True)
class Database:
    url: str
    engine: Engine


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Engine]:
    """A connection to the server itself, for creating and dropping databases."""
    engine = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as error:
        engine.dispose()
        pytest.fail(
            f"PostgreSQL is needed by the storage tests and is not reachable at "
            f"{make_url(POSTGRES_URL).render_as_string(hide_password=True)}:\n  {error.orig}\n"
            "Start it (Debian: `pg_ctlcluster 15 main start`, or `docker run -d -p 5432:5432 "
            "-e POSTGRES_HOST_AUTH_METHOD=trust postgres:15`), or set PARLEY_TEST_POSTGRES_URL "
            "to a superuser URL of another server.",
            pytrace=False,
        )
    yield engine
    engine.dispose()


@contextmanager
def _postgres_database(server: Engine) -> Iterator[str]:
    name = f"parley_test_{os.getpid()}_{secrets.token_hex(4)}"
    with server.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgresql_database(postgres_server: Engine) -> Iterator[Database]:
    with _postgres_database(postgres_server) as url:
        schema.upgrade(url)
        engine = create_engine(url)
        yield Database(url, engine)
        engine.dispose()


@pytest.fixture(scope="session")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'parley.db'}"
    schema.upgrade(url)
    engine = create_engine(url)
    yield Database(url, engine)
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest) -> Database:
    """The migrated database of each backend in turn."""
    found: Database = request.getfixturevalue(f"{request.param}_database")
    return found


@pytest.fixture
def session(database: Database) -> Iterator[Session]:
    """A session whose work, commits included, is rolled back at the end of the test."""
    with database.engine.connect() as connection:
        transaction = connection.begin()
        with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
            yield session
        transaction.rollback()


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it yet, of each backend in turn."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    server: Engine = request.getfixturevalue("postgres_server")
    with _postgres_database(server) as url:
        yield url


@pytest.fixture
def audit_key() -> bytes:
    return b"audit-key-for-tests-only-0123456789"


@pytest.fixture
def number_key() -> bytes:
    return b"number-key-for-tests-only-0123456789"
