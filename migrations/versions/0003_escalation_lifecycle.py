"""Escalations follow the lifecycle; each transition is kept

`escalations.status` becomes `state`, holding escalation.lifecycle's states (requested, queued,
offered, accepted, connected, ended, returned_to_ai, callback, abandoned): stored `handed_back`
rows read as `returned_to_ai`, the other old values are lifecycle states already. Escalations
gain `ref` (the escalation service's id, UUID hex; rows from before get a fresh one), the
supervisor's name, a callback number as keyed hash and mask (never in clear), and when the
offer was made. `reason` may be NULL: a transition can arrive before the request it follows.
`escalation_transitions` keeps every step, in the order stored, with no personal data.

Downgrading maps the new states onto the old (returned_to_ai -> handed_back, ended ->
connected, requested/offered/accepted -> queued) and gives escalations of unknown reason
`low_confidence`, as the old projection did for a reason it did not know.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 20:10:00
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATES = (
    "'requested', 'queued', 'offered', 'accepted', 'connected', 'ended', 'returned_to_ai', "
    "'callback', 'abandoned'"
)
EVENTS = (
    "'request', 'enqueue', 'offer', 'accept', 'decline', 'offer_timed_out', 'connect', "
    "'hand_back', 'end', 'take_callback', 'abandon', 'call_ended'"
)
OLD_STATUSES = "'queued', 'connected', 'handed_back', 'abandoned', 'callback'"


def upgrade() -> None:
    with op.batch_alter_table("escalations") as batch:
        batch.drop_constraint(op.f("ck_escalations_status"), type_="check")
        batch.alter_column(
            "status",
            new_column_name="state",
            existing_type=sa.String(length=32),
            existing_nullable=False,
        )
        batch.alter_column("reason", existing_type=sa.String(length=32), nullable=True)
        batch.add_column(sa.Column("ref", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("supervisor", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("callback_number_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("callback_number_masked", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("offered_at", sa.DateTime(timezone=True), nullable=True))

    op.execute("UPDATE escalations SET state = 'returned_to_ai' WHERE state = 'handed_back'")
    connection = op.get_bind()
    ids = connection.execute(sa.text("SELECT id FROM escalations WHERE ref IS NULL")).scalars()
    for escalation_id in list(ids):
        connection.execute(
            sa.text("UPDATE escalations SET ref = :ref WHERE id = :id"),
            {"ref": uuid.uuid4().hex, "id": escalation_id},
        )

    with op.batch_alter_table("escalations") as batch:
        batch.alter_column("ref", existing_type=sa.String(length=32), nullable=False)
        batch.create_unique_constraint(op.f("uq_escalations_ref"), ["ref"])
        batch.create_check_constraint(op.f("ck_escalations_state"), f"state IN ({STATES})")
        batch.create_check_constraint(op.f("ck_escalations_ref_uuid_hex"), "length(ref) = 32")
        batch.create_check_constraint(
            op.f("ck_escalations_offered_order"),
            "offered_at IS NULL OR offered_at >= requested_at",
        )
        batch.create_check_constraint(
            op.f("ck_escalations_callback_hash_with_mask"),
            "(callback_number_hash IS NULL) = (callback_number_masked IS NULL)",
        )
        batch.create_index(
            op.f("ix_escalations_state_requested_at"), ["state", "requested_at"], unique=False
        )

    op.create_table(
        "escalation_transitions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("escalation_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("from_state", sa.String(length=32), nullable=True),
        sa.Column("to_state", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("detail", sa.String(length=255), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(f"event IN ({EVENTS})", name=op.f("ck_escalation_transitions_event")),
        sa.CheckConstraint(
            f"from_state IN ({STATES})", name=op.f("ck_escalation_transitions_from_state")
        ),
        sa.CheckConstraint(
            f"to_state IN ({STATES})", name=op.f("ck_escalation_transitions_to_state")
        ),
        sa.CheckConstraint("seq >= 1", name=op.f("ck_escalation_transitions_seq_positive")),
        sa.ForeignKeyConstraint(
            ["escalation_id"],
            ["escalations.id"],
            name=op.f("fk_escalation_transitions_escalation_id_escalations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_transitions")),
        sa.UniqueConstraint(
            "escalation_id", "seq", name=op.f("uq_escalation_transitions_escalation_id_seq")
        ),
    )
    op.create_index(
        op.f("ix_escalation_transitions_escalation_id"),
        "escalation_transitions",
        ["escalation_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_escalation_transitions_escalation_id"), table_name="escalation_transitions"
    )
    op.drop_table("escalation_transitions")

    with op.batch_alter_table("escalations") as batch:
        batch.drop_index(op.f("ix_escalations_state_requested_at"))
        batch.drop_constraint(op.f("ck_escalations_callback_hash_with_mask"), type_="check")
        batch.drop_constraint(op.f("ck_escalations_offered_order"), type_="check")
        batch.drop_constraint(op.f("ck_escalations_ref_uuid_hex"), type_="check")
        batch.drop_constraint(op.f("ck_escalations_state"), type_="check")
        batch.drop_constraint(op.f("uq_escalations_ref"), type_="unique")

    op.execute("UPDATE escalations SET state = 'handed_back' WHERE state = 'returned_to_ai'")
    op.execute("UPDATE escalations SET state = 'connected' WHERE state = 'ended'")
    op.execute(
        "UPDATE escalations SET state = 'queued' "
        "WHERE state IN ('requested', 'offered', 'accepted')"
    )
    op.execute("UPDATE escalations SET reason = 'low_confidence' WHERE reason IS NULL")

    with op.batch_alter_table("escalations") as batch:
        batch.drop_column("offered_at")
        batch.drop_column("callback_number_masked")
        batch.drop_column("callback_number_hash")
        batch.drop_column("supervisor")
        batch.drop_column("ref")
        batch.alter_column("reason", existing_type=sa.String(length=32), nullable=False)
        batch.alter_column(
            "state",
            new_column_name="status",
            existing_type=sa.String(length=32),
            existing_nullable=False,
        )
        batch.create_check_constraint(op.f("ck_escalations_status"), f"status IN ({OLD_STATUSES})")
