"""Parley's tables: lines, calls and what happens on them, disclosures, users, the audit log.

The same schema runs on PostgreSQL and SQLite. Constraint and index names come from one naming
convention so Alembic sees the same schema on both; enums are short strings guarded by CHECK
constraints; every timestamp is timezone-aware UTC. Rules that must hold whoever writes the
row (durations, outcome values, who may be edited) are CHECK constraints or triggers, not only
Python.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    exists,
    select,
    text,
    true,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column, relationship

# An escalation's states and events are the lifecycle's own, so what is stored and the state
# machine cannot drift apart; re-exported for the rest of admin.
from escalation.lifecycle import EscalationEvent, EscalationState

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp that is always timezone-aware UTC, also on SQLite (which keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: pass a timezone-aware one")
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSON()}


ENUM_LENGTH = 32


def _enum(cls: type[enum.StrEnum]) -> Enum:
    """A string column holding one of `cls`'s values; a wrong value fails before the INSERT."""
    return Enum(
        cls,
        native_enum=False,
        create_constraint=False,  # the named CHECK from _one_of guards the column instead
        length=ENUM_LENGTH,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


def _one_of(column: str, cls: type[enum.StrEnum]) -> CheckConstraint:
    values = ", ".join(f"'{member.value}'" for member in cls)
    return CheckConstraint(f"{column} IN ({values})", name=column)


def _not_negative(*columns: str) -> list[CheckConstraint]:
    return [CheckConstraint(f"{column} >= 0", name=f"{column}_not_negative") for column in columns]


# --- enums -------------------------------------------------------------------------------------


class Role(enum.StrEnum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"


class Outcome(enum.StrEnum):
    CONTAINED = "contained"  # the agent handled the call to its end
    ESCALATED = "escalated"  # a person took it over
    ABANDONED = "abandoned"  # the caller hung up before it was resolved


class LegKind(enum.StrEnum):
    CALLER = "caller"
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    TRANSFER = "transfer"


class Speaker(enum.StrEnum):
    CALLER = "caller"
    AGENT = "agent"
    SUPERVISOR = "supervisor"


class Redaction(enum.StrEnum):
    NONE = "none"
    PENDING = "pending"
    REDACTED = "redacted"


class RecordingState(enum.StrEnum):
    RECORDING = "recording"  # started; the call has not ended yet
    FINISHED = "finished"  # sealed, hashes known
    FAILED = "failed"  # could not be written or sealed (reason says why)


class ConsentResult(enum.StrEnum):
    GRANTED = "granted"
    DECLINED = "declined"
    NO_RESPONSE = "no_response"
    NOT_REQUIRED = "not_required"


class ConsentMethod(enum.StrEnum):
    IMPLIED = "implied"  # stayed on the line after the disclosure
    DTMF = "dtmf"
    SPEECH = "speech"


class EscalationReason(enum.StrEnum):
    CALLER_REQUEST = "caller_request"
    DTMF_ZERO = "dtmf_zero"
    MISUNDERSTANDING = "misunderstanding"
    LOW_CONFIDENCE = "low_confidence"
    FRUSTRATION = "frustration"
    SENSITIVE_TOPIC = "sensitive_topic"
    MODEL_FAILURE = "model_failure"
    SUPERVISOR_INITIATIVE = "supervisor_initiative"


# --- users -------------------------------------------------------------------------------------


class User(Base):
    __tablename__ = "users"
    __table_args__ = (_one_of("role", Role),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[Role] = mapped_column(_enum(Role))
    password_hash: Mapped[str | None] = mapped_column(String(255))  # None: API keys only
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="user")


class ApiKey(Base):
    """Only the key's SHA-256 is kept; `prefix` is the part shown to tell keys apart."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]

    user: Mapped[User] = relationship(back_populates="api_keys")


# --- disclosures and lines ---------------------------------------------------------------------


class Disclosure(Base):
    """A named notice (say, 'ai-and-recording-us'); what callers hear is one of its versions."""

    __tablename__ = "disclosures"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    versions: Mapped[list[DisclosureVersion]] = relationship(
        back_populates="disclosure", order_by="DisclosureVersion.version"
    )


class DisclosureVersion(Base):
    """The exact text and audio of one version. Once played to a caller it is evidence and
    can no longer be changed or deleted: a new version is added instead."""

    __tablename__ = "disclosure_versions"
    __table_args__ = (
        UniqueConstraint("disclosure_id", "version"),
        CheckConstraint("version >= 1", name="version_positive"),
        CheckConstraint("length(audio_sha256) = 64", name="audio_sha256_hex"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    disclosure_id: Mapped[int] = mapped_column(ForeignKey("disclosures.id", ondelete="RESTRICT"))
    version: Mapped[int]
    text: Mapped[str] = mapped_column(Text)
    audio_sha256: Mapped[str] = mapped_column(String(64))
    jurisdiction: Mapped[str] = mapped_column(String(32))  # e.g. 'US-CA', 'EU'
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    disclosure: Mapped[Disclosure] = relationship(back_populates="versions")


class Line(Base):
    __tablename__ = "lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    agent_profile: Mapped[str] = mapped_column(String(64))
    disclosure_id: Mapped[int | None] = mapped_column(
        ForeignKey("disclosures.id", ondelete="RESTRICT")
    )
    queue: Mapped[str | None] = mapped_column(String(64))
    # The settings file is the source of truth for lines (admin.line_sync): a line dropped
    # from it is deactivated, not deleted, because its calls still refer to it.
    active: Mapped[bool] = mapped_column(default=True, server_default=true())
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    numbers: Mapped[list[LineNumber]] = relationship(
        back_populates="line", cascade="all, delete-orphan"
    )
    disclosure: Mapped[Disclosure | None] = relationship()


class LineNumber(Base):
    """A number the business publishes for a line (not personal data; kept in clear)."""

    __tablename__ = "line_numbers"

    id: Mapped[int] = mapped_column(primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id", ondelete="CASCADE"), index=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)

    line: Mapped[Line] = relationship(back_populates="numbers")


# --- calls -------------------------------------------------------------------------------------


class Call(Base):
    """One inbound call, keyed by the UUID hex the media worker gave it.

    The caller's number is only here as a keyed hash (to find calls by number) and a masked
    form (to show); see admin.phone_numbers.
    """

    __tablename__ = "calls"
    __table_args__ = (
        _one_of("outcome", Outcome),
        CheckConstraint("length(id) = 32", name="id_uuid_hex"),
        CheckConstraint("answered_at IS NULL OR answered_at >= started_at", name="answered_order"),
        CheckConstraint("ended_at IS NULL OR ended_at >= started_at", name="ended_order"),
        CheckConstraint("outcome IS NULL OR ended_at IS NOT NULL", name="outcome_after_end"),
        CheckConstraint(
            "(caller_hash IS NULL) = (caller_masked IS NULL)", name="caller_hash_with_mask"
        ),
        Index(None, "started_at"),
        Index(None, "duration_sort_ms", "id"),  # serves /calls?sort=(-)duration
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    line_id: Mapped[int | None] = mapped_column(
        ForeignKey("lines.id", ondelete="RESTRICT"), index=True
    )
    caller_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    caller_masked: Mapped[str | None] = mapped_column(String(32))
    to_number: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[dt.datetime]
    answered_at: Mapped[dt.datetime | None]
    ended_at: Mapped[dt.datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[Outcome | None] = mapped_column(_enum(Outcome))
    # The duration from the call's metrics, copied here by the rollup so that sorting by it is
    # an index scan; -1 until the metrics exist (such calls sort as the shortest).
    duration_sort_ms: Mapped[int] = mapped_column(default=-1, server_default=text("-1"))
    # The redaction policy the call's words were stored under (agent.redaction: the detector's
    # version, the kinds and the country; "off"); NULL for calls stored before it was recorded.
    redaction_policy: Mapped[str | None] = mapped_column(String(200))

    line: Mapped[Line | None] = relationship()
    legs: Mapped[list[CallLeg]] = relationship(back_populates="call", cascade="all")
    segments: Mapped[list[TranscriptSegment]] = relationship(
        back_populates="call", cascade="all", order_by="TranscriptSegment.start_ms"
    )
    metrics: Mapped[CallMetrics | None] = relationship(back_populates="call", cascade="all")


class CallLeg(Base):
    __tablename__ = "call_legs"
    __table_args__ = (
        _one_of("kind", LegKind),
        CheckConstraint("ended_at IS NULL OR ended_at >= started_at", name="ended_order"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    kind: Mapped[LegKind] = mapped_column(_enum(LegKind))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    codec: Mapped[str | None] = mapped_column(String(16))
    started_at: Mapped[dt.datetime]
    ended_at: Mapped[dt.datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(64))

    call: Mapped[Call] = relationship(back_populates="legs")


class TranscriptSegment(Base):
    """What one party said, in ms from the call's start. When the agent was interrupted,
    `heard_text`/`heard_ms` hold the part the caller actually heard."""

    __tablename__ = "transcript_segments"
    __table_args__ = (
        _one_of("speaker", Speaker),
        _one_of("redaction", Redaction),
        *_not_negative("start_ms", "heard_ms"),
        CheckConstraint("end_ms >= start_ms", name="end_after_start"),
        CheckConstraint("heard_ms IS NULL OR heard_ms <= end_ms - start_ms", name="heard_within"),
        CheckConstraint(
            "interrupted OR (heard_text IS NULL AND heard_ms IS NULL)", name="heard_if_interrupted"
        ),
        Index(None, "call_id", "start_ms"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    speaker: Mapped[Speaker] = mapped_column(_enum(Speaker))
    text: Mapped[str] = mapped_column(Text)
    start_ms: Mapped[int]
    end_ms: Mapped[int]
    interrupted: Mapped[bool] = mapped_column(default=False)
    heard_text: Mapped[str | None] = mapped_column(Text)
    heard_ms: Mapped[int | None]
    redaction: Mapped[Redaction] = mapped_column(_enum(Redaction), default=Redaction.NONE)

    call: Mapped[Call] = relationship(back_populates="segments")


class DisclosurePlay(Base):
    """A disclosure version played on a call, and the consent it got.

    Plays are evidence: neither the call nor the version can be deleted while one refers to it.
    """

    __tablename__ = "disclosure_plays"
    __table_args__ = (
        _one_of("consent", ConsentResult),
        _one_of("consent_method", ConsentMethod),
        CheckConstraint("ended_at IS NULL OR ended_at >= started_at", name="ended_order"),
        CheckConstraint(
            "consent_method IS NOT NULL OR consent IN ('no_response', 'not_required')",
            name="consent_has_method",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="RESTRICT"), index=True)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("disclosure_versions.id", ondelete="RESTRICT"), index=True
    )
    started_at: Mapped[dt.datetime]
    ended_at: Mapped[dt.datetime | None]
    interrupted: Mapped[bool] = mapped_column(default=False)
    consent: Mapped[ConsentResult] = mapped_column(_enum(ConsentResult))
    consent_method: Mapped[ConsentMethod | None] = mapped_column(_enum(ConsentMethod))
    # How it was played (admin.projection): the jurisdiction rules applied (rules_version,
    # places, rules, ai_notice_required, recording), what the notice covers, barged_in and
    # heard_ms, talked_over, and a spoken answer's words (redacted). None before 0008.
    circumstances: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    version: Mapped[DisclosureVersion] = relationship()


class Recording(Base):
    """A call's recording: the encrypted file (telephony/recording.py) in the recordings
    folder, and what proves it: the SHA-256 of its audio and of the file, and the PCI pauses
    (silence in the file; ms from the recording's start, with who paused)."""

    __tablename__ = "recordings"
    __table_args__ = (
        _one_of("state", RecordingState),
        *_not_negative("duration_ms"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(
        ForeignKey("calls.id", ondelete="CASCADE"), unique=True, index=True
    )
    file: Mapped[str] = mapped_column(String(80))
    state: Mapped[RecordingState] = mapped_column(_enum(RecordingState))
    started_at: Mapped[dt.datetime]
    duration_ms: Mapped[int | None]
    pcm_sha256: Mapped[str | None] = mapped_column(String(64))
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    pauses: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    reason: Mapped[str | None] = mapped_column(String(200))


class LegalHold(Base):
    """Keeps a call, or every call of one caller (by number hash), from purge and erasure until
    released. Holds are evidence too: never deleted, only released (both audited)."""

    __tablename__ = "legal_holds"
    __table_args__ = (
        CheckConstraint("(call_id IS NULL) <> (caller_hash IS NULL)", name="one_subject"),
        CheckConstraint("released_at IS NULL OR released_at >= created_at", name="release_order"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str | None] = mapped_column(String(32), index=True)
    caller_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    caller_masked: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(500))
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[dt.datetime]
    released_by: Mapped[str | None] = mapped_column(String(120))
    released_at: Mapped[dt.datetime | None]


class ErasureReceipt(Base):
    """What is left of a caller after erasure: that it happened, when, for whom (the keyed
    hash of their number, which only the number key links to a number), what went."""

    __tablename__ = "erasure_receipts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    subject_hash: Mapped[str] = mapped_column(String(64), index=True)
    requested_by: Mapped[str] = mapped_column(String(120))
    erased_at: Mapped[dt.datetime]
    calls: Mapped[int]
    removed: Mapped[dict[str, Any]] = mapped_column(JSON)  # rows by table, files, lines


class CallEventRecord(Base):
    """A `telephony.events.CallEvent` as received: append-only, one row per event id.

    `call_id` has no foreign key on purpose: events arrive from the workers' spool in any
    order, and the event that creates the call row may come after others for it.
    """

    __tablename__ = "call_events"
    __table_args__ = (
        CheckConstraint("length(event_id) = 32", name="event_id_uuid_hex"),
        Index(None, "call_id", "occurred_at"),
        {"sqlite_autoincrement": True},  # a seq is never reused, even after deletes
    )

    # Insertion order, for readers that poll "events after N" (the dashboard's live stream).
    # The ingester serializes its inserts, so a higher seq is never committed before a lower.
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[str] = mapped_column(String(32), unique=True)
    call_id: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[dt.datetime]
    t_mono_ns: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[dict[str, Any]]
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class TurnMetrics(Base):
    """Where the time went in one turn, from the caller's end of speech, in ms."""

    __tablename__ = "turn_metrics"
    __table_args__ = (
        UniqueConstraint("call_id", "turn_index"),
        *_not_negative(
            "turn_index",
            "endpointing_ms",
            "asr_ms",
            "responder_ms",
            "first_audio_ms",
            "voice_to_voice_ms",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    turn_index: Mapped[int]
    endpointing_ms: Mapped[int | None]
    asr_ms: Mapped[int | None]
    responder_ms: Mapped[int | None]
    first_audio_ms: Mapped[int | None]
    voice_to_voice_ms: Mapped[int | None]
    # Who answered: "parley-embedded", or the hosted model's name ("gpt-realtime").
    model: Mapped[str | None] = mapped_column(String(120))


class CallMetrics(Base):
    __tablename__ = "call_metrics"
    __table_args__ = tuple(
        _not_negative(
            "duration_ms",
            "turns",
            "barge_ins",
            "backchannels",
            "voice_to_voice_p50_ms",
            "voice_to_voice_p95_ms",
        )
    )

    call_id: Mapped[str] = mapped_column(
        ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True
    )
    duration_ms: Mapped[int]
    turns: Mapped[int] = mapped_column(default=0)
    barge_ins: Mapped[int] = mapped_column(default=0)
    backchannels: Mapped[int] = mapped_column(default=0)
    voice_to_voice_p50_ms: Mapped[int | None]
    voice_to_voice_p95_ms: Mapped[int | None]
    computed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    call: Mapped[Call] = relationship(back_populates="metrics")


class Escalation(Base):
    """One escalation of a call to a person, as its `call.escalation` events built it.

    `ref` is the escalation id the escalation service gave it (UUID hex), the one the API
    shows. `state` is the state its latest transition left it in. A callback number is only
    here as a keyed hash and a masked form, like a caller's (admin.phone_numbers).
    """

    __tablename__ = "escalations"
    __table_args__ = (
        _one_of("reason", EscalationReason),
        _one_of("state", EscalationState),
        CheckConstraint("length(ref) = 32", name="ref_uuid_hex"),
        CheckConstraint("offered_at IS NULL OR offered_at >= requested_at", name="offered_order"),
        CheckConstraint(
            "connected_at IS NULL OR connected_at >= requested_at", name="connected_order"
        ),
        CheckConstraint("ended_at IS NULL OR ended_at >= requested_at", name="ended_order"),
        CheckConstraint(
            "(callback_number_hash IS NULL) = (callback_number_masked IS NULL)",
            name="callback_hash_with_mask",
        ),
        Index(None, "state", "requested_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(32), unique=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    # None until the `request` transition is seen (transitions may arrive out of order).
    reason: Mapped[EscalationReason | None] = mapped_column(_enum(EscalationReason))
    state: Mapped[EscalationState] = mapped_column(
        _enum(EscalationState), default=EscalationState.REQUESTED
    )
    queue: Mapped[str | None] = mapped_column(String(64))
    supervisor: Mapped[str | None] = mapped_column(String(64))  # the name the service gave
    supervisor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    summary: Mapped[str | None] = mapped_column(Text)
    callback_number_hash: Mapped[str | None] = mapped_column(String(64))
    callback_number_masked: Mapped[str | None] = mapped_column(String(32))
    requested_at: Mapped[dt.datetime]
    offered_at: Mapped[dt.datetime | None]
    connected_at: Mapped[dt.datetime | None]
    ended_at: Mapped[dt.datetime | None]

    transitions: Mapped[list[EscalationTransition]] = relationship(
        back_populates="escalation",
        cascade="all",
        order_by="EscalationTransition.seq",
    )


class EscalationTransition(Base):
    """One step of an escalation's life (escalation.lifecycle.Transition), as stored: which
    event, from which state to which, who did it and when. Append-only; no personal data."""

    __tablename__ = "escalation_transitions"
    __table_args__ = (
        UniqueConstraint("escalation_id", "seq"),
        _one_of("event", EscalationEvent),
        _one_of("from_state", EscalationState),
        _one_of("to_state", EscalationState),
        CheckConstraint("seq >= 1", name="seq_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    escalation_id: Mapped[int] = mapped_column(
        ForeignKey("escalations.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int]  # 1, 2, 3… in the order the transitions were stored
    event: Mapped[EscalationEvent] = mapped_column(_enum(EscalationEvent))
    from_state: Mapped[EscalationState | None] = mapped_column(_enum(EscalationState))
    to_state: Mapped[EscalationState] = mapped_column(_enum(EscalationState))
    actor: Mapped[str] = mapped_column(String(128))
    detail: Mapped[str | None] = mapped_column(String(255))
    at: Mapped[dt.datetime]

    escalation: Mapped[Escalation] = relationship(back_populates="transitions")


# --- audit -------------------------------------------------------------------------------------


class AuditEntry(Base):
    """One link of the hash chain (admin.audit). Ids are assigned by the appender, 1, 2, 3…;
    a unique `prev_mac` means two writers can never both extend the same entry."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime]
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255), index=True)  # a call's trail: call:<id>
    details: Mapped[dict[str, Any]]
    prev_mac: Mapped[str] = mapped_column(String(64), unique=True)
    mac: Mapped[str] = mapped_column(String(64), unique=True)


# --- rules the ORM enforces before the database does -------------------------------------------


class ImmutableRowError(Exception):
    """An attempt to change a row that is evidence (a played disclosure, an audit entry)."""


def _played(connection: Connection, version_id: int) -> bool:
    query = select(exists().where(DisclosurePlay.version_id == version_id))
    return bool(connection.scalar(query))


@event.listens_for(DisclosureVersion, "before_update")
@event.listens_for(DisclosureVersion, "before_delete")
def _refuse_played_version(
    _mapper: Mapper[Any], connection: Connection, target: DisclosureVersion
) -> None:
    if _played(connection, target.id):
        raise ImmutableRowError(
            f"disclosure version {target.id} has been played to callers and cannot be changed; "
            "add a new version instead"
        )


@event.listens_for(AuditEntry, "before_update")
@event.listens_for(AuditEntry, "before_delete")
@event.listens_for(CallEventRecord, "before_update")
@event.listens_for(EscalationTransition, "before_update")
def _refuse_append_only(_mapper: Mapper[Any], _connection: Connection, target: Base) -> None:
    raise ImmutableRowError(f"{type(target).__tablename__} is append-only")


@event.listens_for(CallMetrics, "after_insert")
@event.listens_for(CallMetrics, "after_update")
def _copy_sort_duration(_mapper: Mapper[Any], connection: Connection, target: CallMetrics) -> None:
    # Calls sort by duration through calls.duration_sort_ms (indexed); keep it in step with
    # metrics written through the ORM. admin.jobs.rollup, which upserts in Core, sets it itself.
    connection.execute(
        update(Call).where(Call.id == target.call_id).values(duration_sort_ms=target.duration_ms)
    )
