"""A duplex session over the Realtime WebSocket protocol: the media worker's client.

The same client talks to Parley's engine server (`audio/pcm` at 16 kHz, Parley's native
rate) or to a hosted realtime model (24 kHz, resampled here). Barge-in follows the Realtime
convention: when the server says `input_audio_buffer.speech_started` while agent audio is
playing, the client clears its playout and truncates the item to what the caller heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from agent.realtime import audio_b64, audio_bytes
from agent.session import (
    SAMPLE_RATE,
    AgentAudio,
    AgentDtmf,
    CallerAudio,
    CallerDtmf,
    ClearPlayout,
    EventKind,
    PlayoutReport,
    SessionError,
    SessionEvent,
    SessionOutput,
)

log = logging.getLogger(__name__)

_END = object()


def resample_pcm16(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """Linear-interpolation resampling of PCM16 mono; exact passthrough when rates match."""
    if src_rate == dst_rate or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    n_out = max(1, round(len(samples) * dst_rate / src_rate))
    positions = np.arange(n_out, dtype=np.float64) * (src_rate / dst_rate)
    out = np.interp(positions, np.arange(len(samples)), samples)
    return bytes(np.clip(out, -32768, 32767).astype("<i2").tobytes())


class RealtimeSession:
    """DuplexSession over a Realtime WebSocket; one per call."""

    def __init__(
        self,
        url: str,
        *,
        rate: int = SAMPLE_RATE,
        instructions: str = "",
        headers: Mapping[str, str] | None = None,
        metadata: Mapping[str, str] | None = None,
        connect_timeout_s: float = 3.0,
    ) -> None:
        self.url = url
        self.rate = rate
        self.instructions = instructions
        self.headers = dict(headers or {})
        self.metadata = dict(metadata or {})
        self.connect_timeout_s = connect_timeout_s
        self._ws: ClientConnection | None = None
        self._out: asyncio.Queue[SessionOutput | object] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self.session_id = ""
        # The utterance being received: its id, ms of audio and transcript so far. The records
        # need when it started, how long it was and what it said, also when it is cut short.
        self._item_id: str | None = None
        self._item_ms = 0
        self._item_text: dict[str, str] = {}

    async def start(self) -> None:
        try:
            self._ws = await asyncio.wait_for(
                connect(self.url, additional_headers=self.headers, max_size=2**24),
                timeout=self.connect_timeout_s,
            )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as error:
            raise SessionError(
                f"engine unreachable at {self.url}: {error}", retryable=True
            ) from None
        fmt = {"type": "audio/pcm", "rate": self.rate}
        await self._send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "instructions": self.instructions,
                    "audio": {"input": {"format": fmt}, "output": {"format": fmt}},
                    "metadata": self.metadata,
                },
            }
        )
        self._reader = asyncio.create_task(self._read(), name="realtime-reader")

    async def _send(self, event: dict[str, Any]) -> None:
        if self._ws is None:
            raise SessionError("session is not connected", retryable=False)
        try:
            await self._ws.send(json.dumps(event, separators=(",", ":")))
        except ConnectionClosed:
            if not self._closing:
                raise SessionError("engine connection closed", retryable=True) from None

    async def send_audio(self, frame: CallerAudio) -> None:
        pcm = resample_pcm16(frame.pcm, SAMPLE_RATE, self.rate)
        await self._send({"type": "input_audio_buffer.append", "audio": audio_b64(pcm)})

    async def send_dtmf(self, digit: CallerDtmf) -> None:
        await self._send({"type": "parley.dtmf", "digit": digit.digit})

    async def send_instruction(self, text: str) -> None:
        await self._send({"type": "parley.instruction", "text": text})

    async def resume(self, note: str | None) -> None:
        event: dict[str, Any] = {"type": "parley.resume"}
        if note:
            event["note"] = note
        await self._send(event)

    async def playout_report(self, report: PlayoutReport) -> None:
        if report.interrupted:
            await self._send(
                {
                    "type": "conversation.item.truncate",
                    "item_id": report.utterance_id,
                    "content_index": 0,
                    "audio_end_ms": report.played_ms,
                }
            )

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for message in self._ws:
                for item in self._translate(json.loads(message)):
                    self._out.put_nowait(item)
        except ConnectionClosed:
            pass
        except (ValueError, TypeError) as error:
            log.warning("bad event from engine", extra={"error": str(error)})
        finally:
            if self._closing:
                self._out.put_nowait(_END)
            else:
                self._out.put_nowait(SessionError("engine connection lost", retryable=True))

    def _translate(self, event: dict[str, Any]) -> list[SessionOutput]:
        kind = event.get("type")
        if kind == "response.output_audio.delta":
            item_id = str(event["item_id"])
            pcm = resample_pcm16(audio_bytes(event["delta"]), self.rate, SAMPLE_RATE)
            outputs: list[SessionOutput] = []
            if item_id != self._item_id:
                self._item_id, self._item_ms = item_id, 0
                outputs.append(
                    SessionEvent(EventKind.AGENT_UTTERANCE_STARTED, {"utterance_id": item_id})
                )
            self._item_ms += len(pcm) * 1000 // (2 * SAMPLE_RATE)
            outputs.append(AgentAudio(item_id, pcm))
            return outputs
        if kind == "response.output_audio_transcript.delta":
            item_id = str(event.get("item_id"))
            if len(self._item_text) > 8 and item_id not in self._item_text:
                self._item_text.clear()  # ids whose transcript never ended
            self._item_text[item_id] = self._item_text.get(item_id, "") + str(
                event.get("delta", "")
            )
            return []
        if kind == "input_audio_buffer.speech_started":
            # The server may have finished sending an answer long before it finished playing:
            # whatever is still queued here is cut. With nothing playing the clear is a no-op.
            return [
                ClearPlayout(reason="barge_in"),
                SessionEvent(EventKind.CALLER_SPEECH_STARTED, {}),
            ]
        if kind == "input_audio_buffer.speech_stopped":
            return [SessionEvent(EventKind.CALLER_SPEECH_STOPPED, {})]
        if kind == "conversation.item.input_audio_transcription.completed":
            heard: dict[str, object] = {"text": event.get("transcript", "")}
            level = event.get("parley_level_dbfs")
            if isinstance(level, int | float) and not isinstance(level, bool):
                heard["level_dbfs"] = level
            return [SessionEvent(EventKind.CALLER_TRANSCRIPT, heard)]
        if kind == "response.output_audio_transcript.done":
            # A server that cuts its transcript to what was heard (Parley's engine, after a
            # truncate) sent the whole text as deltas: keep both.
            transcript = str(event.get("transcript", ""))
            said = self._item_text.pop(str(event.get("item_id")), "").strip()
            data: dict[str, object] = {"utterance_id": event.get("item_id"), "text": transcript}
            if said and said != transcript.strip():
                data.update(text=said, heard_text=transcript)
            return [SessionEvent(EventKind.AGENT_TRANSCRIPT, data)]
        if kind == "response.output_audio.done":
            item_id = str(event.get("item_id"))
            done: dict[str, object] = {"utterance_id": item_id}
            if item_id == self._item_id:
                done["audio_ms"] = self._item_ms
            return [SessionEvent(EventKind.AGENT_UTTERANCE_DONE, done)]
        if kind == "parley.dtmf":
            return [AgentDtmf(str(event.get("digits", "")))]
        parley_kinds = {
            "parley.handoff_requested": EventKind.HANDOFF_REQUESTED,
            "parley.reply": EventKind.REPLY,
            "parley.hangup_requested": EventKind.HANGUP_REQUESTED,
            "parley.backchannel_ignored": EventKind.BACKCHANNEL_IGNORED,
            "parley.turn_latency": EventKind.END_OF_TURN,
            "parley.barge_in": EventKind.BARGE_IN,
            "parley.agent_backchannel": EventKind.AGENT_BACKCHANNEL,
            "parley.instruction_applied": EventKind.INSTRUCTION_APPLIED,
            "parley.agent_resumed": EventKind.AGENT_RESUMED,
        }
        if kind in parley_kinds:
            data = {k: v for k, v in event.items() if k not in ("type", "event_id")}
            return [SessionEvent(parley_kinds[kind], data)]
        if kind == "error":
            error = event.get("error") or {}
            return [
                SessionEvent(
                    EventKind.ERROR, {"code": error.get("code"), "message": error.get("message")}
                )
            ]
        return []

    async def outputs(self) -> AsyncIterator[SessionOutput]:
        while True:
            item = await self._out.get()
            if item is _END:
                return
            if isinstance(item, SessionError):
                raise item
            assert isinstance(item, AgentAudio | AgentDtmf | ClearPlayout | SessionEvent)
            yield item

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, timeout=2.0)
