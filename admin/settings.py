"""Parley's settings: one object, read once, from PARLEY_* variables and an optional YAML file.

Precedence (highest first): explicit arguments, environment (PARLEY_SIP__PORT=5070), the YAML
file named by PARLEY_CONFIG (or `parley --config`), then the defaults below.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from admin.disclosure_settings import ConsentSettings, DisclosureSettings
from admin.erasure import Files
from admin.jobs.config import JobsSettings
from admin.keyfile import Keys, keys_home, load_keys, move_legacy_keys
from agent.pii import DEFAULT_REGION
from agent.profiles import ADAPTERS, PROFILES, ModelTarget, SessionTarget
from agent.redaction import RedactionPolicy
from agent.remote import safe_url
from escalation.acd import QueuePolicy
from escalation.triggers import policy_from_settings
from telephony.browserleg import audio_path
from telephony.commands import BROWSER_PHONE, browser_uri
from telephony.edge import EdgeConfig, FloodLimits, TlsListener, WorkerAddress
from telephony.inbox import inbox_path
from telephony.jurisdiction import RuleBook
from telephony.lines import Line, LineRouter
from telephony.phones import SupervisorPhone
from telephony.recording import RecordingStore, recording_key
from telephony.rtpwatch import MIN_TIMEOUT_S
from telephony.trunks import SrtpPolicy, Trunk, check_trunks, normalize_sources
from telephony.worker_config import WorkerConfig

if TYPE_CHECKING:
    from escalation.service import ServiceConfig

CALLS_PER_WORKER = 4  # pjsua2's compiled-in limit (FACTS.md)
# The embedded engine holds 20 calls on a 2-core machine (docs/benchmarks.md): the default
# capacity matches it, in whole workers.
DEFAULT_CALL_CAPACITY = 20
# pjsua2's pjlib holds 64 sockets per worker and reuses a closed one only after a while: call
# churn above about 10 new calls a second on one worker (two sockets per stream) exhausts them
# and aborts the process. The edge spreads calls evenly; this keeps each worker well below.
CALLS_PER_S_PER_WORKER = 4


class Section(BaseModel):
    """A settings section: a key it does not know is an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class TlsSettings(Section):
    enabled: bool = Field(True, description="SIP over TLS on the edge")
    port: int = Field(5061, ge=1, le=65535)
    certificate: Path | None = Field(
        None, description="PEM certificate chain; unset: a self-signed pair in data_dir/tls"
    )
    private_key: Path | None = Field(None, description="PEM private key for the certificate")

    @model_validator(mode="after")
    def _pair(self) -> TlsSettings:
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("set both sip.tls.certificate and sip.tls.private_key, or neither")
        return self


class FloodSettings(Section):
    """The edge's protection against one source or everyone at once sending too much."""

    requests_per_s: int = Field(
        60, ge=1, description="per source (not workers); above it for 2 s the source is banned"
    )
    ban_s: int = Field(60, ge=1, description="how long a flooding source is ignored")
    calls_per_s: int | None = Field(
        None,
        ge=1,
        description="new calls per second, all sources together; default: "
        f"{CALLS_PER_S_PER_WORKER} per media worker",
    )
    max_message_bytes: int = Field(8192, ge=1500, le=65535, description="larger requests: 513")


class TrunkSettings(Section):
    name: str
    sources: list[str] = Field(
        default_factory=list, description="addresses or CIDRs it calls from; empty: any"
    )
    username: str | None = Field(None, description="inbound digest credentials (optional)")
    password: SecretStr | None = None
    numbers: list[str] = Field(
        default_factory=list, description="numbers it may dial ('555*' = prefix); empty: any"
    )
    max_calls: int | None = Field(None, ge=1, description="concurrent calls")
    calls_per_s: int | None = Field(None, ge=1, description="new calls per second")
    srtp: SrtpPolicy = Field("optional", description="off, optional or required (SDES)")

    @field_validator("sources")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return list(normalize_sources(value))

    def trunk(self) -> Trunk:
        return Trunk(
            name=self.name,
            sources=tuple(self.sources),
            username=self.username,
            password=self.password.get_secret_value() if self.password else None,
            numbers=tuple(self.numbers),
            max_calls=self.max_calls,
            calls_per_s=self.calls_per_s,
            srtp=self.srtp,
        )


def _sip_uri(host: str, port: int, *, user: str | None = None) -> str:
    """The URI at which this host reaches a SIP service listening on `host`."""
    from admin.processes import local_address

    address = local_address(host)
    if ":" in address:
        address = f"[{address}]"
    return f"sip:{user + '@' if user else ''}{address}:{port}"


