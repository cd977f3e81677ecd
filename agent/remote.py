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
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from agent.realtime import audio_b64, audio_bytes
from agent.resample import LIVE_UP, Resampler
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


class NoDebug(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A connection's logger, never at DEBUG: websockets logs every handshake header there,
    the Authorization header (an API key, the engine's token) included."""

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 (logging's name)
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


WS_LOG = NoDebug(logging.getLogger("agent.websocket"), {})


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is at the other end of a session's WebSocket, for errors in words."""

    name: str  # "engine", "model"
    credential: str  # what a 401 says was refused

    def refused(self, status: int) -> SessionError:
        """A handshake answered with an HTTP error (never the credential itself)."""
        who = f"the {self.name}"
        if status in (401, 403):
            return SessionError(
                f"{who} refused the {self.credential} (HTTP {status})", retryable=False
            )
        if status == 429:
            return SessionError(f"{who} is rate-limited (HTTP 429)", retryable=True)
        return SessionError(
            f"{who} refused the connection (HTTP {status})", retryable=status >= 500
        )


ENGINE = Peer("engine", "token (engine.token)")


async def open_socket(
    url: str, headers: Mapping[str, str], *, peer: Peer, timeout_s: float, max_size: int = 2**24
) -> ClientConnection:
    """A session's WebSocket, or a SessionError that says why not."""
    try:
        return await asyncio.wait_for(
            connect(url, additional_headers=headers, max_size=max_size, logger=WS_LOG),
            timeout=timeout_s,
        )
    except InvalidStatus as refused:
        raise peer.refused(refused.response.status_code) from None
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as error:
        raise SessionError(
            f"{peer.name} unreachable at {safe_url(url)}: {error}", retryable=True
        ) from None


def safe_url(url: str) -> str:
    """A URL fit for a log line: no query or user part (a key could be in one)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="", fragment="", netloc=parts.netloc.rpartition("@")[2]))


END = object()  # put on a session's output queue when it ends as asked


async def queued_outputs(
    queue: asyncio.Queue[SessionOutput | SessionError | object],
) -> AsyncIterator[SessionOutput]:
    """A session's outputs from its queue, until END; a SessionError put there is raised."""
    while True:
        item = await queue.get()
        if item is END:
            return
        if isinstance(item, SessionError):
            raise item
        assert isinstance(item, AgentAudio | AgentDtmf | ClearPlayout | SessionEvent)
        yield item


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
        self._out: asyncio.Queue[SessionOutput | SessionError | object] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self.session_id = ""
        # The utterance being received: its id, ms of audio and transcript so far. The records
        # need when it started, how long it was and what it said, also when it is cut short.
        self._item_id: str | None = None
        self._item_ms = 0  # (from the samples: a sum of each chunk's whole ms would drift)
        self._item_samples = 0
        self._item_text: dict[str, str] = {}
        # Streams between the call's 16 kHz and the model's rate (filter state carried).
        self._up = Resampler(SAMPLE_RATE, rate, quality=LIVE_UP)  # the caller, live
        self._down = Resampler(rate, SAMPLE_RATE)

    async def start(self) -> None:
        self._ws = await self._connect()
        await self._send({"type": "session.update", "session": self._session_config()})
        self._reader = asyncio.create_task(self._read(self._ws), name="realtime-reader")

    async def _connect(self) -> ClientConnection:
        return await open_socket(
            self.url, self.headers, peer=ENGINE, timeout_s=self.connect_timeout_s
        )

    def _session_config(self) -> dict[str, Any]:
        fmt = {"type": "audio/pcm", "rate": self.rate}
        return {
            "type": "realtime",
            "instructions": self.instructions,
            "audio": {"input": {"format": fmt}, "output": {"format": fmt}},
            "metadata": self.metadata,
        }

    async def _send(self, event: dict[str, Any]) -> None:
        if self._ws is None:
            raise SessionError("session is not connected", retryable=False)
        try:
            await self._ws.send(json.dumps(event, separators=(",", ":")))
        except ConnectionClosed:
            if not self._closing:
                raise SessionError("engine connection closed", retryable=True) from None

    async def send_audio(self, frame: CallerAudio) -> None:
        pcm = self._up.process(frame.pcm)
        if pcm:
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

    async def replay(self, items: list[dict[str, Any]], *, answer: bool) -> None:
        """The conversation so far, into a new session (`conversation.item.create` each);
        `answer`: the last turn is the caller's and still unanswered (`response.create`)."""
        for item in items:
            await self._send({"type": "conversation.item.create", "item": item})
        if answer:
            await self._send({"type": "response.create"})

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                for item in self._translate(json.loads(message)):
                    self._out.put_nowait(item)
        except ConnectionClosed:
            pass
        except (ValueError, TypeError) as error:
            log.warning("bad event from engine", extra={"error": str(error)})
        finally:
            if ws is not self._ws:
                pass  # a connection replaced by a new one (a renewed session): not the end
            elif self._closing:
                self._out.put_nowait(END)
            else:
                self._out.put_nowait(SessionError("engine connection lost", retryable=True))

    def _translate(self, event: dict[str, Any]) -> list[SessionOutput]:
        kind = event.get("type")
        if kind == "response.output_audio.delta":
            return self._agent_audio(str(event["item_id"]), audio_bytes(event["delta"]))
        if kind == "response.output_audio_transcript.delta":
            item_id = str(event.get("item_id"))
            if len(self._item_text) > 8 and item_id not in self._item_text:
                self._item_text.clear()  # ids whose transcript never ended
            self._item_text[item_id] = self._item_text.get(item_id, "") + str(
                event.get("delta", "")
            )
            return []
        if kind == "input_audio_buffer.speech_started":
            return self._caller_started()
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
            return self._agent_audio_done(str(event.get("item_id")))
        if kind == "conversation.item.truncated":
            cut = {"utterance_id": event.get("item_id"), "heard_ms": event.get("audio_end_ms")}
            return [SessionEvent(EventKind.AGENT_TRUNCATED, cut)]
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

    def _caller_started(self) -> list[SessionOutput]:
        """The caller began to speak. The server may have finished sending an answer long
        before it finished playing: whatever is still queued is cut (with nothing playing the
        clear is a no-op)."""
        self._down.reset()  # what the filter held of the cut answer is never heard
        return [ClearPlayout(reason="barge_in"), SessionEvent(EventKind.CALLER_SPEECH_STARTED, {})]

    def _agent_audio(self, item_id: str, pcm_at_rate: bytes) -> list[SessionOutput]:
        outputs: list[SessionOutput] = []
        if item_id != self._item_id:
            self._down.reset()  # nothing of an earlier utterance carries into this one
            self._item_id, self._item_ms, self._item_samples = item_id, 0, 0
            outputs.append(
                SessionEvent(EventKind.AGENT_UTTERANCE_STARTED, {"utterance_id": item_id})
            )
        pcm = self._down.process(pcm_at_rate)
        if pcm:
            self._count(pcm)
            outputs.append(AgentAudio(item_id, pcm))
        return outputs

    def _agent_audio_done(self, item_id: str) -> list[SessionOutput]:
        outputs: list[SessionOutput] = []
        done: dict[str, object] = {"utterance_id": item_id}
        if item_id == self._item_id:
            tail = self._down.flush()
            if tail:
                self._count(tail)
                outputs.append(AgentAudio(item_id, tail))
            done["audio_ms"] = self._item_ms
        outputs.append(SessionEvent(EventKind.AGENT_UTTERANCE_DONE, done))
        return outputs

    def _count(self, pcm: bytes) -> None:
        self._item_samples += len(pcm) // 2
        self._item_ms = self._item_samples * 1000 // SAMPLE_RATE

    def outputs(self) -> AsyncIterator[SessionOutput]:
        return queued_outputs(self._out)

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, timeout=2.0)


class RealtimeTranscriber:
    """A transcription-only session on a Realtime endpoint (`session.type: "transcription"`):
    the caller's audio in, each utterance's words out. The media worker hears spoken consent
    with one, before any agent is on the call."""

    def __init__(
        self, url: str, *, headers: Mapping[str, str] | None = None, connect_timeout_s: float = 3.0
    ) -> None:
        self.url = url
        self.headers = dict(headers or {})
        self.connect_timeout_s = connect_timeout_s
        self._ws: ClientConnection | None = None
        self.closing = False

    async def start(self) -> None:
        self._ws = await open_socket(
            self.url, self.headers, peer=ENGINE, timeout_s=self.connect_timeout_s, max_size=2**22
        )
        await self._send({"type": "session.update", "session": self._session()})

    def _session(self) -> dict[str, Any]:
        fmt = {"type": "audio/pcm", "rate": SAMPLE_RATE}
        return {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": fmt,
                    "transcription": {"model": "whisper-tiny.en", "language": "en"},
                    "turn_detection": {"type": "server_vad"},
                }
            },
        }

    async def _send(self, event: dict[str, Any]) -> None:
        if self._ws is None:
            raise SessionError("not connected to the engine", retryable=False)
        try:
            await self._ws.send(json.dumps(event, separators=(",", ":")))
        except ConnectionClosed:
            if not self.closing:
                raise SessionError("engine connection closed", retryable=True) from None

    async def send_audio(self, pcm: bytes) -> None:
        """16 kHz PCM16 of the caller."""
        await self._send({"type": "input_audio_buffer.append", "audio": audio_b64(pcm)})

    async def transcripts(self) -> AsyncIterator[str | None]:
        """None as each utterance starts (the caller began to speak), then its words, in
        order, until the connection ends."""
        if self._ws is None:
            raise SessionError("transcriber is not connected", retryable=False)
        try:
            async for message in self._ws:
                try:
                    event = json.loads(message)
                except ValueError:
                    continue
                if not isinstance(event, dict):
                    continue
                kind = event.get("type")
                if kind == "input_audio_buffer.speech_started":
                    yield None
                elif kind == "conversation.item.input_audio_transcription.completed":
                    yield str(event.get("transcript") or "")
                elif kind == "error":
                    log.warning("transcriber error", extra={"error": event.get("error")})
        except ConnectionClosed:
            return

    async def close(self) -> None:
        self.closing = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
