"""Gemini Live as a line's agent: the `BidiGenerateContent` WebSocket of the Gemini API.

What goes out: `setup` (the model, `generationConfig.responseModalities: ["AUDIO"]` and the
voice, the line's system instruction, the tools of agent/tools.py as `functionDeclarations`,
`realtimeInputConfig.automaticActivityDetection`, input and output transcription,
`sessionResumption`, `contextWindowCompression` with a sliding window); a `clientContent` turn
asking the model to greet the caller; `realtimeInput.audio` for every caller frame, as
`audio/pcm;rate=16000` (the call's own rate: nothing to resample on the way up);
`toolResponse` for each function call; `clientContent` notes for a supervisor's whisper, a
hand-back, or a key the caller pressed.

What comes in: `setupComplete`; `serverContent` with the model's audio (`inlineData`,
`audio/pcm;rate=24000`, resampled to 16 kHz as it streams), `interrupted` (the caller spoke:
the worker drops the queued audio), `generationComplete`, `turnComplete`, and the input and
output transcriptions; `toolCall` / `toolCallCancellation`; `goAway`; and
`sessionResumptionUpdate`, whose latest resumable handle is kept.

A connection lasts about ten minutes. On `goAway` the adapter opens a new connection with the
last handle — at once between turns, else as soon as the answer playing has been generated —
and swaps it in once it is set up; the old one streams on until then, so the caller hears no
gap. The API key goes in the `x-goog-api-key` header (never in the URL, never logged).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from agent.audio import rms_dbfs
from agent.remote import END, Peer, open_socket, queued_outputs
from agent.resample import Resampler
from agent.session import (
    SAMPLE_RATE,
    AgentAudio,
    CallerAudio,
    CallerDtmf,
    ClearPlayout,
    EventKind,
    PlayoutReport,
    SessionError,
    SessionEvent,
    SessionOutput,
)
from agent.tools import Tools, hand_back_note, key_note, log_failure, whisper_note

log = logging.getLogger(__name__)

URL = (
    "wss://generativelanguage.googleapis.com/ws/"
    "google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
)
OUTPUT_RATE = 24_000
INPUT_MIME = f"audio/pcm;rate={SAMPLE_RATE}"
MODEL = Peer("model", "API key")
GREETING = "(The caller has just been connected.) Greet them in one short sentence."
LOUD_DBFS = -36.3  # a caller frame this loud (RMS 500 of 32768) is voice, for turn latency


@dataclass(frozen=True, slots=True)
class GeminiOptions:
    model: str = "gemini-live-2.5-flash-preview"
    voice: str = "Kore"
    silence_duration_ms: int = 500  # the model's own end-of-speech wait
    setup_timeout_s: float = 5.0


class GeminiLiveSession:
    """DuplexSession on the Gemini Live API."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str,
        options: GeminiOptions,
        instructions: str = "",
        tools: Tools | None = None,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.headers: Mapping[str, str] = {"x-goog-api-key": api_key} if api_key else {}
        self.options = options
        self.instructions = instructions
        self.tools = tools or Tools()
        self.connect_timeout_s = connect_timeout_s
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._out: asyncio.Queue[SessionOutput | SessionError | object] = asyncio.Queue()
        self._closing = False
        self._down = Resampler(OUTPUT_RATE, SAMPLE_RATE)
        self._handle: str | None = None  # the latest resumable session handle
        self._handle_fresh = False  # it holds every turn so far (none began since)
        self._resume_wanted = False  # goAway came: resume at the next chance
        self._resuming: asyncio.Task[None] | None = None
        self.resumptions = 0
        # The model's turn being received: its id, audio so far (samples), words so far.
        self._turn: str | None = None
        self._turn_samples = 0
        self._turn_text = ""
        self._caller_text = ""
        self._last_voice = 0.0  # when the caller last sent a loud frame (monotonic s)

    # --- connecting -------------------------------------------------------------------------

    async def start(self) -> None:
        self._ws = await self._open(self._handle)
        self._reader = asyncio.create_task(self._read(self._ws), name="gemini-reader")
        await self._send(
            {
                "clientContent": {
                    "turns": [{"role": "user", "parts": [{"text": GREETING}]}],
                    "turnComplete": True,
                }
            }
        )

    async def _open(self, handle: str | None) -> ClientConnection:
        """A connection, set up (resumed from `handle` when given)."""
        ws = await open_socket(self.url, self.headers, peer=MODEL, timeout_s=self.connect_timeout_s)
        try:
            await ws.send(json.dumps({"setup": self._setup(handle)}))
            async with asyncio.timeout(self.options.setup_timeout_s):
                while True:
                    message = json.loads(await ws.recv())
                    if "setupComplete" in message:
                        return ws
                    if "sessionResumptionUpdate" in message:
                        self._resumption_update(message["sessionResumptionUpdate"])
        except (TimeoutError, ConnectionClosed, ValueError) as error:
            with contextlib.suppress(Exception):
                await ws.close()
            raise SessionError(
                f"the model did not set up the session: {error!r}", retryable=True
            ) from None

    def _setup(self, handle: str | None) -> dict[str, Any]:
        model = self.options.model
        setup: dict[str, Any] = {
            "model": model if model.startswith("models/") else f"models/{model}",
            "generationConfig": {
                "responseModalities": ["AUDIO"],
                "speechConfig": {
                    "voiceConfig": {"prebuiltVoiceConfig": {"voiceName": self.options.voice}}
                },
            },
            "tools": [
                {"functionDeclarations": [_declaration(d) for d in self.tools.definitions()]}
            ],
            "realtimeInputConfig": {
                "automaticActivityDetection": {
                    "disabled": False,
                    "silenceDurationMs": self.options.silence_duration_ms,
                }
            },
            "inputAudioTranscription": {},
            "outputAudioTranscription": {},
            "sessionResumption": {"handle": handle} if handle else {},
            "contextWindowCompression": {"slidingWindow": {}},
        }
        if self.instructions:
            setup["systemInstruction"] = {"parts": [{"text": self.instructions}]}
        return setup

    async def _send(self, message: dict[str, Any]) -> None:
        if self._ws is None:
            raise SessionError("session is not connected", retryable=False)
        try:
            await self._ws.send(json.dumps(message, separators=(",", ":")))
        except ConnectionClosed:
            if not self._closing:
                raise SessionError("model connection closed", retryable=True) from None

    # --- what the call sends ----------------------------------------------------------------

    async def send_audio(self, frame: CallerAudio) -> None:
        if rms_dbfs(np.frombuffer(frame.pcm, dtype="<i2")) > LOUD_DBFS:
            self._last_voice = time.monotonic()
        data = base64.b64encode(frame.pcm).decode()
        await self._send({"realtimeInput": {"audio": {"mimeType": INPUT_MIME, "data": data}}})

    async def send_dtmf(self, digit: CallerDtmf) -> None:
        await self._note(key_note(digit.digit))

    async def send_instruction(self, text: str) -> None:
        await self._note(whisper_note(text), answer=False)  # it shapes the next answer

    async def resume(self, note: str | None) -> None:
        await self._note(hand_back_note(note))

    async def _note(self, text: str, *, answer: bool = True) -> None:
        turn = {"role": "user", "parts": [{"text": f"({text})"}]}
        await self._send({"clientContent": {"turns": [turn], "turnComplete": answer}})

    async def playout_report(self, report: PlayoutReport) -> None:
        """Gemini has no truncation: the server already stopped at `interrupted`."""

    # --- what the model sends ---------------------------------------------------------------

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                try:
                    parsed = json.loads(message)
                except ValueError:
                    log.warning("bad message from the model")
                    continue
                if isinstance(parsed, dict):
                    for item in self._translate(parsed):
                        self._out.put_nowait(item)
        except ConnectionClosed:
            pass
        finally:
            if ws is not self._ws:
                pass  # replaced by a resumed connection: not the end
            elif self._closing:
                self._out.put_nowait(END)
            else:
                self._out.put_nowait(SessionError("model connection lost", retryable=True))

    def _translate(self, message: dict[str, Any]) -> list[SessionOutput]:
        outputs: list[SessionOutput] = []
        if "sessionResumptionUpdate" in message:
            self._resumption_update(message["sessionResumptionUpdate"])
        if "goAway" in message:
            log.info(
                "model connection going away",
                extra={"time_left": message["goAway"].get("timeLeft")},
            )
            self._resume_wanted = True
            self._maybe_resume()
        if "toolCall" in message:
            for call in message["toolCall"].get("functionCalls") or []:
                task = asyncio.create_task(self._tool_call(call), name="gemini-tool")
                task.add_done_callback(log_failure)
        if "toolCallCancellation" in message:
            log.info(
                "tool calls cancelled", extra={"ids": message["toolCallCancellation"].get("ids")}
            )
        content = message.get("serverContent")
        if isinstance(content, dict):
            outputs += self._content(content)
        return outputs

    def _content(self, content: dict[str, Any]) -> list[SessionOutput]:
        outputs: list[SessionOutput] = []
        heard = (content.get("inputTranscription") or {}).get("text")
        if heard:
            self._caller_text += str(heard)
        if content.get("interrupted"):
            self._down.reset()  # what the filter held of the cut answer is never heard
            outputs.append(ClearPlayout(reason="barge_in"))
            outputs.append(SessionEvent(EventKind.CALLER_SPEECH_STARTED, {}))
            outputs += self._turn_over()
        for part in (content.get("modelTurn") or {}).get("parts") or []:
            blob = part.get("inlineData") if isinstance(part, dict) else None
            if isinstance(blob, dict) and str(blob.get("mimeType", "")).startswith("audio/pcm"):
                outputs += self._audio(base64.b64decode(blob.get("data") or ""))
        said = (content.get("outputTranscription") or {}).get("text")
        if said:
            self._turn_text += str(said)
        if content.get("turnComplete"):
            outputs += self._turn_over()
            self._maybe_resume()
        return outputs

    def _audio(self, pcm24: bytes) -> list[SessionOutput]:
        outputs: list[SessionOutput] = []
        if self._turn is None:
            self._turn, self._turn_samples = f"gemini_{uuid.uuid4().hex[:20]}", 0
            self._handle_fresh = False
            self._down.reset()
            if self._caller_text.strip():
                outputs.append(
                    SessionEvent(EventKind.CALLER_TRANSCRIPT, {"text": self._caller_text.strip()})
                )
                self._caller_text = ""
            outputs.append(
                SessionEvent(EventKind.AGENT_UTTERANCE_STARTED, {"utterance_id": self._turn})
            )
            if self._last_voice:
                outputs.append(self._turn_latency())
        pcm = self._down.process(pcm24)
        if pcm:
            self._turn_samples += len(pcm) // 2
            outputs.append(AgentAudio(self._turn, pcm))
        return outputs

    def _turn_over(self) -> list[SessionOutput]:
        """The model's turn is over (complete, or cut by the caller)."""
        turn, self._turn = self._turn, None
        if turn is None:
            return []
        outputs: list[SessionOutput] = []
        tail = self._down.flush()
        if tail:
            self._turn_samples += len(tail) // 2
            outputs.append(AgentAudio(turn, tail))
        audio_ms = self._turn_samples * 1000 // SAMPLE_RATE
        outputs.append(
            SessionEvent(
                EventKind.AGENT_UTTERANCE_DONE, {"utterance_id": turn, "audio_ms": audio_ms}
            )
        )
        outputs.append(
            SessionEvent(
                EventKind.AGENT_TRANSCRIPT, {"utterance_id": turn, "text": self._turn_text.strip()}
            )
        )
        self._turn_text = ""
        return outputs

    def _turn_latency(self) -> SessionEvent:
        """From the caller's last loud frame to the answer's first audio: the model's share,
        its endpointing included (Gemini does not say when it heard the caller stop)."""
        waited = (time.monotonic() - self._last_voice) * 1000
        self._last_voice = 0.0
        return SessionEvent(
            EventKind.END_OF_TURN,
            {
                "end_reason": "automatic_activity_detection",
                "endpointing_ms": 0.0,
                "responder_ms": 0.0,
                "first_audio_ms": round(waited, 1),
                "model": self.options.model,
            },
        )

    async def _tool_call(self, call: dict[str, Any]) -> None:
        name = str(call.get("name", ""))
        result = await self.tools.call(name, json.dumps(call.get("args") or {}))
        for outcome in result.events:
            self._out.put_nowait(outcome)
        response = {"id": call.get("id"), "name": name, "response": json.loads(result.output)}
        await self._send({"toolResponse": {"functionResponses": [response]}})

    # --- goAway and resumption --------------------------------------------------------------

    def _resumption_update(self, update: dict[str, Any]) -> None:
        if update.get("resumable") and update.get("newHandle"):
            self._handle = str(update["newHandle"])
            self._handle_fresh = self._turn is None
            self._maybe_resume()

    def _maybe_resume(self) -> None:
        """Resumes once goAway has come, no answer is being generated, and the server has
        given a handle that holds the conversation so far."""
        if not self._resume_wanted or self._turn is not None or self._resuming is not None:
            return
        if not self._handle_fresh:
            return  # the handle after the last turn is on its way
        self._resuming = asyncio.create_task(self._resume(), name="gemini-resume")

    async def _resume(self) -> None:
        try:
            fresh = await self._open(self._handle)
        except SessionError as error:
            log.warning("session resumption failed", extra={"error": str(error)})
            self._resuming = None
            return  # the old connection runs on; its end ends the session
        old, old_reader = self._ws, self._reader
        self._ws = fresh
        self._reader = asyncio.create_task(self._read(fresh), name="gemini-reader")
        self._resume_wanted = False
        self._resuming = None
        self.resumptions += 1
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()
        if old_reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(old_reader, timeout=2.0)

    # --- the session's end ------------------------------------------------------------------

    def outputs(self) -> AsyncIterator[SessionOutput]:
        return queued_outputs(self._out)

    async def close(self) -> None:
        self._closing = True
        if self._resuming is not None:
            self._resuming.cancel()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, timeout=2.0)


def _declaration(tool: dict[str, Any]) -> dict[str, Any]:
    """A shared tool as a Gemini function declaration (its parameters as JSON Schema)."""
    return {
        "name": tool["name"],
        "description": tool["description"],
        "parametersJsonSchema": tool["parameters"],
    }