class PhoneSettings(Section):
    """A supervisor's phone: it registers at the edge (password) or is dialled (uri)."""

    name: str = Field(description="the SIP user name it registers as: sip:NAME@edge")
    password: SecretStr | None = Field(None, description="digest password, 8-64 characters")
    uri: str | None = Field(None, description="sip:user@IP:port of a phone that does not register")

    @model_validator(mode="after")
    def _usable(self) -> PhoneSettings:
        self.phone()  # refuses, with the reason, what the edge could not use safely
        return self

    def phone(self) -> SupervisorPhone:
        return SupervisorPhone(
            self.name,
            password=self.password.get_secret_value() if self.password else None,
            uri=self.uri,
        )


class SipSettings(Section):
    host: str = Field("0.0.0.0", description="the edge listens here (UDP, TCP and TLS)")
    port: int = Field(5060, ge=1, le=65535)
    advertise_host: str | None = Field(
        None, description="the address callers reach the edge and workers at (behind NAT)"
    )
    media_host: str = Field("0.0.0.0", description="workers listen for RTP here")
    media_advertise_host: str | None = Field(
        None, description="the RTP address written into SDP; default: advertise_host"
    )
    call_capacity: int = Field(
        DEFAULT_CALL_CAPACITY, ge=1, le=4000, description="concurrent calls; 4 per worker"
    )
    worker_host: str = "127.0.0.1"
    worker_base_port: int = Field(5071, ge=1024, le=65000)
    rtp_base_port: int = Field(20000, ge=1024, le=65000)
    rtp_ports_per_worker: int = Field(40, ge=8)
    rtp_timeout_s: float = Field(30.0, ge=MIN_TIMEOUT_S)
    ack_timeout_s: float = Field(3.0, ge=1, description="an answered call never ACKed ends")
    first_rtp_timeout_s: float = Field(
        4.0, ge=2, description="an answered call that never sends RTP ends"
    )
    stats_interval_s: float = Field(5.0, ge=0)
    probe_interval_s: int = Field(2, ge=1)
    pj_log_level: int = Field(0, ge=0, le=6)
    tls: TlsSettings = Field(default_factory=lambda: TlsSettings())  # noqa: PLW0108
    trunks: list[TrunkSettings] = Field(default_factory=list)
    phones: list[PhoneSettings] = Field(
        default_factory=list, description="supervisors' phones the edge registers or dials"
    )
    supervisor_slots: int = Field(
        0,
        ge=0,
        le=2,
        description="call slots each worker keeps for supervisors' legs (of its 4); 1 "
        "guarantees a supervisor can always join, with 3 callers per worker",
    )
    anonymous_sources: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="callers from these CIDRs need no trunk; default: this host only",
    )
    anonymous_srtp: SrtpPolicy = "optional"
    flood: FloodSettings = Field(default_factory=lambda: FloodSettings())  # noqa: PLW0108

    @field_validator("anonymous_sources")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return list(normalize_sources(value))

    @model_validator(mode="after")
    def _trunks_valid(self) -> SipSettings:
        check_trunks(t.trunk() for t in self.trunks)
        return self

    @property
    def callers_per_worker(self) -> int:
        return CALLS_PER_WORKER - self.supervisor_slots

    @property
    def workers(self) -> int:
        return -(-self.call_capacity // self.callers_per_worker)


class EngineSettings(Section):
    """The embedded engine server that `parley run` starts (`parley engine`)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=1, le=65535)
    url: str | None = Field(None, description="use this engine instead of starting one")
    servers: list[str] = Field(
        default_factory=list,
        description="more engine servers (ws://host:8765/v1/realtime), each started with "
        "`parley engine` and the same token: the workers spread calls over all of them, skip "
        "one that fails its health check, and move a call whose engine dies to another",
    )
    knowledge_bases: dict[str, Path] = Field(
        default_factory=dict, description="name -> folder; 'sample' is built in"
    )
    vad_threads: int = Field(1, ge=1)
    asr_threads: int = Field(2, ge=1)
    prerender: bool = Field(
        True, description="synthesize the knowledge bases' fixed replies at start-up"
    )
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda(:\d+)?)$",
        description="where Whisper and the embeddings run: auto (a CUDA GPU when torch sees "
        "one), cpu, cuda or cuda:N; the VAD and the voice stay on the CPU",
    )
    token: SecretStr | None = Field(
        None,
        description="what a client must send (Authorization: Bearer …) to open a session; "
        "required when the engine listens beyond loopback, and sent by the workers",
    )

    @model_validator(mode="after")
    def _token_beyond_loopback(self) -> EngineSettings:
        if self.enabled and self.url is None and not loopback(self.host) and self.token is None:
            raise ValueError(
                f"the engine listens on {self.host}, beyond this machine: set engine.token "
                "(PARLEY_ENGINE__TOKEN) so that only Parley's workers can use it"
            )
        return self

    @field_validator("servers")
    @classmethod
    def _server_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            parts = urlsplit(url)
            if parts.scheme not in ("ws", "wss") or not parts.hostname:
                raise ValueError(f"an engine server is a ws:// or wss:// URL, not {url!r}")
            if parts.username or parts.password or parts.query:
                raise ValueError(
                    f"{safe_url(url)}: no credentials in the URL (the token is engine.token)"
                )
        return value

    def ws_url(self) -> str:
        return self.url or f"ws://{self.host}:{self.port}/v1/realtime"

    def urls(self) -> tuple[str, ...]:
        """Every engine server the workers use: this one (started or `url`), then `servers`."""
        return tuple(dict.fromkeys([self.ws_url(), *self.servers]))

    def token_value(self) -> str:
        return self.token.get_secret_value() if self.token is not None else ""


def loopback(host: str) -> bool:
    """Whether an address is this machine's alone."""
    return host in ("localhost", "::1") or host.startswith("127.")


class ModelSettings(Section):
    """A hosted model a line's agent talks to. Unset keys take the adapter's defaults
    (agent/profiles.py): `realtime` is OpenAI's GPT-realtime with the key in OPENAI_API_KEY,
    `gemini-live` Google's Gemini Live with the key in GEMINI_API_KEY; a second Parley engine
    server speaks the `realtime` protocol (`url: ws://host:8765/v1/realtime`)."""

    url: str | None = Field(
        None,
        pattern=r"^wss?://",
        description="the model's WebSocket URL (default: the provider's)",
    )
    model: str | None = Field(None, min_length=1, description="the model's name")
    api_key_env: str | None = Field(
        "",
        pattern=r"^([A-Za-z_][A-Za-z0-9_]*)?$",
        description="the environment variable that holds the API key (never the key itself); "
        "unset: the provider's usual one; null: no key (a Parley engine server)",
    )
    voice: str | None = Field(None, min_length=1, description="default: the provider's")
    turn_detection: Literal["server_vad", "semantic_vad", "parley"] = Field(
        "server_vad",
        description="realtime: who decides the caller has finished: the model's VAD "
        "(server_vad, semantic_vad) or Parley's engine (parley: its hesitation-aware "
        "turn-taking, the model answers when asked)",
    )
    eagerness: Literal["low", "medium", "high", "auto"] = Field(
        "auto", description="realtime, semantic_vad: how soon the model answers"
    )
    transcription_model: str = Field(
        "gpt-4o-mini-transcribe", description="realtime: transcribes the caller for the records"
    )
    instructions: str = Field(
        "", description="the system instructions; default: a phone agent for the line"
    )

    @field_validator("url")
    @classmethod
    def _no_key_in_url(cls, value: str | None) -> str | None:
        if value is not None and ("key=" in value.lower() or "@" in value.split("/")[2]):
            raise ValueError("put the API key in the environment (api_key_env), not in the URL")
        return value


class LineSettings(Section):
    name: str
    numbers: list[str] = Field(default_factory=list)
    agent: str = Field(description="who answers: " + ", ".join(PROFILES))
    model: ModelSettings | None = Field(
        None, description="the hosted model of a `realtime` or `gemini-live` agent"
    )
    disclosure: str | None = Field(
        None, description="the notice played on answer (its `covers` say what it discloses)"
    )
    recording_notice: str | None = Field(
        None,
        description="a second notice, played after `disclosure` when the call may be recorded "
        "and `disclosure` does not cover recording",
    )
    jurisdiction: str | None = Field(
        None,
        pattern=r"^[A-Za-z]{2}(-[A-Za-z0-9]{1,3})?$",
        description="where the line's business is (US-CA, DE, EU); the caller's place is "
        "added from their number, and the stricter rule wins; default: the line's country",
    )
    queue: str | None = None
    fallback_transfer: str | None = Field(
        None, description="SIP URI to transfer calls to when the voice model fails"
    )
    supervisor_hangup: Literal["agent", "queue"] = Field(
        "agent",
        description="a supervisor who hangs up mid-call leaves the caller with the agent (with "
        "a note) or back in the queue; never dropped",
    )
    knowledge_base: str = "sample"
    record_calls: bool = Field(
        False,
        description="record calls (stereo, encrypted) once the caller consented after the "
        "line's disclosure; a caller who declines, or a line without a disclosure, is never "
        "recorded",
    )
    pci_pause_key: str | None = Field(
        None,
        pattern=r"^[0-9*#]$",
        description="a key that pauses the recording and the transcript while a card number "
        "is given, and resumes them (never passed to the agent)",
    )
    country: str = Field(
        DEFAULT_REGION,
        description="the line's country (ISO 3166 alpha-2): callers' national phone numbers "
        "are read as dialled there when redacting",
    )
    agent_backchannels: bool = Field(
        False, description="the agent says 'mm-hm' while the caller talks at length"
    )
    consent: ConsentSettings = Field(default_factory=lambda: ConsentSettings())  # noqa: PLW0108
    disclosure_missing: Literal["proceed", "refuse"] = Field(
        "proceed", description="when the disclosure's audio cannot be played: go on, or refuse"
    )
    escalation: dict[str, Any] | None = Field(
        None, description="when a call goes to a person (escalation.triggers.TriggerPolicy)"
    )

    @field_validator("escalation")
    @classmethod
    def _escalation_policy(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            policy_from_settings(value)  # refuses an unknown key or a bad value, named
        return value

    @model_validator(mode="before")
    @classmethod
    def _agent_named(cls, data: Any) -> Any:
        # A line that silently answered with a test session would look like a broken model.
        if isinstance(data, dict) and "agent" not in data:
            name = data.get("name", "?")
            raise ValueError(
                f"line {name!r} has no agent: set agent to one of {', '.join(PROFILES)} "
                "(embedded: the voice model; echo: plays the caller's audio back)"
            )
        return data

    def place(self) -> str:
        return (self.jurisdiction or self.country).upper()

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        country = value.upper()
        if country not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown country {value!r}: use an ISO 3166 alpha-2 code (US, GB)")
        return country

    @field_validator("agent")
    @classmethod
    def _known_agent(cls, value: str) -> str:
        if value not in PROFILES:
            raise ValueError(f"unknown agent profile {value!r}; known: {', '.join(PROFILES)}")
        return value

    @model_validator(mode="after")
    def _model_for_a_hosted_agent(self) -> LineSettings:
        hosted = ADAPTERS[self.agent].hosted
        if self.model is not None and not hosted:
            raise ValueError(
                f"line {self.name!r}: `model` is for a hosted agent (realtime), not {self.agent}"
            )
        if hosted and self.model is None:
            self.model = ModelSettings()
        return self

    def model_target(self) -> ModelTarget:
        if self.model is None:
            return ModelTarget()
        m, usual = self.model, ADAPTERS[self.agent].defaults
        return ModelTarget(
            url=m.url or usual.url,
            model=m.model or usual.model,
            api_key_env=usual.api_key_env if m.api_key_env == "" else (m.api_key_env or ""),
            voice=m.voice or usual.voice,
            turn_detection=m.turn_detection,
            eagerness=m.eagerness,
            transcription_model=m.transcription_model,
            instructions=m.instructions or default_instructions(self),
        )


def default_instructions(line: LineSettings) -> str:
    return (
        f"You answer the phone for the {line.name} line of a business. Speak briefly and "
        "warmly, one or two sentences at a time; the caller hears you over a phone. Use the "
        "lookup tool for anything about the business rather than guess. When the caller asks "
        "for a person, or you cannot help, say you are connecting them and call "
        "transfer_to_human. When they are done, say goodbye and call end_call."
    )


class SupervisorSettings(Section):
    """A person calls are offered to: rung on their phone (a `sip.phones` name), or in their
    dashboard tab (`browser`: its microphone and speaker; telephony/browserleg.py)."""

    name: str = Field(min_length=1)
    phone: str = Field(description="a name from sip.phones, or browser (their dashboard tab)")
    queues: list[str] = Field(default_factory=lambda: ["default"])
    skills: list[str] = Field(default_factory=list)


class DatabaseSettings(Section):
    url: str | None = Field(
        None,
        description="SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user:pw@host/db; "
        "default: a SQLite file in data_dir",
    )

    @field_validator("url")
    @classmethod
    def _supported_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme, sep, rest = value.partition("://")
        if not sep:
            raise ValueError("database.url must look like sqlite:///path or postgresql+psycopg://…")
        if scheme in ("postgres", "postgresql"):
            return f"postgresql+psycopg://{rest}"  # psycopg 3 is the driver Parley installs
        if scheme not in ("sqlite", "postgresql+psycopg"):
            raise ValueError(
                f"database.url scheme {scheme!r} is not supported; use sqlite or postgresql+psycopg"
            )
        return value


class SecuritySettings(Section):
    """Keys that must stay the same for the life of the data: changing one breaks lookups by
    caller number or the audit chain. Unset, each is generated once into the keys file, which
    is kept apart from the database (see keys_file)."""

    keys_file: Path | None = Field(
        None,
        description="where keys not set here are generated and kept; default: "
        "$PARLEY_KEYS_DIR, else $XDG_CONFIG_HOME/parley or ~/.config/parley, as "
        "keys-<id of data_dir>.json — never beside the database",
    )
    audit_hmac_key: SecretStr | None = None
    number_hash_key: SecretStr | None = None
    recording_key: SecretStr | None = Field(
        None, description="seals call recordings (AES-256-GCM); losing it loses the recordings"
    )
    jwt_signing_key: SecretStr | None = Field(
        None, description="signs the API's access tokens; changing it logs everybody out"
    )
    access_token_minutes: int = Field(60, ge=1, le=24 * 60)

    @field_validator("audit_hmac_key", "number_hash_key", "jwt_signing_key", "recording_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (try: openssl rand -base64 32)")
        return value


class AuditSettings(Section):
    """The audit chain's checkpoints (admin/audit_checkpoint.py)."""

    checkpoint_file: Path | None = Field(
        None,
        description="where signed checkpoints of the chain's head are appended; keep it off "
        "the database's host or on write-once storage. Default: beside the keys file",
    )
    checkpoint_interval_s: float = Field(
        300.0, ge=5, description="how often the jobs' schedule writes a checkpoint"
    )


class EventsSettings(Section):
    """How call events travel from the media workers' spool files to the database."""

    carrier: Literal["file", "redis"] | None = Field(
        None,
        description="file: the ingester reads the spool files itself (one host); redis: each "
        "worker ships its spool to a Redis stream; default: redis when redis_url is set",
    )
    stream: str = Field("parley:events", min_length=1, description="the Redis stream's key")
    group: str = Field("parley-ingest", min_length=1, description="the ingesters' consumer group")
    batch_size: int = Field(500, ge=1, le=10_000, description="events per transaction")
    ship_batch_size: int = Field(500, ge=1, le=10_000, description="events per XADD round trip")
    segment_bytes: int = Field(
        16 * 2**20, ge=4096, description="a worker starts a new spool file past this size"
    )
    poll_interval_s: float = Field(0.2, gt=0, description="how often idle readers look again")
    max_backoff_s: float = Field(5.0, gt=0, description="longest wait between retries")
    claim_idle_s: float = Field(
        30.0, gt=0, description="a pending entry idle this long is taken from its dead consumer"
    )
    source: str | None = Field(
        None, description="this host's name in the shipped offsets; default: the hostname"
    )


def _default_lines() -> list[LineSettings]:
    return [
        LineSettings(
            name="main",
            numbers=["100"],
            agent="embedded",
            disclosure="ai-assistant",
            recording_notice="recording",
            record_calls=True,  # after the recording notice, as the caller's place requires
        ),
        LineSettings(name="echo", numbers=["199"], agent="echo"),
    ]


def _default_disclosures() -> list[DisclosureSettings]:
    # Callers must know they are talking to a machine before it talks with them.
    return [
        DisclosureSettings(
            name="ai-assistant",
            text="This call is answered by an automated assistant.",
            jurisdiction="US",
            covers=["ai"],
        ),
        DisclosureSettings(
            name="recording",
            text="This call may be recorded. Stay on the line to agree.",
            jurisdiction="US",
            covers=["recording"],
        ),
    ]


class ComplianceSettings(Section):
    rules_file: Path | None = Field(
        None,
        description="the jurisdiction rules (notices, recording consent) as a YAML file; "
        "default: the bundled telephony/rules/jurisdictions.yaml",
    )

    @field_validator("rules_file")
    @classmethod
    def _readable_rules(cls, value: Path | None) -> Path | None:
        if value is not None:
            RuleBook.load(value)  # a bad file is refused at start, named
        return value

    def rule_book(self) -> RuleBook:
        return RuleBook.load(self.rules_file)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PARLEY_", env_nested_delimiter="__", extra="forbid"
    )

    data_dir: Path = Field(
        Path("var"),
        validate_default=True,
        description="events, database, keys, edge files; a relative path counts from the "
        "settings file's folder, or without a file from the current directory",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "text"
    http_host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=1, le=65535)
    sip: SipSettings = Field(default_factory=lambda: SipSettings())  # noqa: PLW0108
    engine: EngineSettings = Field(default_factory=lambda: EngineSettings())  # noqa: PLW0108
    database: DatabaseSettings = Field(default_factory=lambda: DatabaseSettings())  # noqa: PLW0108
    security: SecuritySettings = Field(default_factory=lambda: SecuritySettings())  # noqa: PLW0108
    audit: AuditSettings = Field(default_factory=lambda: AuditSettings())  # noqa: PLW0108
    compliance: ComplianceSettings = Field(
        default_factory=lambda: ComplianceSettings()  # noqa: PLW0108
    )
    redis_url: str | None = Field(
        None, description="redis://host:6379/0 carries events between hosts; None: no Redis"
    )
    events: EventsSettings = Field(default_factory=lambda: EventsSettings())  # noqa: PLW0108
    jobs: JobsSettings = Field(default_factory=lambda: JobsSettings())  # noqa: PLW0108
    lines: list[LineSettings] = Field(default_factory=_default_lines)
    disclosures: list[DisclosureSettings] = Field(
        default_factory=_default_disclosures,
        description="synced into the database at parley run start",
    )
    default_line: str | None = "main"
    queues: list[dict[str, Any]] = Field(
        default_factory=list,
        description="escalation queues (escalation.acd.QueuePolicy: name, skills, max_wait_s, "
        "offer_timeout_s, fallback ai|callback, ...); 'default' exists unless named here",
    )
    supervisors: list[SupervisorSettings] = Field(
        default_factory=list,
        description="who calls are offered to; none: every sip.phones phone, every queue",
    )
    restart_backoff_s: float = Field(1.0, gt=0)

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        # Resolved once, here: every process of the platform then agrees on one folder.
        return Path(os.path.abspath(value.expanduser()))

    @model_validator(mode="after")
    def _lines_route(self) -> Settings:
        self.router()  # raises on duplicate numbers or an unknown default line
        return self

    @model_validator(mode="after")
    def _escalation_refers(self) -> Settings:
        queues = {policy.name for policy in self.queue_policies()}
        phones = {phone.name for phone in self.sip.phones}
        for line in self.lines:
            if line.queue is not None and line.queue not in queues:
                raise ValueError(f"line {line.name}: queue {line.queue!r} is not in queues")
        if BROWSER_PHONE in phones:
            raise ValueError(f"sip.phones: {BROWSER_PHONE!r} is kept for supervisors' browsers")
        for supervisor in self.supervisors:
            if supervisor.phone == BROWSER_PHONE:
                browser_uri(supervisor.name)  # a name the leg can carry, or a clear error
            elif supervisor.phone not in phones:
                raise ValueError(
                    f"supervisor {supervisor.name}: phone {supervisor.phone!r} is not in "
                    f"sip.phones (nor {BROWSER_PHONE!r}, their dashboard tab)"
                )
            if unknown := sorted(set(supervisor.queues) - queues):
                raise ValueError(
                    f"supervisor {supervisor.name}: unknown queues {', '.join(unknown)}"
                )
        return self

    @model_validator(mode="after")
    def _events_carrier_reachable(self) -> Settings:
        if self.events.carrier == "redis" and not self.redis_url:
            raise ValueError("events.carrier is redis but redis_url is not set")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must look like redis://host:6379/0")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("PARLEY_CONFIG")
        if config_file:
            path = Path(config_file)
            if not path.is_file():
                raise FileNotFoundError(f"PARLEY_CONFIG points at {path}, which does not exist")
            sources.append(_SettingsFile(settings_cls, path))
        return tuple(sources)

    # --- views for the packages that must not import admin -------------------------------

    def lines_config(self) -> tuple[Line, ...]:
        return tuple(
            Line(
                name=line.name,
                numbers=tuple(line.numbers),
                agent=line.agent,
                disclosure=line.disclosure,
                queue=line.queue,
                fallback_transfer=line.fallback_transfer,
                escalates=self.escalation_needed(),
                supervisor_hangup=line.supervisor_hangup,
                redaction=self.redaction_policy(line.name),
                record_calls=line.record_calls,
                pci_pause_key=line.pci_pause_key,
                jurisdiction=line.place(),
            )
            for line in self.lines
        )

    def redaction_policy(self, line: str | None) -> RedactionPolicy:
        """What is redacted from a line's calls (jobs.redact, jobs.lines), and where its
        national phone numbers are dialled (the line's country)."""
        configured = next((each for each in self.lines if each.name == line), None)
        country = configured.country if configured is not None else DEFAULT_REGION
        return RedactionPolicy(self.jobs.redaction_for(line), country)

    def queue_policies(self) -> tuple[QueuePolicy, ...]:
        """The escalation queues, "default" included (raises ValueError when one is bad)."""
        policies = tuple(QueuePolicy.from_dict(queue) for queue in self.queues)
        names = [policy.name for policy in policies]
        if len(set(names)) != len(names):
            raise ValueError(f"queues names a queue twice: {', '.join(names)}")
        if "default" not in names:
            policies = (*policies, QueuePolicy("default"))
        return policies

    def escalation_needed(self) -> bool:
        """Whether `parley run` must start the escalation service."""
        return (
            bool(self.sip.phones)
            or bool(self.supervisors)
            or any(line.queue for line in self.lines)
        )

    def escalation_config(self) -> ServiceConfig:
        from escalation.service import ServiceConfig, SupervisorSpec

        queues = self.queue_policies()
        supervisors = [
            SupervisorSpec(
                s.name,
                browser_uri(s.name) if s.phone == BROWSER_PHONE else self.phone_uri(s.phone),
                frozenset(s.queues),
                frozenset(s.skills),
            )
            for s in self.supervisors
        ] or [
            SupervisorSpec(p.name, self.phone_uri(p.name), frozenset(q.name for q in queues))
            for p in self.sip.phones
        ]
        return ServiceConfig(
            queues=queues,
            supervisors=tuple(supervisors),
            line_policies={
                line.name: policy_from_settings(line.escalation or {}) for line in self.lines
            },
            line_queues={line.name: line.queue for line in self.lines if line.queue},
            default_line=self.default_line,
            workers=self.sip.workers,
            run_dir=self.run_dir(),
            redis_url=self.redis_url,
            state_file=self.run_dir() / "escalations.json",
        )

    def engine_needed(self) -> bool:
        """Whether `parley run` must start the embedded engine server."""
        uses_engine = any(
            line.agent == "embedded"
            or line.consent.method == "spoken"  # heard by the engine's speech recognition
            or ADAPTERS[line.agent].hosted  # a hosted model's lookups are answered by it
            for line in self.lines
        )
        return uses_engine and self.engine.enabled and self.engine.url is None

    def model_notices(self) -> list[str]:
        """What `parley run` says about the hosted models lines use: which one, and a key
        that is not there (such a line's callers hear the fallback prompt, then go to the line's
        fallback_transfer or are let go)."""
        notices = []
        for line in self.lines:
            if line.model is None:
                continue
            model = line.model_target()
            where = f"line {line.name}: {line.agent} model {model.model} at {model.url}"
            env = model.api_key_env
            if env and not os.environ.get(env, "").strip():
                notices.append(
                    f"{where}, but {env} is not set: its calls will get the fallback prompt "
                    f"and the line's fallback_transfer (export {env}=… before parley run)"
                )
            else:
                notices.append(where + (f", key from {env}" if env else ", no key"))
        return notices

    def session_target(self, line: Line) -> SessionTarget:
        settings = next((s for s in self.lines if s.name == line.name), None)
        return SessionTarget(
            engine_url=self.engine.ws_url(),
            engine_token=self.engine.token_value(),
            line=line.name,
            knowledge_base=settings.knowledge_base if settings else "sample",
            agent_backchannels=settings.agent_backchannels if settings else False,
            model=settings.model_target() if settings else ModelTarget(),
        )

    def router(self) -> LineRouter:
        return LineRouter(self.lines_config(), self.default_line)

    def worker_config(self, index: int) -> WorkerConfig:
        sip = self.sip
        # SRTP is refused only where every caller must go without it.
        srtp_policies = {t.srtp for t in sip.trunks} | {sip.anonymous_srtp}
        return WorkerConfig(
            index=index,
            sip_host=sip.worker_host,
            sip_port=sip.worker_base_port + index,
            public_host=sip.advertise_host,
            media_host=sip.media_host,
            media_public_host=sip.media_advertise_host or sip.advertise_host,
            rtp_port=sip.rtp_base_port + index * sip.rtp_ports_per_worker,
            rtp_port_range=sip.rtp_ports_per_worker,
            srtp="off" if srtp_policies == {"off"} else "optional",
            max_calls=CALLS_PER_WORKER,
            caller_slots=sip.callers_per_worker,
            rtp_timeout_s=sip.rtp_timeout_s,
            ack_timeout_s=sip.ack_timeout_s,
            first_rtp_timeout_s=sip.first_rtp_timeout_s,
            stats_interval_s=sip.stats_interval_s,
            pj_log_level=sip.pj_log_level,
            inbox_path=str(inbox_path(self.run_dir(), index)),
            audio_path=str(audio_path(self.run_dir(), index)),
            edge_uri=_sip_uri(sip.host, sip.port),
            redis_url=self.redis_url,
            speech_dir=str(self.speech_dir()),
        )

    def speech_dir(self) -> Path:
        """Where the escalation service keeps the speech it makes for calls, by SHA-256."""
        return self.data_dir / "speech"

    def tls_files(self) -> tuple[Path, Path]:
        """The edge's certificate and key: from the settings, or the generated pair."""
        tls = self.sip.tls
        if tls.certificate is not None and tls.private_key is not None:
            return tls.certificate, tls.private_key
        folder = self.data_dir / "tls"
        return folder / "edge-cert.pem", folder / "edge-key.pem"

    def edge_config(self) -> EdgeConfig:
        sip = self.sip
        tls = None
        if sip.tls.enabled:
            certificate, key = self.tls_files()
            tls = TlsListener(port=sip.tls.port, certificate=certificate, private_key=key)
        return EdgeConfig(
            listen_host=sip.host,
            listen_port=sip.port,
            advertise_host=sip.advertise_host,
            workers=tuple(
                WorkerAddress(sip.worker_host, sip.worker_base_port + i) for i in range(sip.workers)
            ),
            probe_interval_s=sip.probe_interval_s,
            run_dir=self.data_dir / "edge",
            tls=tls,
            trunks=tuple(t.trunk() for t in sip.trunks),
            phones=tuple(p.phone() for p in sip.phones),
            anonymous_sources=tuple(sip.anonymous_sources),
            anonymous_srtp=sip.anonymous_srtp,
            flood=FloodLimits(
                requests_per_s=sip.flood.requests_per_s,
                ban_s=sip.flood.ban_s,
                calls_per_s=sip.flood.calls_per_s or CALLS_PER_S_PER_WORKER * sip.workers,
                max_message_bytes=sip.flood.max_message_bytes,
            ),
        )

    def events_dir(self) -> Path:
        return self.data_dir / "events"

    def phone_uri(self, name: str) -> str:
        """What a media worker dials to ring the supervisor phone `name` (through the edge)."""
        if not any(p.name == name for p in self.sip.phones):
            raise KeyError(f"no supervisor phone {name!r} in sip.phones")
        return _sip_uri(self.sip.host, self.sip.port, user=name)

    def run_dir(self) -> Path:
        """The media workers' command and live-event sockets (embedded default, no Redis)."""
        return self.data_dir / "run"

    def events_carrier(self) -> Literal["file", "redis"]:
        if self.events.carrier is not None:
            return self.events.carrier
        return "redis" if self.redis_url else "file"

    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_dir / 'parley.db'}"

    def keys_file(self) -> Path:
        """Where keys not set in `security` are generated and kept: not beside the database,
        so that a copy of the data directory is no copy of the keys."""
        if self.security.keys_file is not None:
            return self.security.keys_file
        installation = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:16]
        return keys_home() / f"keys-{installation}.json"

    def checkpoint_file(self) -> Path:
        """Where the audit chain's signed checkpoints are appended."""
        if self.audit.checkpoint_file is not None:
            return self.audit.checkpoint_file
        keys = self.keys_file()
        return keys.with_name(keys.stem.replace("keys", "audit-checkpoints", 1) + ".jsonl")

    def keys(self) -> Keys:
        """The configured keys, or those generated into the keys file on first use (a
        data_dir/keys.json from an earlier Parley is moved there)."""
        audit, number = self.security.audit_hmac_key, self.security.number_hash_key
        jwt, recording = self.security.jwt_signing_key, self.security.recording_key
        move_legacy_keys(self.data_dir / "keys.json", self.keys_file())
        return load_keys(
            self.keys_file(),
            audit_hmac_key=audit.get_secret_value() if audit else None,
            number_hash_key=number.get_secret_value() if number else None,
            jwt_signing_key=jwt.get_secret_value() if jwt else None,
            recording_key=recording.get_secret_value() if recording else None,
        )

    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    def export_dir(self) -> Path:
        return self.jobs.export_dir or self.data_dir / "exports"

    def data_files(self) -> Files:
        """The files outside the database that hold call data (retention and erasure)."""
        from admin.ingest import REJECTED_FILE

        return Files(
            recordings=self.recordings_dir(),
            quarantine=self.events_dir() / REJECTED_FILE,
            exports=self.export_dir(),
        )

    def recording_store(self) -> RecordingStore:
        """Where the media workers write recordings, and the key that seals them."""
        return RecordingStore(self.recordings_dir(), recording_key(self.keys().recording))


class _SettingsFile(YamlConfigSettingsSource):
    """The YAML settings file. A relative data_dir in it counts from the file's folder, so the
    file means the same data wherever `parley` is started from."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls, yaml_file=path)
        self._folder = path.resolve().parent

    def __call__(self) -> dict[str, Any]:
        values = dict(super().__call__())
        data_dir = values.get("data_dir")
        if isinstance(data_dir, str) and not Path(data_dir).expanduser().is_absolute():
            values["data_dir"] = str(self._folder / data_dir)
        return values


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
