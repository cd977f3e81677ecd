"""Legal holds on calls or callers, and the receipts erasure leaves

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(32), nullable=True),
        sa.Column("caller_hash", sa.String(64), nullable=True),
        sa.Column("caller_masked", sa.String(32), nullable=True),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("created_by", sa.String(120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_by", sa.String(120), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(call_id IS NULL) <> (caller_hash IS NULL)", name=op.f("ck_legal_holds_one_subject")
        ),
        sa.CheckConstraint(
            "released_at IS NULL OR released_at >= created_at",
            name=op.f("ck_legal_holds_release_order"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
    )
    op.create_index(op.f("ix_legal_holds_call_id"), "legal_holds", ["call_id"])
    op.create_index(op.f("ix_legal_holds_caller_hash"), "legal_holds", ["caller_hash"])
    op.create_table(
        "erasure_receipts",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("subject_hash", sa.String(64), nullable=False),
        sa.Column("requested_by", sa.String(120), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("removed", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasure_receipts")),
    )
    op.create_index(op.f("ix_erasure_receipts_subject_hash"), "erasure_receipts", ["subject_hash"])


def downgrade() -> None:
    op.drop_index(op.f("ix_erasure_receipts_subject_hash"), table_name="erasure_receipts")
    op.drop_table("erasure_receipts")
    op.drop_index(op.f("ix_legal_holds_caller_hash"), table_name="legal_holds")
    op.drop_index(op.f("ix_legal_holds_call_id"), table_name="legal_holds")
    op.drop_table("legal_holds")
