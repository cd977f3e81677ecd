"""Sort calls by duration from an index; lines can be deactivated

`calls.duration_sort_ms` holds the duration from the call's metrics (-1 until the rollup has
run), so `/calls?sort=-duration` walks an index instead of sorting every call joined to its
metrics. `lines.active` lets a line removed from the settings stay for its calls' sake.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 04:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN on both backends: no table copy, so SQLite's triggers stay.
    op.add_column(
        "calls",
        sa.Column("duration_sort_ms", sa.Integer(), server_default=sa.text("-1"), nullable=False),
    )
    op.execute(
        "UPDATE calls SET duration_sort_ms = "
        "(SELECT duration_ms FROM call_metrics WHERE call_metrics.call_id = calls.id) "
        "WHERE EXISTS (SELECT 1 FROM call_metrics WHERE call_metrics.call_id = calls.id)"
    )
    op.create_index(
        op.f("ix_calls_duration_sort_ms_id"), "calls", ["duration_sort_ms", "id"], unique=False
    )
    op.add_column(
        "lines", sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False)
    )


def downgrade() -> None:
    op.drop_column("lines", "active")
    op.drop_index(op.f("ix_calls_duration_sort_ms_id"), table_name="calls")
    op.drop_column("calls", "duration_sort_ms")
