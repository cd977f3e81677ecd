"""Typed commands for the escalation service's own inbox, and the JSON codec they travel in.

The admin API (and an operator's tools) send these to a running `parley escalation` through
`telephony.inbox` with `CODEC`; the service answers each with a `telephony.commands.Reply`
(escalation.control). `decode` is the boundary: whatever it returns is well formed, anything
else raises `CommandError` saying which field is wrong.

    presence   a supervisor is available, away, or wrapping up
    accept     ring this supervisor's phone for this waiting call now
    decline    the supervisor turns down the call ringing their phone
    snapshot   the queues, their waiting calls, and the supervisors
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from telephony.commands import MAX_MESSAGE_BYTES, CommandError, new_command_id
from telephony.inbox import Codec, inbox_path

INBOX = "escalation"  # the Unix socket escalation.cmd.sock, or the Redis list of this name

# Printable ASCII without spaces, as call commands' ids: safe in keys and logs.
Id = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,128}$")]


def escalation_inbox_path(run_dir: Path) -> Path:
    return inbox_path(run_dir, INBOX)


class PresenceState(enum.StrEnum):
    """What a supervisor may say of themselves (busy is the service's to say)."""

    AVAILABLE = "available"
    AWAY = "away"
    WRAP_UP = "wrap_up"


class _Base(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    actor: Id  # who asked: "user:alice"
    command_id: Id = Field(default_factory=new_command_id)


class Presence(_Base):
    TYPE: ClassVar[str] = "presence"
    type: Literal["presence"] = "presence"
    supervisor: Id
    state: PresenceState


class Accept(_Base):
    """Offer the waiting call (by its id, or its escalation's) to `supervisor` now."""

    TYPE: ClassVar[str] = "accept"
    type: Literal["accept"] = "accept"
    supervisor: Id
    call_id: Id | None = None
    escalation_id: Id | None = None

    @model_validator(mode="after")
    def _one_call(self) -> Accept:
        if (self.call_id is None) == (self.escalation_id is None):
            raise ValueError("accept names the call_id or the escalation_id, one of them")
        return self


class Decline(_Base):
    """Turn down the call ringing `supervisor` (only if it is this escalation, where named)."""

    TYPE: ClassVar[str] = "decline"
    type: Literal["decline"] = "decline"
    supervisor: Id
    escalation_id: Id | None = None


class Snapshot(_Base):
    TYPE: ClassVar[str] = "snapshot"
    type: Literal["snapshot"] = "snapshot"


EscalationCommand = Presence | Accept | Decline | Snapshot

_ADAPTER: TypeAdapter[EscalationCommand] = TypeAdapter(
    Annotated[EscalationCommand, Field(discriminator="type")]
)


def encode(command: EscalationCommand) -> bytes:
    """One JSON object without a newline; refuses what `decode` would refuse."""
    data = command.model_dump_json().encode()
    decode(data)
    return data


def decode(data: bytes | str) -> EscalationCommand:
    encoded = data.encode() if isinstance(data, str) else data
    if len(encoded) > MAX_MESSAGE_BYTES:
        raise CommandError(
            f"message of {len(encoded)} bytes is over the limit of {MAX_MESSAGE_BYTES}"
        )
    try:
        return _ADAPTER.validate_json(encoded)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"][1:]) or None
        raise CommandError(
            f"{where or 'command'}: {first['msg']}",
            field=where,
            command_id=_recoverable_id(encoded),
        ) from None


def _recoverable_id(encoded: bytes) -> str:
    try:
        raw: Any = json.loads(encoded)
        return TypeAdapter(Id).validate_python(raw["command_id"])
    except (ValueError, TypeError, KeyError, ValidationError):
        return ""


CODEC = Codec(decode, encode)
