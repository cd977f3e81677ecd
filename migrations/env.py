"""Alembic environment: the database is Parley's (from its settings, or the URL that
admin.schema passes), the target schema is admin.models."""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from sqlalchemy import Connection, Enum

from admin.db import create_engine
from admin.models import Base, UTCDateTime
from admin.schema import AUTOGENERATE_PLUGINS

config = context.config
if config.config_file_name is not None:  # the `alembic` command; Parley's own logging otherwise
    fileConfig(config.config_file_name)


def _url() -> str:
    url = config.attributes.get("url")
    if url:
        return str(url)
    from admin.settings import get_settings

    return get_settings().database_url()


def _render_item(kind: str, obj: Any, _context: Any) -> str | Literal[False]:
    """Revisions spell out plain column types, so they never depend on admin.models."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if kind == "type" and isinstance(obj, Enum):  # the CHECK constraint holds the values
        return f"sa.String(length={obj.length})"
    return False


def run_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        target_metadata=Base.metadata,
        render_as_batch=url.startswith("sqlite"),
        render_item=_render_item,
        autogenerate_plugins=AUTOGENERATE_PLUGINS,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = create_engine(_url())
    try:
        with engine.connect() as connection:
            _migrate(connection)
    finally:
        engine.dispose()


def _migrate(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # A batch migration (SQLite alters a table by copying it) must not cascade or fail on
        # foreign keys midway; they are checked once at the end instead. The pragma only takes
        # effect outside a transaction, hence the raw connection.
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute("PRAGMA foreign_keys = OFF")
        cursor.close()
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=sqlite,
        render_item=_render_item,
        autogenerate_plugins=AUTOGENERATE_PLUGINS,
        transactional_ddl=True,  # admin.db gives SQLite real transactions: all or nothing
    )
    with context.begin_transaction():
        context.run_migrations()
        if sqlite:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"the migration left rows with dangling foreign keys: {broken}")


if context.is_offline_mode():
    run_offline()
else:
    run_online()
