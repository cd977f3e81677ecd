"""GPT-realtime (OpenAI's Realtime API, GA protocol) as a line's agent, over WebSocket.

What goes out: `session.update` (`session.type: "realtime"`, the model, the line's
instructions, `audio.input` / `audio.output` formats — `audio/pcm` at 24 kHz — the voice, the
turn detection — `server_vad`, or `semantic_vad` with its eagerness — input transcription, and
the tools of agent/tools.py); `input_audio_buffer.append` for every caller frame;
`conversation.item.truncate` with `audio_end_ms` = what the caller heard when an answer is cut;
`conversation.item.create` (a function call's output; a supervisor's whisper or hand-back note
as a system message; a key the caller pressed) and `response.create`.

What comes in: `response.output_audio.delta` (and the older `response.audio.delta`), the
transcript deltas and `.done`s, `input_audio_buffer.speech_started` / `speech_stopped`,
`conversation.item.input_audio_transcription.completed`, `response.created` / `response.done`,
`response.function_call_arguments.done`, `error`. Everything else is ignored.

Barge-in: the server's VAD hears the caller and cancels its own response (`interrupt_response`);
the worker drops the queued audio at once and truncates the item to what was heard. Over a
WebSocket the client plays the audio, so there is no server-side buffer to clear
(`output_audio_buffer.clear` is for WebRTC and SIP connections only).

Sessions last at most 60 minutes: before then (`renew_after_s`) the adapter opens a new
connection, replays the conversation so far as items (the caller's and the agent's words, the
tool calls), and swaps it in between two caller frames; the caller hears nothing of it.

The API key is read from the environment variable the line names, when the session starts; it
is sent only in the `Authorization` header and never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection

from agent.realtime import audio_bytes, message_item
from agent.remote import Peer, RealtimeSession, open_socket
from agent.session import (
    CallerAudio,
    CallerDtmf,
    EventKind,
    SessionError,
    SessionEvent,
    SessionOutput,
)
from agent.tools import Tools, hand_back_note, key_note, log_failure, whisper_note
from agent.turn_source import EngineTurns

log = logging.getLogger(__name__)

RATE = 24_000  # audio/pcm in the Realtime API
SESSION_LIMIT_S = 60 * 60
TURN_DETECTION = ("server_vad", "semantic_vad")
EAGERNESS = ("low", "medium", "high", "auto")

MODEL = Peer("model", "API key")
GREETING = "Greet the caller in one short sentence and ask how you can help."

# Events that were renamed in the GA protocol: the older name → the GA one.
_RENAMED = {
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
}


@dataclass(frozen=True, slots=True)
class OpenAIOptions:
    """A line's GPT-realtime settings (admin/settings.py ModelSettings)."""

    model: str = "gpt-realtime"
    voice: str = "marin"
    turn_detection: str = "server_vad"
    eagerness: str = "auto"  # semantic_vad only
    transcription_model: str = "gpt-4o-mini-transcribe"
    renew_after_s: float = SESSION_LIMIT_S - 5 * 60


