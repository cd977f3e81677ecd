"""The migrations are the schema: applied to an empty database they give exactly the models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import CheckConstraint, Column, Integer, MetaData, inspect, text

from admin import schema
from admin.db import create_engine
from admin.models import Base

pytest_plugins = ["tests.db_support"]


def _diff(url: str, metadata: MetaData) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            opts = {"compare_type": True, "autogenerate_plugins": schema.AUTOGENERATE_PLUGINS}
            context = MigrationContext.configure(connection, opts=opts)
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_head_matches_the_models_and_downgrade_removes_it(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    assert schema.current_revision(url) is None
    schema.upgrade(url)
    assert schema.current_revision(url) == schema.head_revision()
    assert _diff(url, Base.metadata) == []
    assert set(Base.metadata.tables) <= _tables(url)

    schema.downgrade(url, "base")
    assert schema.current_revision(url) is None
    assert _tables(url) == {"alembic_version"}

    schema.upgrade(url)  # and back up again, cleanly
    assert _diff(url, Base.metadata) == []


def test_the_comparison_notices_columns_and_rules_the_migrations_do_not_have(
    empty_database_url: str,
) -> None:
    schema.upgrade(empty_database_url)
    drifted = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["calls"].append_column(Column("added_in_a_model_only", Integer))
    drifted.tables["calls"].append_constraint(CheckConstraint("to_number <> ''", name="to_given"))
    diff = _diff(empty_database_url, drifted)
    assert sorted(entry[0] for entry in diff) == ["add_column", "add_constraint"]


def test_parley_db_upgrade_then_current(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env["PARLEY_DATA_DIR"] = str(tmp_path)
    parley = [sys.executable, "-m", "admin.cli", "db"]

    def run(action: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*parley, action], env=env, capture_output=True, text=True, timeout=60, check=check
        )

    missing = run("current", check=False)  # no database yet: said, never created silently
    assert missing.returncode == 2
    assert f"there is no database at {tmp_path / 'parley.db'}" in missing.stderr
    assert not (tmp_path / "parley.db").exists()
    assert "upgrading the database schema" in run("upgrade").stderr
    assert f"revision {schema.head_revision()}, up to date" in run("current").stdout


def test_escalations_stored_before_the_lifecycle_read_as_its_states(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    schema.upgrade(url, "0002")
    call_id = "c" * 32
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO calls (id, to_number, started_at) "
                    "VALUES (:id, '100', '2026-03-01 09:00:00+00:00')"
                ),
                {"id": call_id},
            )
            for status in ("handed_back", "queued"):
                connection.execute(
                    text(
                        "INSERT INTO escalations (call_id, reason, status, requested_at) "
                        "VALUES (:call, 'dtmf_zero', :status, '2026-03-01 09:01:00+00:00')"
                    ),
                    {"call": call_id, "status": status},
                )
        schema.upgrade(url)
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT state, ref FROM escalations ORDER BY id")).all()
        assert [state for state, _ref in rows] == ["returned_to_ai", "queued"]
        assert all(len(ref) == 32 for _state, ref in rows)
        assert len({ref for _state, ref in rows}) == 2

        schema.downgrade(url, "0002")
        with engine.connect() as connection:
            statuses = connection.execute(text("SELECT status FROM escalations ORDER BY id"))
            assert list(statuses.scalars()) == ["handed_back", "queued"]
    finally:
        engine.dispose()
