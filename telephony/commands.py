"""Typed call commands and their replies, and the JSON codec they travel in.

Commands come down to the media worker that holds a call (from escalation, the admin API, the
dashboard); the worker answers each with one `Reply`. Pure: no I/O. `decode` is the boundary:
whatever it returns is well formed, and anything else raises `CommandError` saying what is wrong.

A command on the wire is one JSON object with its `type` and every field of its class; a field
that may be null may also be left out. A reply is `{"type": "reply", "command_id", "ok",
"error", "data"}`. Neither may pass `MAX_MESSAGE_BYTES`.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from telephony.mixing import Leg
from telephony.phases import Mode

MAX_MESSAGE_BYTES = 16 * 1024
REPLY_TYPE = "reply"

_ID = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, no spaces: safe in keys and logs
_PROMPT = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a name, never a path
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SIP_URI = re.compile(r"(?i:sips?):[^\x00-\x20\x7f<>\"]{1,250}")


class CommandError(ValueError):
    """A command or reply that cannot be accepted.

    `field` names the offending field where there is one. `command_id` is the id the message
    carried, if it had a well-formed one, so the sender can still be told; "" otherwise.
    """

    def __init__(self, message: str, *, field: str | None = None, command_id: str = "") -> None:
        super().__init__(message)
        self.field = field
        self.command_id = command_id


def new_command_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True, kw_only=True)
class _Base:
    call_id: str
    actor: str  # who asked: "supervisor:7", "system", "api:admin"
    command_id: str = field(default_factory=new_command_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class Hangup(_Base):
    TYPE: ClassVar[str] = "hangup"
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayPrompt(_Base):
    TYPE: ClassVar[str] = "play_prompt"
    prompt: str  # a prompt's name, not a path ("speech" for `speech`)
    to: Leg = Leg.CALLER  # the caller or the supervisor
    # Speech made for this call (a queue announcement, a supervisor's briefing): the SHA-256
    # of a WAV in the worker's speech folder, never a path. For the supervisor it waits for
    # their phone to answer, and only they hear it.
    speech: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Hold(_Base):
    TYPE: ClassVar[str] = "hold"


@dataclass(frozen=True, slots=True, kw_only=True)
class Unhold(_Base):
    TYPE: ClassVar[str] = "unhold"


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachLeg(_Base):
    TYPE: ClassVar[str] = "attach_leg"
    leg: Leg = Leg.SUPERVISOR  # the only leg that comes and goes
    # A SIP URI the worker dials, or browser:<supervisor> for a supervisor's dashboard tab
    # (telephony/browserleg.py); None for a leg that calls in.
    uri: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DetachLeg(_Base):
    TYPE: ClassVar[str] = "detach_leg"
    leg: Leg = Leg.SUPERVISOR


@dataclass(frozen=True, slots=True, kw_only=True)
class SetMode(_Base):
    TYPE: ClassVar[str] = "set_mode"
    mode: Mode


@dataclass(frozen=True, slots=True, kw_only=True)
class DetachAgent(_Base):
    TYPE: ClassVar[str] = "detach_agent"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReattachAgent(_Base):
    TYPE: ClassVar[str] = "reattach_agent"
    note: str | None = None  # the human's notes for the agent


@dataclass(frozen=True, slots=True, kw_only=True)
class Whisper(_Base):
    TYPE: ClassVar[str] = "whisper"
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer(_Base):
    TYPE: ClassVar[str] = "transfer"
    target: str  # a SIP URI


@dataclass(frozen=True, slots=True, kw_only=True)
class PauseRecording(_Base):
    """A PCI pause: the recording becomes silence and the transcript is not stored."""

    TYPE: ClassVar[str] = "pause_recording"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeRecording(_Base):
    TYPE: ClassVar[str] = "resume_recording"


@dataclass(frozen=True, slots=True, kw_only=True)
class Status(_Base):
    """Changes nothing: the reply tells whether the worker holds the call, and its state."""

    TYPE: ClassVar[str] = "status"


Command = (
    Hangup
    | PlayPrompt
    | Hold
    | Unhold
    | AttachLeg
    | DetachLeg
    | SetMode
    | DetachAgent
    | ReattachAgent
    | Whisper
    | Transfer
    | PauseRecording
    | ResumeRecording
    | Status
)

COMMAND_TYPES: dict[str, type[Command]] = {
    cls.TYPE: cls
    for cls in (
        Hangup,
        PlayPrompt,
        Hold,
        Unhold,
        AttachLeg,
        DetachLeg,
        SetMode,
        DetachAgent,
        ReattachAgent,
        Whisper,
        Transfer,
        PauseRecording,
        ResumeRecording,
        Status,
    )
}


@dataclass(frozen=True, slots=True)
class Reply:
    command_id: str  # "" when the command was too malformed to carry one
    ok: bool
    error: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def success(cls, command_id: str, data: dict[str, Any] | None = None) -> Reply:
        return cls(command_id, True, None, dict(data or {}))

    @classmethod
    def failure(cls, command_id: str, error: str) -> Reply:
        return cls(command_id, False, error, {})


# --- field checks: each returns the field's value or raises CommandError --------------------

_Check = Callable[[str, object], object]


def _id(name: str, value: object) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise CommandError(
            f"{name} must be 1-128 printable ASCII characters without spaces", field=name
        )
    return value


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CommandError(f"{name} must be a non-empty string", field=name)
    return value


def _optional_text(name: str, value: object) -> str | None:
    return None if value is None else _text(name, value)


def _prompt(name: str, value: object) -> str:
    if not isinstance(value, str) or not _PROMPT.fullmatch(value):
        raise CommandError(
            f"{name} must be a prompt name of 1-64 letters, digits, '_' or '-'", field=name
        )
    return value


def _optional_sha256(name: str, value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or not _SHA256.fullmatch(value)):
        raise CommandError(f"{name} must be a SHA-256 in 64 lowercase hex digits", field=name)
    return value


def _sip_uri(name: str, value: object) -> str:
    if not isinstance(value, str) or not _SIP_URI.fullmatch(value):
        raise CommandError(
            f"{name} must be a sip: or sips: URI without spaces or control characters",
            field=name,
        )
    return value


BROWSER = "browser:"  # a supervisor's "phone" that is their browser tab: browser:<name>
BROWSER_PHONE = "browser"  # the phone name that means it (settings, the API's `phone`)
_BROWSER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def browser_uri(name: str) -> str:
    """The leg URI of supervisor `name`'s browser tab (telephony/browserleg.py)."""
    if not _BROWSER_NAME.fullmatch(name):
        raise ValueError(f"not a supervisor name a browser leg can carry: {name!r}")
    return f"{BROWSER}{name}"


