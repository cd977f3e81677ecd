"""The session protocol on the wire: a documented subset of the OpenAI Realtime events.

Parley's engine server speaks it, and the media worker's client speaks it to Parley's engine
or to a hosted realtime model. Everything here is pure: parsing client events into typed
dataclasses (ValueError at the boundary for anything malformed) and building server events.

Client → server (subset): session.update, input_audio_buffer.append / commit / clear,
conversation.item.create (a user or system text message), conversation.item.truncate,
response.create, response.cancel; plus Parley's own: parley.dtmf, parley.instruction,
parley.resume.

- ``{"type": "parley.instruction", "text": str}``: a supervisor's whisper. The caller never
  hears the text; the agent's next answer says its content, phrased for the caller, once.
- ``{"type": "parley.resume", "note"?: str | null}``: the supervisor handed the call back. The
  agent says at once that it is back, then the note as a fact, which later answers may use.
  Any other field is refused, so a misspelt ``note`` is not silently lost.

Server → client (subset): session.created / updated, input_audio_buffer.speech_started /
speech_stopped / committed, conversation.item.added,
conversation.item.input_audio_transcription.completed, response.created,
response.output_audio.delta / done, response.output_audio_transcript.delta / done,
response.done, conversation.item.truncated, error; plus Parley's own (no Realtime
equivalent): parley.handoff_requested, parley.hangup_requested, parley.backchannel_ignored,
parley.turn_latency, parley.dtmf (digits the agent sends down the line),
parley.instruction_applied (a whisper went into the answer ``item_id`` as ``text``),
parley.agent_resumed (``note``: whether a note came with the hand-back), parley.reply (how
the responder read the caller's turn: ``intent``, ``understood``, ``confidence``, ``facts``);
and one field of its own on a standard event: ``parley_level_dbfs`` on
conversation.item.input_audio_transcription.completed (the caller's mean speech level in the
turn, for the escalation service's raised-voice cue).

A session opened with `session.type: "transcription"` only listens: audio in; speech_started /
speech_stopped / committed, conversation.item.added and
conversation.item.input_audio_transcription.completed (or .failed) out; anything that would
make it speak is refused (agent/transcription.py).

Audio: `audio/pcm` little-endian 16-bit mono. The Realtime API fixes the rate at 24 kHz;
Parley also accepts `rate: 16000` (its native rate), which its own media workers use.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from typing import Any

SUPPORTED_RATES = (16_000, 24_000)
DEFAULT_RATE = 24_000  # what a stock Realtime client assumes


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


# --- client events ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    input_rate: int | None
    output_rate: int | None
    instructions: str | None
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AudioAppend:
    pcm: bytes


@dataclass(frozen=True, slots=True)
class AudioCommit:
    pass


@dataclass(frozen=True, slots=True)
class AudioClear:
    pass


@dataclass(frozen=True, slots=True)
class ItemCreate:
    role: str
    text: str


@dataclass(frozen=True, slots=True)
class ItemTruncate:
    item_id: str
    content_index: int
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class ResponseCreate:
    pass


@dataclass(frozen=True, slots=True)
class ResponseCancel:
    response_id: str | None


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class Instruction:
    text: str


@dataclass(frozen=True, slots=True)
class Resume:
    note: str | None


ClientEvent = (
    SessionUpdate
    | AudioAppend
    | AudioCommit
    | AudioClear
    | ItemCreate
    | ItemTruncate
    | ResponseCreate
    | ResponseCancel
    | Dtmf
    | Instruction
    | Resume
)


class ProtocolError(ValueError):
    """A client event that cannot be accepted; `code` and `param` go into the error event."""

    def __init__(self, message: str, *, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


def _rate(fmt: object, where: str) -> int | None:
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise ProtocolError(f"{where} must be an object", code="invalid_value", param=where)
    kind = fmt.get("type", "audio/pcm")
    if kind != "audio/pcm":
        raise ProtocolError(
            f"unsupported audio format {kind!r}; Parley's engine takes audio/pcm",
            code="unsupported_format",
            param=where,
        )
    rate = fmt.get("rate", DEFAULT_RATE)
    if rate not in SUPPORTED_RATES:
        raise ProtocolError(
            f"unsupported rate {rate!r}; use one of {SUPPORTED_RATES}",
            code="unsupported_format",
            param=f"{where}.rate",
        )
    return int(rate)


def message_item(role: str, text: str) -> dict[str, Any]:
    """A text message for `conversation.item.create` (a user's or the assistant's turn)."""
    kind = "input_text" if role == "user" else "output_text"
    return {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}


def _text_of(item: dict[str, Any]) -> str:
    parts = item.get("content") or []
    texts = [p.get("text", "") for p in parts if isinstance(p, dict)]
    return " ".join(t for t in texts if isinstance(t, str)).strip()


def _resume(raw: dict[str, Any]) -> Resume:
    unknown = sorted(set(raw) - {"type", "event_id", "note"})
    if unknown:
        raise ProtocolError(
            f"parley.resume takes only 'note'; got {', '.join(map(repr, unknown))}",
            code="unknown_parameter",
            param=unknown[0],
        )
    note = raw.get("note")
    if note is not None and not isinstance(note, str):
        raise ProtocolError("note must be a string or null", code="invalid_value", param="note")
    return Resume((note or "").strip() or None)


def parse_client_event(message: str | bytes) -> ClientEvent | None:
    """A typed client event; None for a known event Parley ignores. Raises ProtocolError."""
    try:
        raw = json.loads(message)
    except (ValueError, UnicodeDecodeError) as error:
        raise ProtocolError(f"not JSON: {error}", code="invalid_json") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise ProtocolError("an event must be an object with a string 'type'", code="invalid_event")
    kind = raw["type"]
    if kind == "input_audio_buffer.append":
        audio = raw.get("audio")
        if not isinstance(audio, str):
            raise ProtocolError("audio must be base64 text", code="invalid_value", param="audio")
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(
                "audio is not valid base64", code="invalid_value", param="audio"
            ) from None
        if len(pcm) % 2:
            raise ProtocolError("PCM16 audio must have an even byte count", code="invalid_value")
        return AudioAppend(pcm)
    if kind == "session.update":
        session = raw.get("session")
        if not isinstance(session, dict):
            raise ProtocolError("session must be an object", code="invalid_value", param="session")
        audio = session.get("audio") or {}
        if not isinstance(audio, dict):
            raise ProtocolError("session.audio must be an object", code="invalid_value")
        input_fmt = (audio.get("input") or {}).get("format")
        output_fmt = (audio.get("output") or {}).get("format")
        instructions = session.get("instructions")
        return SessionUpdate(
            input_rate=_rate(input_fmt, "session.audio.input.format"),
            output_rate=_rate(output_fmt, "session.audio.output.format"),
            instructions=instructions if isinstance(instructions, str) else None,
            raw=session,
        )
    if kind == "input_audio_buffer.commit":
        return AudioCommit()
    if kind == "input_audio_buffer.clear":
        return AudioClear()
    if kind == "conversation.item.create":
        item = raw.get("item")
        if not isinstance(item, dict):
            raise ProtocolError("item must be an object", code="invalid_value", param="item")
        return ItemCreate(role=str(item.get("role", "user")), text=_text_of(item))
    if kind == "conversation.item.truncate":
        try:
            return ItemTruncate(
                item_id=str(raw["item_id"]),
                content_index=int(raw.get("content_index", 0)),
                audio_end_ms=int(raw["audio_end_ms"]),
            )
        except (KeyError, TypeError, ValueError):
            raise ProtocolError(
                "truncate needs item_id and audio_end_ms", code="invalid_value"
            ) from None
    if kind == "response.create":
        return ResponseCreate()
    if kind == "response.cancel":
        response_id = raw.get("response_id")
        return ResponseCancel(response_id if isinstance(response_id, str) else None)
    if kind == "parley.dtmf":
        digit = raw.get("digit")
        if not isinstance(digit, str) or len(digit) != 1 or digit not in "0123456789*#ABCD":
            raise ProtocolError("digit must be one of 0-9 * # A-D", code="invalid_value")
        return Dtmf(digit)
    if kind == "parley.instruction":
        text = raw.get("text")
        if not isinstance(text, str):
            raise ProtocolError("text must be a string", code="invalid_value", param="text")
        return Instruction(text)
    if kind == "parley.resume":
        return _resume(raw)
    if kind in (
        "conversation.item.retrieve",
        "conversation.item.delete",
        "output_audio_buffer.clear",
    ):
        return None
    raise ProtocolError(f"unsupported event type {kind!r}", code="unsupported_event")


# --- server events ------------------------------------------------------------------------


def server_event(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, "event_id": new_id("event"), **fields}, separators=(",", ":"))


def error_event(message: str, *, code: str, param: str | None = None) -> str:
    return server_event(
        "error",
        error={"type": "invalid_request_error", "code": code, "message": message, "param": param},
    )


def session_object(
    session_id: str, input_rate: int, output_rate: int, instructions: str
) -> dict[str, Any]:
    return {
        "type": "realtime",
        "id": session_id,
        "object": "realtime.session",
        "model": "parley-embedded",
        "output_modalities": ["audio"],
        "instructions": instructions,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": input_rate},
                "turn_detection": {"type": "server_vad"},
                "transcription": {"model": "whisper-tiny.en"},
            },
            "output": {"format": {"type": "audio/pcm", "rate": output_rate}, "voice": "joe"},
        },
    }


def audio_b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode("ascii")


def audio_bytes(b64: object) -> bytes:
    """The PCM inside an audio field; ValueError when it is not base64 text."""
    if not isinstance(b64, str):
        raise ValueError("audio is not base64 text")
    try:
        return base64.b64decode(b64, validate=True)
    except binascii.Error as error:
        raise ValueError(f"audio is not valid base64: {error}") from None