class OpenAIRealtimeSession(RealtimeSession):
    """DuplexSession on the OpenAI Realtime API (or anything that speaks its GA protocol)."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str,
        options: OpenAIOptions,
        instructions: str = "",
        tools: Tools | None = None,
        turns: EngineTurns | None = None,
        connect_timeout_s: float = 5.0,
    ) -> None:
        """`turns`: Parley's engine decides the caller's turns (`turn_detection: parley`)."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        super().__init__(
            with_model(url, options.model),
            rate=RATE,
            instructions=instructions,
            headers=headers,
            connect_timeout_s=connect_timeout_s,
        )
        self.options = options
        self.tools = tools or Tools()
        self.turns = turns
        self._following: asyncio.Task[None] | None = None
        self._response_id: str | None = None  # the response being generated
        self._sent_ms = 0.0  # caller audio appended so far, in ms of the input buffer
        self._sent_at: list[tuple[float, float]] = []  # (ms appended, monotonic s) per frame
        self._speech_stopped: tuple[float, float] | None = None  # (endpointing s, monotonic s)
        self._turn_open = False  # a caller turn ended and its answer has not started yet
        self._history: list[dict[str, Any]] = []  # the conversation, for a renewed session
        self._started_mono = 0.0
        self._renewing: asyncio.Task[None] | None = None

    # --- connecting -------------------------------------------------------------------------

    async def _connect(self) -> ClientConnection:
        ws = await open_socket(self.url, self.headers, peer=MODEL, timeout_s=self.connect_timeout_s)
        if not self._started_mono:
            self._started_mono = time.monotonic()
        return ws

    def _session_config(self) -> dict[str, Any]:
        fmt = {"type": "audio/pcm", "rate": RATE}
        detection: dict[str, Any] | None = None  # with `turns`: the model answers when asked
        if self.turns is None:
            detection = {"type": self.options.turn_detection}
            if self.options.turn_detection == "semantic_vad":
                detection["eagerness"] = self.options.eagerness
            detection.update(create_response=True, interrupt_response=True)
        config: dict[str, Any] = {
            "type": "realtime",
            "model": self.options.model,
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": fmt,
                    "transcription": {"model": self.options.transcription_model},
                    "turn_detection": detection,
                },
                "output": {"format": fmt, "voice": self.options.voice},
            },
            "tools": [{"type": "function", **d} for d in self.tools.definitions()],
            "tool_choice": "auto",
        }
        if self.instructions:
            config["instructions"] = self.instructions
        return config

    async def start(self) -> None:
        await super().start()
        # A hosted model waits to be spoken to; on the phone the one who answers speaks first.
        await self._send({"type": "response.create", "response": {"instructions": GREETING}})
        self._renewing = asyncio.create_task(self._renew_in_time(), name="realtime-renew")
        if self.turns is not None:
            await self.turns.start()
            self._following = asyncio.create_task(self._follow_turns(self.turns), name="turns")

    async def _follow_turns(self, turns: EngineTurns) -> None:
        """Parley's turn-taking drives the model: a caller who starts to speak cuts its
        answer (as its own VAD would with interrupt_response); a turn's end commits the input
        buffer and asks for the answer. Losing the engine fails the session."""
        try:
            async for turn in turns.events():
                if turn.kind == "started":
                    for item in self._caller_started():
                        self._out.put_nowait(item)
                    if self._response_id is not None:
                        await self._send({"type": "response.cancel"})
                elif turn.text.strip():
                    self._speech_stopped = (turn.endpointing_ms / 1000, time.monotonic())
                    self._turn_open = True
                    await self._send({"type": "input_audio_buffer.commit"})
                    await self._send({"type": "response.create"})
        except SessionError as error:
            if not self._closing:
                self._out.put_nowait(error)

    # --- what the call sends ----------------------------------------------------------------

    async def send_audio(self, frame: CallerAudio) -> None:
        await super().send_audio(frame)
        if self.turns is not None:
            with contextlib.suppress(SessionError):  # a lost engine is reported by _follow_turns
                await self.turns.send_audio(frame.pcm)
        self._sent_ms += 20.0
        self._sent_at.append((self._sent_ms, time.monotonic()))
        if len(self._sent_at) > 3000:  # a minute of frames is plenty to place a turn's end
            del self._sent_at[:1000]

    async def send_dtmf(self, digit: CallerDtmf) -> None:
        await self._system_note(key_note(digit.digit))

    async def send_instruction(self, text: str) -> None:
        await self._system_note(whisper_note(text))

    async def resume(self, note: str | None) -> None:
        await self._system_note(hand_back_note(note))
        await self._send({"type": "response.create"})

    async def _system_note(self, text: str) -> None:
        item = {
            "type": "message",
            "role": "system",
            "content": [{"type": "input_text", "text": text}],
        }
        self._history.append(item)
        await self._send({"type": "conversation.item.create", "item": item})

    # --- what the model sends ---------------------------------------------------------------

    def _translate(self, event: dict[str, Any]) -> list[SessionOutput]:
        kind = str(event.get("type"))
        kind = _RENAMED.get(kind, kind)
        if kind == "response.output_audio.delta":
            outputs = self._agent_audio(str(event["item_id"]), audio_bytes(event["delta"]))
            if self._turn_open:
                outputs.append(self._turn_latency())
            return outputs
        if kind == "response.created":
            self._response_id = str((event.get("response") or {}).get("id") or "")
            return []
        if kind == "response.done":
            return self._response_done(event.get("response") or {})
        if kind == "input_audio_buffer.speech_stopped":
            self._turn_ended(event.get("audio_end_ms"))
        if kind == "input_audio_buffer.speech_started":
            self._turn_open = False
        if kind == "response.function_call_arguments.done":
            task = asyncio.create_task(self._tool_call(event), name="realtime-tool")
            task.add_done_callback(log_failure)
            return []
        if kind == "conversation.item.input_audio_transcription.completed":
            self._remember("user", str(event.get("transcript") or ""))
        if kind == "response.output_audio_transcript.done":
            self._remember("assistant", str(event.get("transcript") or ""))
        if kind == "error":
            return self._error(event.get("error") or {})
        if kind.startswith("parley."):
            return []  # a Parley engine's own extensions are not part of this protocol
        return super()._translate({**event, "type": kind})

    def _response_done(self, response: dict[str, Any]) -> list[SessionOutput]:
        self._response_id = None
        status = response.get("status")
        if status != "failed":
            return []
        details = response.get("status_details") or {}
        error = details.get("error") or {}
        return [
            SessionEvent(
                EventKind.ERROR,
                {"code": error.get("code") or error.get("type"), "message": error.get("message")},
            )
        ]

    def _error(self, error: dict[str, Any]) -> list[SessionOutput]:
        code = str(error.get("code") or error.get("type") or "")
        if code == "response_cancel_not_active":
            return []  # a cancel that crossed the end of the response
        log.warning("model error", extra={"code": code, "error": str(error.get("message"))[:200]})
        return [SessionEvent(EventKind.ERROR, {"code": code, "message": error.get("message")})]

    async def _tool_call(self, event: dict[str, Any]) -> None:
        name, call_id = str(event.get("name", "")), str(event.get("call_id", ""))
        arguments = str(event.get("arguments") or "")
        result = await self.tools.call(name, arguments)
        for outcome in result.events:
            self._out.put_nowait(outcome)
        call = {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}
        output = {"type": "function_call_output", "call_id": call_id, "output": result.output}
        self._history += [call, output]
        await self._send({"type": "conversation.item.create", "item": output})
        if result.respond:
            await self._send({"type": "response.create"})

    # --- per-turn latency, as the engine reports it -----------------------------------------

    def _turn_ended(self, audio_end_ms: object) -> None:
        """The server heard the caller stop at `audio_end_ms` of the input buffer: how long
        after that audio went out did it say so (its endpointing)."""
        now = time.monotonic()
        if not isinstance(audio_end_ms, int | float) or isinstance(audio_end_ms, bool):
            return
        sent = next((at for ms, at in self._sent_at if ms >= audio_end_ms), None)
        endpointing = max(0.0, now - sent) if sent is not None else 0.0
        self._speech_stopped = (endpointing, now)
        self._turn_open = True

    def _turn_latency(self) -> SessionEvent:
        self._turn_open = False
        assert self._speech_stopped is not None
        endpointing, stopped = self._speech_stopped
        return SessionEvent(
            EventKind.END_OF_TURN,
            {
                "end_reason": self.options.turn_detection,
                "endpointing_ms": round(endpointing * 1000, 1),
                "responder_ms": 0.0,  # a hosted model does not tell its parts apart
                "first_audio_ms": round((time.monotonic() - stopped) * 1000, 1),
                "model": self.options.model,
            },
        )

    # --- the 60-minute limit ----------------------------------------------------------------

    def _remember(self, role: str, text: str) -> None:
        if not text.strip():
            return
        self._history.append(message_item(role, text))

    async def _renew_in_time(self) -> None:
        while not self._closing:
            await asyncio.sleep(max(1.0, self.options.renew_after_s - self._age_s()))
            if self._closing:
                return
            if self._response_id is not None or self._turn_open:
                await asyncio.sleep(1.0)  # never in the middle of an answer
                continue
            try:
                await self.renew()
            except SessionError as error:
                log.warning("session renewal failed", extra={"error": str(error)})
                return  # the old connection runs on to its end

    def _age_s(self) -> float:
        return time.monotonic() - self._started_mono

    async def renew(self) -> None:
        """A new connection with the conversation so far; the old one closes once the new
        one has it. Caller audio goes to the new one from the next frame."""
        fresh = await self._connect()
        try:
            await fresh.send(
                json.dumps({"type": "session.update", "session": self._session_config()})
            )
            for item in self._history[-200:]:
                await fresh.send(json.dumps({"type": "conversation.item.create", "item": item}))
        except Exception as error:
            with contextlib.suppress(Exception):
                await fresh.close()
            raise SessionError(f"could not renew the session: {error}", retryable=True) from None
        old, old_reader = self._ws, self._reader
        self._ws = fresh
        self._started_mono = time.monotonic()
        self._reader = asyncio.create_task(self._read(fresh), name="realtime-reader")
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()
        if old_reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(old_reader, timeout=2.0)

    async def close(self) -> None:
        if self._renewing is not None:
            self._renewing.cancel()
        if self.turns is not None:
            await self.turns.close()
        if self._following is not None:
            self._following.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._following
        await super().close()


def with_model(url: str, model: str) -> str:
    """The URL with `?model=` added (the Realtime API takes the model in the query)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if model and "model" not in query:
        query["model"] = model
    return urlunsplit(parts._replace(query=urlencode(query)))