def browser_name(uri: str) -> str | None:
    """The supervisor of a `browser:<name>` leg; None for any other URI."""
    if not uri.startswith(BROWSER):
        return None
    name = uri[len(BROWSER) :]
    return name if _BROWSER_NAME.fullmatch(name) else None


def is_browser_uri(uri: str) -> bool:
    return browser_name(uri) is not None


def _leg_uri(name: str, value: object) -> str | None:
    if value is None or (isinstance(value, str) and is_browser_uri(value)):
        return value
    if isinstance(value, str) and value.startswith(BROWSER):
        raise CommandError(f"{name}: a browser leg is browser:<supervisor name>", field=name)
    return _sip_uri(name, value)


def _enum(kind: type[enum.StrEnum], *allowed: enum.StrEnum) -> _Check:
    choices = allowed or tuple(kind)

    def check(name: str, value: object) -> enum.StrEnum:
        for choice in choices:
            if value == choice.value and isinstance(value, str):
                return choice
        names = ", ".join(repr(choice.value) for choice in choices)
        raise CommandError(f"{name} must be one of {names}", field=name)

    return check


_COMMON: dict[str, _Check] = {"call_id": _id, "actor": _id, "command_id": _id}
_FIELDS: dict[type[Command], dict[str, _Check]] = {
    Hangup: {"reason": _text},
    # Prompts play to a person on the call, never to the agent or the prompt player itself.
    PlayPrompt: {
        "prompt": _prompt,
        "to": _enum(Leg, Leg.CALLER, Leg.SUPERVISOR),
        "speech": _optional_sha256,
    },
    Hold: {},
    Unhold: {},
    # Only a supervisor's leg comes and goes; the caller's is the call itself.
    AttachLeg: {"leg": _enum(Leg, Leg.SUPERVISOR), "uri": _leg_uri},
    DetachLeg: {"leg": _enum(Leg, Leg.SUPERVISOR)},
    SetMode: {"mode": _enum(Mode)},
    DetachAgent: {},
    ReattachAgent: {"note": _optional_text},
    Whisper: {"text": _text},
    Transfer: {"target": _sip_uri},
    PauseRecording: {},
    ResumeRecording: {},
    Status: {},
}
_NULLABLE = {(AttachLeg, "uri"), (ReattachAgent, "note"), (PlayPrompt, "speech")}


