"""What the API takes and returns. ORM rows never leave a route: they become these."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from admin.models import (
    ConsentMethod,
    ConsentResult,
    EscalationReason,
    LegKind,
    Outcome,
    RecordingState,
    Redaction,
    Role,
    Speaker,
)
from agent.profiles import PROFILES
from escalation.commands import PresenceState
from escalation.lifecycle import EscalationEvent, EscalationState
from telephony.phases import Mode

_EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)


def _utc_in_range(value: dt.datetime) -> dt.datetime:
    if not _EARLIEST <= value < _LATEST:
        raise ValueError("must be between 1970 and 2200")
    return value.astimezone(dt.UTC)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _known_profile(value: str) -> str:
    if value not in PROFILES:
        raise ValueError(f"unknown agent profile; known: {', '.join(PROFILES)}")
    return value


# A timezone-aware time (ISO 8601 with an offset), returned in UTC.
Timestamp = Annotated[AwareDatetime, AfterValidator(_utc_in_range)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=20_000), AfterValidator(_no_nul)]
Slug = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=256), AfterValidator(_no_nul)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Jurisdiction = Annotated[
    str, StringConstraints(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
]
BusinessNumber = Annotated[str, StringConstraints(pattern=r"^\+?[0-9]{1,31}$")]
AgentProfile = Annotated[str, AfterValidator(_known_profile)]
Id = Annotated[int, Field(ge=1, le=2**31 - 1)]


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- auth ------------------------------------------------------------------------------------


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: dt.datetime


class Me(BaseModel):
    id: int
    username: str
    role: Role
    via: str = Field(description="'token' or 'api_key:<prefix>'")


# --- calls -----------------------------------------------------------------------------------


class CallSummary(BaseModel):
    id: str
    line_id: int | None
    line: str | None
    caller: str | None = Field(description="the caller's number, masked; never in clear")
    to_number: str = Field(description="the number dialled; masked when it is no phone number")
    started_at: dt.datetime
    answered_at: dt.datetime | None
    ended_at: dt.datetime | None
    end_reason: str | None
    outcome: Outcome | None
    escalated: bool
    duration_ms: int | None = Field(description="from the call's metrics, once computed")


class CallPage(BaseModel):
    items: list[CallSummary]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null: last")


class LegOut(Out):
    id: int
    kind: LegKind
    user_id: int | None
    codec: str | None
    started_at: dt.datetime
    ended_at: dt.datetime | None
    end_reason: str | None


class SegmentOut(Out):
    id: int
    speaker: Speaker
    text: str
    start_ms: int
    end_ms: int
    interrupted: bool
    heard_text: str | None = Field(description="for interrupted speech: what the caller heard")
    heard_ms: int | None
    redaction: Redaction


class RecordingPauseOut(BaseModel):
    start_ms: int = Field(description="from the recording's start")
    end_ms: int | None
    by: str = Field(description="api:<who>, dtmf (the line's pause key), or carried")


class RecordingOut(Out):
    state: RecordingState
    started_at: dt.datetime
    duration_ms: int | None
    pcm_sha256: str | None = Field(description="SHA-256 of the decrypted audio (s16le stereo)")
    file_sha256: str | None = Field(description="SHA-256 of the encrypted file as stored")
    pauses: list[RecordingPauseOut] = Field(description="PCI pauses: silence in the file")
    reason: str | None = Field(description="why it failed")


class DisclosurePlayOut(BaseModel):
    id: int
    disclosure: str
    version: int
    version_id: int
    jurisdiction: str
    audio_sha256: str
    text: str
    started_at: dt.datetime
    ended_at: dt.datetime | None
    interrupted: bool
    consent: ConsentResult
    consent_method: ConsentMethod | None
    circumstances: dict[str, Any] | None = Field(
        None,
        description="how it was played: rules (the jurisdiction rules applied: rules_version, "
        "places, rules, ai_notice_required, recording), covers, barged_in and heard_ms, "
        "talked_over, answer (a spoken answer's words, redacted)",
    )


class EventOut(BaseModel):
    event_id: str
    call_id: str
    kind: str
    occurred_at: dt.datetime
    received_at: dt.datetime
    data: dict[str, Any] = Field(
        description="as the worker sent it, caller numbers masked, control characters removed "
        "and strings over 2000 characters cut ('…[+N chars]')"
    )


class TurnMetricsOut(Out):
    turn_index: int
    endpointing_ms: int | None
    asr_ms: int | None
    responder_ms: int | None
    first_audio_ms: int | None
    voice_to_voice_ms: int | None


class CallMetricsOut(Out):
    duration_ms: int
    turns: int
    barge_ins: int
    backchannels: int
    voice_to_voice_p50_ms: int | None
    voice_to_voice_p95_ms: int | None
    computed_at: dt.datetime


class TransitionOut(Out):
    seq: int = Field(description="1, 2, 3… in the order the transitions were stored")
    event: EscalationEvent
    from_state: EscalationState | None
    to_state: EscalationState
    actor: str = Field(description="'system', 'caller' or 'supervisor:<name>'")
    detail: str | None
    at: dt.datetime


class EscalationSummary(Out):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    ref: str = Field(description="the escalation's id (UUID hex)")
    call_id: str
    reason: EscalationReason | None = Field(description="null until the request is recorded")
    state: EscalationState
    queue: str | None
    supervisor: str | None = Field(description="who was offered or took the call, by name")
    callback_number: str | None = Field(
        validation_alias="callback_number_masked",
        description="the number the caller left for a callback, masked; never in clear",
    )
    summary: str | None
    requested_at: dt.datetime
    offered_at: dt.datetime | None
    connected_at: dt.datetime | None
    ended_at: dt.datetime | None


class EscalationDetail(EscalationSummary):
    transitions: list[TransitionOut]


class EscalationPage(BaseModel):
    items: list[EscalationSummary]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null: last")


class CallDetail(CallSummary):
    legs: list[LegOut]
    transcript: list[SegmentOut]
    disclosure_plays: list[DisclosurePlayOut]
    escalations: list[EscalationDetail]
    events: list[EventOut]
    turn_metrics: list[TurnMetricsOut]
    metrics: CallMetricsOut | None
    recording: RecordingOut | None = Field(
        None, description="none: not recorded (no consent, or the line does not record)"
    )
    redaction_policy: str | None = Field(
        None, description="the redaction policy the call's words were stored under"
    )


# --- metrics ---------------------------------------------------------------------------------


class MetricsBucket(BaseModel):
    start: dt.datetime
    end: dt.datetime
    calls: int = Field(description="calls that started in the bucket")
    finished: int = Field(description="of those, calls that ended with an outcome")
    containment_rate: float | None = Field(description="contained / finished")
    escalation_rate: float | None = Field(description="calls with an escalation / calls")
    escalation_rate_by_reason: dict[str, float] = Field(
        description="per reason: calls escalated for it / calls"
    )
    aht_ms: float | None = Field(description="mean handled time: answered to ended")
    asa_ms: float | None = Field(description="mean time to answer: started to answered")
    escalation_asa_ms: float | None = Field(
        description="mean time from an escalation's request to a supervisor connecting"
    )
    voice_to_voice_p50_ms: int | None = Field(description="nearest-rank, over every turn")
    voice_to_voice_p95_ms: int | None
    barge_ins_per_call: float | None = Field(description="over calls with metrics")


class QueueFigures(BaseModel):
    """One escalation queue over the range (escalations of calls that started in it)."""

    name: str
    escalations: int
    connected: int = Field(description="reached a supervisor")
    abandoned: int = Field(description="the caller hung up before reaching one")
    service_level_target_s: float
    service_level: float | None = Field(
        description="connected within the target / (connected + abandoned)"
    )
    abandonment_rate: float | None = Field(description="abandoned / escalations")


class ModelFigures(BaseModel):
    """One model's turns over the range (turns of calls that started in it), measured the
    same way for every adapter: from the caller's end of speech to the model's first audio."""

    model: str = Field(description='"parley-embedded", or the hosted model\'s name')
    turns: int
    voice_to_voice_p50_ms: int | None
    voice_to_voice_p95_ms: int | None
    endpointing_ms: float | None = Field(description="mean: end of speech to the turn's end")
    first_audio_ms: float | None = Field(description="mean: the turn's end to the first audio")


class MetricsSummary(BaseModel):
    from_: dt.datetime = Field(alias="from")
    to: dt.datetime
    bucket: Literal["hour", "day"]
    total: MetricsBucket
    buckets: list[MetricsBucket]
    queues: list[QueueFigures] = Field(default_factory=list)
    models: list[ModelFigures] = Field(default_factory=list)

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


# --- disclosures -----------------------------------------------------------------------------


class VersionIn(Input):
    text: Text
    audio_sha256: Sha256 = Field(description="SHA-256 of the audio callers hear, 64 hex digits")
    jurisdiction: Jurisdiction = Field(examples=["US-CA", "EU"])


class DisclosureIn(VersionIn):
    name: Slug = Field(examples=["ai-and-recording-us"])


class VersionPatch(Input):
    text: Text | None = None
    audio_sha256: Sha256 | None = None
    jurisdiction: Jurisdiction | None = None


class VersionOut(BaseModel):
    id: int
    version: int
    text: str
    audio_sha256: str
    jurisdiction: str
    created_at: dt.datetime
    played: bool = Field(description="played to a caller: frozen, correct it with a new version")


class DisclosureOut(BaseModel):
    id: int
    name: str
    created_at: dt.datetime
    versions: list[VersionOut]


# --- lines -----------------------------------------------------------------------------------


class LineIn(Input):
    name: Slug
    agent_profile: AgentProfile = "embedded"
    disclosure_id: Id | None = None
    queue: Slug | None = None
    numbers: list[BusinessNumber] = Field(default=[], max_length=100)


class LinePatch(Input):
    agent_profile: AgentProfile | None = None
    disclosure_id: Id | None = None
    queue: Slug | None = None
    numbers: list[BusinessNumber] | None = Field(default=None, max_length=100)


class LineOut(BaseModel):
    id: int
    name: str
    agent_profile: str
    disclosure_id: int | None
    queue: str | None
    numbers: list[str]
    active: bool  # False: no longer in the settings file (which is the source of truth)
    created_at: dt.datetime


# --- users and keys --------------------------------------------------------------------------


class UserIn(Input):
    username: Slug
    role: Role
    password: Password | None = Field(None, description="omit for a user of API keys only")


class UserPatch(Input):
    role: Role | None = None
    active: bool | None = None
    password: Password | None = None


class UserOut(Out):
    id: int
    username: str
    role: Role
    active: bool
    has_password: bool
    created_at: dt.datetime


class ApiKeyIn(Input):
    name: Slug
    user_id: Id | None = Field(None, description="whose key; default: yours")


class ApiKeyOut(BaseModel):
    id: int
    user_id: int
    username: str
    name: str
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class IssuedApiKey(ApiKeyOut):
    key: str = Field(description="shown this once; only its hash is stored")


# --- audit -----------------------------------------------------------------------------------


class AuditEntryOut(Out):
    id: int
    at: dt.datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    mac: str


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None


class AuditVerification(BaseModel):
    ok: bool
    entries: int
    first_bad_id: int | None = Field(description="the first entry that breaks the chain")
    checkpoints: int = Field(0, description="signed checkpoints the chain was held against")
    problems: list[str] = Field(
        default_factory=list,
        description="what is wrong, for people: a bad entry, a chain cut short or rewritten "
        "against a checkpoint, a checkpoint file edited",
    )


# --- call control and supervision --------------------------------------------------------------


class TransferIn(Input):
    target: str = Field(min_length=1, max_length=256, description="a sip: or sips: URI")


class ModeIn(Input):
    mode: Mode


class WhisperIn(Input):
    text: Annotated[str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)]


class HandBackIn(Input):
    note: (
        Annotated[str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)]
        | None
    ) = Field(None, description="a fact for the agent, e.g. what was agreed")


class SuperviseIn(Input):
    phone: Slug = Field(
        description="a phone's name from the sip.phones settings, or browser (your dashboard tab)"
    )


class CallCommandOut(BaseModel):
    """What the call is now, as the media worker holding it says."""

    command_id: str
    phase: str | None = None
    mode: str | None = None
    agent: str | None = None
    recording: bool | None = Field(None, description="recording/pause: the call is recorded")
    paused: bool | None = Field(None, description="recording/pause: a PCI pause is on")


class PresenceIn(Input):
    state: PresenceState


class PresenceOut(BaseModel):
    supervisor: str
    state: PresenceState


class OfferIn(Input):
    supervisor: Slug | None = Field(
        None, description="the supervisor (admins name one; a supervisor is themselves)"
    )


class OfferOut(BaseModel):
    call_id: str
    escalation_id: str
    supervisor: str


class WaitingCallOut(BaseModel):
    call_id: str
    escalation_id: str
    reason: str
    waited_s: float
    position: int | None = Field(description="1: the next to be offered; null while it rings")
    expected_wait_s: float | None = Field(description="null with nothing to go on")
    offered_to: str | None


class QueueOut(BaseModel):
    name: str
    waiting: int
    calls: list[WaitingCallOut] = Field(description="the first 40 waiting calls across queues")
    service_level: float | None


class SupervisorOut(BaseModel):
    name: str
    state: str
    queues: list[str]
    call_id: str | None = Field(description="the call they are on or being rung into")
    offered_call_id: str | None


class QueuesOut(BaseModel):
    queues: list[QueueOut]
    supervisors: list[SupervisorOut]
