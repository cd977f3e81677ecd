"""Initial schema

Every table of admin.models, plus the triggers that keep played disclosure versions and the
audit log unchangeable whoever writes to the database.

Revision ID: 0001
Revises:
Create Date: 2026-11-25 03:34:30.580552
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PLAYED_MESSAGE = (
    "disclosure version has been played to callers and cannot be changed; add a new version instead"
)

# Both raise integrity errors (SQLSTATE 23001 / SQLITE_CONSTRAINT), like a failed constraint.
POSTGRESQL_GUARDS = [
    f"""
    CREATE FUNCTION parley_refuse_played_disclosure() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM disclosure_plays WHERE version_id = OLD.id) THEN
            RAISE EXCEPTION '{PLAYED_MESSAGE} (id %)', OLD.id USING ERRCODE = 'restrict_violation';
        END IF;
        RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER disclosure_versions_played_immutable BEFORE UPDATE ON disclosure_versions
    FOR EACH ROW EXECUTE FUNCTION parley_refuse_played_disclosure()
    """,
    """
    CREATE FUNCTION parley_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
    END $$
    """,
    """
    CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION parley_refuse_change()
    """,
    """
    CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION parley_refuse_change()
    """,
]

# SQLite copies a table to alter it (batch mode), which drops its triggers: a later revision
# that alters these tables must create the triggers again.
SQLITE_GUARDS = [
    f"""
    CREATE TRIGGER disclosure_versions_played_immutable BEFORE UPDATE ON disclosure_versions
    WHEN EXISTS (SELECT 1 FROM disclosure_plays WHERE version_id = OLD.id)
    BEGIN SELECT RAISE(ABORT, '{PLAYED_MESSAGE}'); END
    """,
    """
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END
    """,
    """
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END
    """,
]


def _create_guards() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    for statement in POSTGRESQL_GUARDS if postgresql else SQLITE_GUARDS:
        op.execute(statement)


def _drop_guards() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute("DROP TRIGGER disclosure_versions_played_immutable ON disclosure_versions")
        op.execute("DROP FUNCTION parley_refuse_change()")
        op.execute("DROP FUNCTION parley_refuse_played_disclosure()")
    else:
        op.execute("DROP TRIGGER audit_log_no_delete")
        op.execute("DROP TRIGGER audit_log_no_update")
        op.execute("DROP TRIGGER disclosure_versions_played_immutable")


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_mac", sa.String(length=64), nullable=False),
        sa.Column("mac", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("mac", name=op.f("uq_audit_log_mac")),
        sa.UniqueConstraint("prev_mac", name=op.f("uq_audit_log_prev_mac")),
    )
    op.create_table(
        "call_events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("call_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("t_mono_ns", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("length(event_id) = 32", name=op.f("ck_call_events_event_id_uuid_hex")),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_call_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_call_events_event_id")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_call_events_call_id_occurred_at"),
        "call_events",
        ["call_id", "occurred_at"],
        unique=False,
    )
    op.create_table(
        "disclosures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disclosures")),
        sa.UniqueConstraint("name", name=op.f("uq_disclosures_name")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "role IN ('admin', 'supervisor', 'auditor')", name=op.f("ck_users_role")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_keys_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    op.create_index(op.f("ix_api_keys_user_id"), "api_keys", ["user_id"], unique=False)
    op.create_table(
        "disclosure_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("disclosure_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("audio_sha256", sa.String(length=64), nullable=False),
        sa.Column("jurisdiction", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "length(audio_sha256) = 64", name=op.f("ck_disclosure_versions_audio_sha256_hex")
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_disclosure_versions_version_positive")),
        sa.ForeignKeyConstraint(
            ["disclosure_id"],
            ["disclosures.id"],
            name=op.f("fk_disclosure_versions_disclosure_id_disclosures"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disclosure_versions")),
        sa.UniqueConstraint(
            "disclosure_id", "version", name=op.f("uq_disclosure_versions_disclosure_id_version")
        ),
    )
    op.create_table(
        "lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("agent_profile", sa.String(length=64), nullable=False),
        sa.Column("disclosure_id", sa.Integer(), nullable=True),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["disclosure_id"],
            ["disclosures.id"],
            name=op.f("fk_lines_disclosure_id_disclosures"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lines")),
        sa.UniqueConstraint("name", name=op.f("uq_lines_name")),
    )
    op.create_table(
        "calls",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("line_id", sa.Integer(), nullable=True),
        sa.Column("caller_hash", sa.String(length=64), nullable=True),
        sa.Column("caller_masked", sa.String(length=32), nullable=True),
        sa.Column("to_number", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('contained', 'escalated', 'abandoned')", name=op.f("ck_calls_outcome")
        ),
        sa.CheckConstraint(
            "(caller_hash IS NULL) = (caller_masked IS NULL)",
            name=op.f("ck_calls_caller_hash_with_mask"),
        ),
        sa.CheckConstraint(
            "answered_at IS NULL OR answered_at >= started_at", name=op.f("ck_calls_answered_order")
        ),
        sa.CheckConstraint(
            "ended_at IS NULL OR ended_at >= started_at", name=op.f("ck_calls_ended_order")
        ),
        sa.CheckConstraint("length(id) = 32", name=op.f("ck_calls_id_uuid_hex")),
        sa.CheckConstraint(
            "outcome IS NULL OR ended_at IS NOT NULL", name=op.f("ck_calls_outcome_after_end")
        ),
        sa.ForeignKeyConstraint(
            ["line_id"], ["lines.id"], name=op.f("fk_calls_line_id_lines"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
    )
    op.create_index(op.f("ix_calls_caller_hash"), "calls", ["caller_hash"], unique=False)
    op.create_index(op.f("ix_calls_line_id"), "calls", ["line_id"], unique=False)
    op.create_index(op.f("ix_calls_started_at"), "calls", ["started_at"], unique=False)
    op.create_table(
        "line_numbers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("line_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["line_id"],
            ["lines.id"],
            name=op.f("fk_line_numbers_line_id_lines"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_line_numbers")),
        sa.UniqueConstraint("number", name=op.f("uq_line_numbers_number")),
    )
    op.create_index(op.f("ix_line_numbers_line_id"), "line_numbers", ["line_id"], unique=False)
    op.create_table(
        "call_legs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("codec", sa.String(length=16), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "kind IN ('caller', 'agent', 'supervisor', 'transfer')", name=op.f("ck_call_legs_kind")
        ),
        sa.CheckConstraint(
            "ended_at IS NULL OR ended_at >= started_at", name=op.f("ck_call_legs_ended_order")
        ),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_call_legs_call_id_calls"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_call_legs_user_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_legs")),
    )
    op.create_index(op.f("ix_call_legs_call_id"), "call_legs", ["call_id"], unique=False)
    op.create_table(
        "call_metrics",
        sa.Column("call_id", sa.String(length=32), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("turns", sa.Integer(), nullable=False),
        sa.Column("barge_ins", sa.Integer(), nullable=False),
        sa.Column("backchannels", sa.Integer(), nullable=False),
        sa.Column("voice_to_voice_p50_ms", sa.Integer(), nullable=True),
        sa.Column("voice_to_voice_p95_ms", sa.Integer(), nullable=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "backchannels >= 0", name=op.f("ck_call_metrics_backchannels_not_negative")
        ),
        sa.CheckConstraint("barge_ins >= 0", name=op.f("ck_call_metrics_barge_ins_not_negative")),
        sa.CheckConstraint(
            "duration_ms >= 0", name=op.f("ck_call_metrics_duration_ms_not_negative")
        ),
        sa.CheckConstraint("turns >= 0", name=op.f("ck_call_metrics_turns_not_negative")),
        sa.CheckConstraint(
            "voice_to_voice_p50_ms >= 0",
            name=op.f("ck_call_metrics_voice_to_voice_p50_ms_not_negative"),
        ),
        sa.CheckConstraint(
            "voice_to_voice_p95_ms >= 0",
            name=op.f("ck_call_metrics_voice_to_voice_p95_ms_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.id"],
            name=op.f("fk_call_metrics_call_id_calls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_call_metrics")),
    )
    op.create_table(
        "disclosure_plays",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=32), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("interrupted", sa.Boolean(), nullable=False),
        sa.Column("consent", sa.String(length=32), nullable=False),
        sa.Column("consent_method", sa.String(length=32), nullable=True),
        sa.CheckConstraint(
            "consent IN ('granted', 'declined', 'no_response', 'not_required')",
            name=op.f("ck_disclosure_plays_consent"),
        ),
        sa.CheckConstraint(
            "consent_method IN ('implied', 'dtmf', 'speech')",
            name=op.f("ck_disclosure_plays_consent_method"),
        ),
        sa.CheckConstraint(
            "consent_method IS NOT NULL OR consent IN ('no_response', 'not_required')",
            name=op.f("ck_disclosure_plays_consent_has_method"),
        ),
        sa.CheckConstraint(
            "ended_at IS NULL OR ended_at >= started_at",
            name=op.f("ck_disclosure_plays_ended_order"),
        ),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.id"],
            name=op.f("fk_disclosure_plays_call_id_calls"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["disclosure_versions.id"],
            name=op.f("fk_disclosure_plays_version_id_disclosure_versions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disclosure_plays")),
    )
    op.create_index(
        op.f("ix_disclosure_plays_call_id"), "disclosure_plays", ["call_id"], unique=False
    )
    op.create_index(
        op.f("ix_disclosure_plays_version_id"), "disclosure_plays", ["version_id"], unique=False
    )
    op.create_table(
        "escalations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.Column("supervisor_id", sa.Integer(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "reason IN ('caller_request', 'dtmf_zero', 'misunderstanding', 'low_confidence', "
            "'frustration', 'sensitive_topic', 'model_failure', 'supervisor_initiative')",
            name=op.f("ck_escalations_reason"),
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'connected', 'handed_back', 'abandoned', 'callback')",
            name=op.f("ck_escalations_status"),
        ),
        sa.CheckConstraint(
            "connected_at IS NULL OR connected_at >= requested_at",
            name=op.f("ck_escalations_connected_order"),
        ),
        sa.CheckConstraint(
            "ended_at IS NULL OR ended_at >= requested_at", name=op.f("ck_escalations_ended_order")
        ),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_escalations_call_id_calls"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["supervisor_id"],
            ["users.id"],
            name=op.f("fk_escalations_supervisor_id_users"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalations")),
    )
    op.create_index(op.f("ix_escalations_call_id"), "escalations", ["call_id"], unique=False)
    op.create_table(
        "transcript_segments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=32), nullable=False),
        sa.Column("speaker", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("start_ms", sa.Integer(), nullable=False),
        sa.Column("end_ms", sa.Integer(), nullable=False),
        sa.Column("interrupted", sa.Boolean(), nullable=False),
        sa.Column("heard_text", sa.Text(), nullable=True),
        sa.Column("heard_ms", sa.Integer(), nullable=True),
        sa.Column("redaction", sa.String(length=32), nullable=False),
        sa.CheckConstraint(
            "redaction IN ('none', 'pending', 'redacted')",
            name=op.f("ck_transcript_segments_redaction"),
        ),
        sa.CheckConstraint(
            "speaker IN ('caller', 'agent', 'supervisor')",
            name=op.f("ck_transcript_segments_speaker"),
        ),
        sa.CheckConstraint(
            "end_ms >= start_ms", name=op.f("ck_transcript_segments_end_after_start")
        ),
        sa.CheckConstraint(
            "heard_ms >= 0", name=op.f("ck_transcript_segments_heard_ms_not_negative")
        ),
        sa.CheckConstraint(
            "heard_ms IS NULL OR heard_ms <= end_ms - start_ms",
            name=op.f("ck_transcript_segments_heard_within"),
        ),
        sa.CheckConstraint(
            "interrupted OR (heard_text IS NULL AND heard_ms IS NULL)",
            name=op.f("ck_transcript_segments_heard_if_interrupted"),
        ),
        sa.CheckConstraint(
            "start_ms >= 0", name=op.f("ck_transcript_segments_start_ms_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.id"],
            name=op.f("fk_transcript_segments_call_id_calls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transcript_segments")),
    )
    op.create_index(
        op.f("ix_transcript_segments_call_id_start_ms"),
        "transcript_segments",
        ["call_id", "start_ms"],
        unique=False,
    )
    op.create_table(
        "turn_metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=32), nullable=False),
        sa.Column("turn_index", sa.Integer(), nullable=False),
        sa.Column("endpointing_ms", sa.Integer(), nullable=True),
        sa.Column("asr_ms", sa.Integer(), nullable=True),
        sa.Column("responder_ms", sa.Integer(), nullable=True),
        sa.Column("first_audio_ms", sa.Integer(), nullable=True),
        sa.Column("voice_to_voice_ms", sa.Integer(), nullable=True),
        sa.CheckConstraint("asr_ms >= 0", name=op.f("ck_turn_metrics_asr_ms_not_negative")),
        sa.CheckConstraint(
            "endpointing_ms >= 0", name=op.f("ck_turn_metrics_endpointing_ms_not_negative")
        ),
        sa.CheckConstraint(
            "first_audio_ms >= 0", name=op.f("ck_turn_metrics_first_audio_ms_not_negative")
        ),
        sa.CheckConstraint(
            "responder_ms >= 0", name=op.f("ck_turn_metrics_responder_ms_not_negative")
        ),
        sa.CheckConstraint("turn_index >= 0", name=op.f("ck_turn_metrics_turn_index_not_negative")),
        sa.CheckConstraint(
            "voice_to_voice_ms >= 0", name=op.f("ck_turn_metrics_voice_to_voice_ms_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.id"],
            name=op.f("fk_turn_metrics_call_id_calls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_turn_metrics")),
        sa.UniqueConstraint(
            "call_id", "turn_index", name=op.f("uq_turn_metrics_call_id_turn_index")
        ),
    )
    _create_guards()


def downgrade() -> None:
    _drop_guards()
    op.drop_table("turn_metrics")
    op.drop_index(op.f("ix_transcript_segments_call_id_start_ms"), table_name="transcript_segments")
    op.drop_table("transcript_segments")
    op.drop_index(op.f("ix_escalations_call_id"), table_name="escalations")
    op.drop_table("escalations")
    op.drop_index(op.f("ix_disclosure_plays_version_id"), table_name="disclosure_plays")
    op.drop_index(op.f("ix_disclosure_plays_call_id"), table_name="disclosure_plays")
    op.drop_table("disclosure_plays")
    op.drop_table("call_metrics")
    op.drop_index(op.f("ix_call_legs_call_id"), table_name="call_legs")
    op.drop_table("call_legs")
    op.drop_index(op.f("ix_line_numbers_line_id"), table_name="line_numbers")
    op.drop_table("line_numbers")
    op.drop_index(op.f("ix_calls_started_at"), table_name="calls")
    op.drop_index(op.f("ix_calls_line_id"), table_name="calls")
    op.drop_index(op.f("ix_calls_caller_hash"), table_name="calls")
    op.drop_table("calls")
    op.drop_table("lines")
    op.drop_table("disclosure_versions")
    op.drop_index(op.f("ix_api_keys_user_id"), table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("users")
    op.drop_table("disclosures")
    op.drop_index(op.f("ix_call_events_call_id_occurred_at"), table_name="call_events")
    op.drop_table("call_events")
    op.drop_table("audit_log")