# --- the codec -------------------------------------------------------------------------------


def encode(command: Command) -> bytes:
    """One JSON object, without a newline. Raises CommandError for a command `decode` would
    refuse, so a bad command fails where it is made rather than in the worker."""
    raw = {"type": command.TYPE, **_fields_of(command)}
    data = _dump(raw)
    decode(data)
    return data


def decode(data: bytes | str) -> Command:
    raw = _load(data)
    command_id = _recoverable_id(raw)
    try:
        kind = raw.get("type")
        if not isinstance(kind, str) or kind not in COMMAND_TYPES:
            known = ", ".join(sorted(COMMAND_TYPES))
            raise CommandError(f"unknown command type {_shown(kind)}; known: {known}", field="type")
        cls = COMMAND_TYPES[kind]
        checks = {**_COMMON, **_FIELDS[cls]}
        extra = sorted(set(raw) - set(checks) - {"type"})
        if extra:
            raise CommandError(f"{kind} has unknown fields: {_names(extra)}", field=extra[0])
        values: dict[str, Any] = {}
        for name, check in checks.items():
            if name not in raw and (cls, name) not in _NULLABLE:
                raise CommandError(f"{kind} needs the field {name!r}", field=name)
            values[name] = check(name, raw.get(name))
        return cls(**values)
    except CommandError as error:
        error.command_id = command_id
        raise


def encode_reply(reply: Reply) -> bytes:
    raw = {
        "type": REPLY_TYPE,
        "command_id": reply.command_id,
        "ok": reply.ok,
        "error": reply.error,
        "data": reply.data,
    }
    data = _dump(raw)
    decode_reply(data)
    return data


def decode_reply(data: bytes | str) -> Reply:
    raw = _load(data)
    if raw.get("type") != REPLY_TYPE:
        raise CommandError(f"a reply must have type {REPLY_TYPE!r}", field="type")
    expected = {"type", "command_id", "ok", "error", "data"}
    extra = sorted(set(raw) - expected)
    if extra:
        raise CommandError(f"reply has unknown fields: {_names(extra)}", field=extra[0])
    missing = sorted(expected - set(raw) - {"error"})
    if missing:
        raise CommandError(f"reply needs the field {missing[0]!r}", field=missing[0])
    command_id = raw["command_id"]
    if command_id != "":
        _id("command_id", command_id)
    ok, error, payload = raw["ok"], raw.get("error"), raw["data"]
    if not isinstance(ok, bool):
        raise CommandError("ok must be true or false", field="ok")
    if ok and error is not None:
        raise CommandError("a reply that is ok carries no error", field="error")
    if not ok:
        _text("error", error)
    if not isinstance(payload, dict):
        raise CommandError("data must be an object", field="data")
    return Reply(command_id, ok, error, payload)


def _fields_of(command: Command) -> dict[str, object]:
    return {f.name: getattr(command, f.name) for f in dataclasses.fields(command)}


def _dump(raw: dict[str, object]) -> bytes:
    try:
        data = json.dumps(raw, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise CommandError(f"not JSON-serializable: {error}") from None
    encoded = data.encode()
    _check_size(encoded)
    return encoded


def _load(data: bytes | str) -> dict[str, Any]:
    encoded = data.encode() if isinstance(data, str) else data
    _check_size(encoded)
    try:
        raw = json.loads(encoded)
    except (ValueError, UnicodeDecodeError) as error:
        raise CommandError(f"not JSON: {error}") from None
    if not isinstance(raw, dict):
        raise CommandError("a message must be a JSON object with a string 'type'")
    return raw


def _check_size(encoded: bytes) -> None:
    if len(encoded) > MAX_MESSAGE_BYTES:
        raise CommandError(
            f"message of {len(encoded)} bytes is over the limit of {MAX_MESSAGE_BYTES}"
        )


def _recoverable_id(raw: dict[str, Any]) -> str:
    value = raw.get("command_id")
    return value if isinstance(value, str) and _ID.fullmatch(value) else ""


def _shown(value: object) -> str:
    """`value` for an error message, cut short: errors are logged and must stay small."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _names(names: list[str]) -> str:
    return ", ".join(_shown(name) for name in names[:5]) + (", ..." if len(names) > 5 else "")
