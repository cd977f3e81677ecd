"""The database engine and sessions, for PostgreSQL or the embedded SQLite file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import Engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker


def create_engine(url: str | URL, **options: Any) -> Engine:
    """An engine for `url`; a SQLite file is created with its folder, in WAL mode, with
    foreign keys enforced and real transactions (so DDL and savepoints roll back)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sqlalchemy.create_engine(parsed, pool_pre_ping=True, **options)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sqlalchemy.create_engine(parsed, **options)
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: object) -> None:
    # pysqlite's own transaction handling skips BEGIN before DDL and breaks SAVEPOINT; take it
    # over (the recipe in SQLAlchemy's SQLite documentation).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    # What is deleted is overwritten, not left in free pages of the file (erasure, purge).
    cursor.execute("PRAGMA secure_delete = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA busy_timeout = 5000")  # media workers and the API write together
    cursor.close()


def _sqlite_begin(connection: sqlalchemy.Connection) -> None:
    # IMMEDIATE: the write lock is taken at the start, waiting up to busy_timeout for it. A
    # deferred transaction that reads and then writes (a login, an audit entry after the chain's
    # head, an API key's last use on a GET) fails at once with "database is locked" when another
    # process committed meanwhile; SQLite cannot wait that out. So sessions take turns (short
    # ones: this is the embedded default; PostgreSQL has no such limit).
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def display_url(url: str | URL) -> str:
    """The URL with its password hidden, for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)
