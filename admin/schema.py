"""Bringing a database's schema to the current revision, through Alembic only."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from admin.db import create_engine

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# Alembic's defaults plus its opt-in comparison of CHECK constraints, which works by name: every
# constraint has one (admin.models.NAMING_CONVENTION), so a missing or extra rule is noticed.
AUTOGENERATE_PLUGINS = ["alembic.autogenerate.*", "alembic.ext.checkconstraint_byname"]


def alembic_config(url: str) -> Config:
    """Alembic's configuration for `url`, without alembic.ini (which is for `alembic` itself)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url  # not a main option: those treat '%' in passwords specially
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()
