"""How each disclosure was played: the jurisdiction rules applied, what the notice covered,
a barge-in, the caller talking over it, and a spoken answer's words

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 05:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# In place, on both backends (SQLite 3.35+ drops a column itself): a batch copy of the table
# would trip the trigger that keeps played disclosure versions immutable.


def upgrade() -> None:
    op.add_column("disclosure_plays", sa.Column("circumstances", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE disclosure_plays DROP COLUMN circumstances")
