"""Which model answered each turn (turn_metrics.model), so models compare side by side

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 11:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("turn_metrics", sa.Column("model", sa.String(120), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("turn_metrics") as batch:
        batch.drop_column("model")
