"""The engine server: the embedded duplex engine behind a Realtime WebSocket endpoint.

`parley engine` runs it in its own process. It loads the models once (agent/hub.py) and
serves every live call; each WebSocket connection is one EngineSession. Paths: /v1/realtime
and /realtime (what the official SDK appends to its base URL); GET /healthz answers 200 once
the models are loaded, with the model hub's counters (VAD batches, ASR and TTS calls and busy
time, TTS cache hits, prerendering progress); GET /metrics serves the same figures, live sessions
and turn-latency histograms in the Prometheus text format (agent/metrics.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import http
import json
import logging
import urllib.parse
from collections.abc import Callable
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from agent import realtime as rt
from agent.backchannel import Overlap
from agent.engine import Dialogue, EngineConfig, EngineSession, Models, Send, Turns
from agent.metrics import CONTENT_TYPE, EngineMetrics
from agent.remote import WS_LOG
from agent.resample import LIVE_DOWN, Resampler
from agent.transcription import TranscriptionSession

log = logging.getLogger(__name__)

PATHS = ("/v1/realtime", "/realtime")
LOOKUP_PATH = "/v1/lookup"


class _Rates:
    """A connection's audio formats and the streams that convert to and from the engine's
    16 kHz (filter state carried across chunks; started anew when a format changes)."""

    def __init__(self) -> None:
        self.input = self.output = rt.DEFAULT_RATE
        self.inbound = Resampler(self.input, 16_000, quality=LIVE_DOWN)  # the caller, live
        self.outbound = Resampler(16_000, self.output)
        self._item = ""  # the utterance going through `outbound`

    def outbound_audio(self, item_id: str, pcm: bytes) -> bytes:
        if item_id != self._item:  # a new utterance: nothing of a cut one carries into it
            self.outbound.reset()
            self._item = item_id
        return self.outbound.process(pcm)

    def outbound_end(self, item_id: str) -> bytes:
        if item_id != self._item:
            return b""
        self._item = ""
        return self.outbound.flush()

    def update(self, input_rate: int | None, output_rate: int | None) -> None:
        if input_rate and input_rate != self.input:
            self.input = input_rate
            self.inbound = Resampler(input_rate, 16_000, quality=LIVE_DOWN)
        if output_rate and output_rate != self.output:
            self.output, self.outbound = output_rate, Resampler(16_000, output_rate)


class EngineServer:
    def __init__(
        self,
        *,
        models: Models,
        dialogue_factory: Callable[[dict[str, Any]], Dialogue],
        turns_factory: Callable[[], Turns],
        judge_overlap: Callable[[str, int], Overlap],
        config: EngineConfig | None = None,
        token: str = "",
        lookup: Callable[[str, str], dict[str, Any]] | None = None,
    ) -> None:
        self.models = models
        self._token = token
        self._lookup = lookup  # (knowledge base, question) -> the answer, for hosted models
        self.dialogue_factory = dialogue_factory
        self.turns_factory = turns_factory
        self.judge_overlap = judge_overlap
        self.config = config or EngineConfig()
        self.sessions = 0
        self.metrics = EngineMetrics(
            sessions=lambda: self.sessions, stats=lambda: getattr(self.models, "stats", None)
        )

    async def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        if path == "/healthz":
            health: dict[str, Any] = {"status": "ok", "sessions": self.sessions}
            device = getattr(self.models, "device", None)
            if isinstance(device, str):
                health["device"] = device
            stats = getattr(self.models, "stats", None)
            if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
                health["models"] = dataclasses.asdict(stats)
            return connection.respond(http.HTTPStatus.OK, json.dumps(health))
        if path == "/metrics":
            response = connection.respond(http.HTTPStatus.OK, self.metrics.exposition())
            del response.headers["Content-Type"]  # Headers is a multi-dict: replace, not add
            response.headers["Content-Type"] = CONTENT_TYPE
            return response
        if path not in (*PATHS, LOOKUP_PATH):
            return connection.respond(http.HTTPStatus.NOT_FOUND, "use /v1/realtime\n")
        if self._token and not _bearer_matches(request.headers.get("Authorization"), self._token):
            log.warning("session refused: wrong or missing token", extra={"path": path})
            return connection.respond(
                http.HTTPStatus.UNAUTHORIZED,
                "this engine needs its token: send Authorization: Bearer <engine.token>\n",
            )
        if path == LOOKUP_PATH:
            return await self._answer_lookup(connection, query)
        return None

    async def _answer_lookup(self, connection: ServerConnection, query: str) -> Response:
        """GET /v1/lookup?kb=NAME&q=QUESTION: the knowledge base's answer, as JSON."""
        asked = dict(urllib.parse.parse_qsl(query))
        question = asked.get("q", "").strip()[:500]
        if self._lookup is None or not question:
            return connection.respond(http.HTTPStatus.BAD_REQUEST, "ask with ?kb=NAME&q=QUESTION\n")
        found = await asyncio.to_thread(self._lookup, asked.get("kb", "sample"), question)
        response = connection.respond(http.HTTPStatus.OK, json.dumps(found))
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        return response

    async def serve(self, host: str, port: int, stop: asyncio.Event) -> None:
        async with serve(
            self._connection,
            host,
            port,
            process_request=self._http,
            max_size=2**22,
            logger=WS_LOG,  # its DEBUG lines would show the clients' tokens
        ) as server:
            log.info("engine server listening", extra={"host": host, "port": port})
            await stop.wait()
            server.close()

    async def _connection(self, ws: ServerConnection) -> None:
        rates = _Rates()
        session_id = rt.new_id("sess")
        lock = asyncio.Lock()

        async def send(kind: str, fields: dict[str, Any]) -> None:
            self.metrics.observe(kind, fields)
            events: list[tuple[str, dict[str, Any]]] = [(kind, fields)]
            if kind == "response.output_audio.delta" and rates.output != 16_000:
                pcm = rates.outbound_audio(str(fields["item_id"]), rt.audio_bytes(fields["delta"]))
                events = [(kind, {**fields, "delta": rt.audio_b64(pcm)})] if pcm else []
            elif kind == "response.output_audio.done" and rates.output != 16_000:
                tail = rates.outbound_end(str(fields["item_id"]))
                if tail:  # what the filter still held ends the utterance
                    ids: dict[str, Any] = {
                        k: fields[k] for k in ("response_id", "item_id") if k in fields
                    }
                    delta: dict[str, Any] = {
                        **ids,
                        "output_index": 0,
                        "content_index": 0,
                        "delta": rt.audio_b64(tail),
                    }
                    events.insert(0, ("response.output_audio.delta", delta))
            async with lock:
                try:
                    for name, body in events:
                        await ws.send(rt.server_event(name, **body))
                except ConnectionClosed:
                    pass

        session: EngineSession | TranscriptionSession | None = None
        self.sessions += 1
        try:
            await ws.send(
                rt.server_event(
                    "session.created",
                    session=rt.session_object(session_id, rates.input, rates.output, ""),
                )
            )
            async for message in ws:
                try:
                    event = rt.parse_client_event(message)
                except rt.ProtocolError as error:
                    await ws.send(rt.error_event(str(error), code=error.code, param=error.param))
                    continue
                if event is None:
                    continue
                if isinstance(event, rt.SessionUpdate):
                    rates.update(event.input_rate, event.output_rate)
                    await ws.send(
                        rt.server_event(
                            "session.updated",
                            session=rt.session_object(
                                session_id, rates.input, rates.output, event.instructions or ""
                            ),
                        )
                    )
                    if session is None and event.raw.get("type") == "transcription":
                        session = TranscriptionSession(models=self.models, send=send)
                    elif session is None:
                        session = await self._open_session(event.raw, send)
                    continue
                if session is None:
                    # A client that never sends session.update gets the defaults.
                    session = await self._open_session({}, send)
                if isinstance(session, TranscriptionSession):
                    await self._transcribe(ws, session, event, rates)
                    continue
                await self._dispatch(session, event, rates)
        except ConnectionClosed:
            pass
        finally:
            self.sessions -= 1
            if session is not None:
                await session.close()

    async def _open_session(self, settings: dict[str, Any], send: Send) -> EngineSession:
        session = EngineSession(
            models=self.models,
            dialogue=self.dialogue_factory(settings),
            turns=self.turns_factory(),
            send=send,
            judge_overlap=self.judge_overlap,
            config=self._config_for(settings),
        )
        await session.start()
        return session

    def _config_for(self, session: dict[str, Any]) -> EngineConfig:
        """Per-line options arrive as session metadata (strings, as in the Realtime API)."""
        metadata = session.get("metadata") or {}
        if not isinstance(metadata, dict):
            metadata = {}
        wants = str(metadata.get("agent_backchannels", "")).lower() == "true"
        # A call moved here from another engine is under way: no greeting.
        greet = self.config.greet and str(metadata.get("greet", "")).lower() != "false"
        # A hosted model's turns decided here (agent/turn_source.py): nothing is said.
        answers = str(metadata.get("answers", "")).lower() != "false"
        return dataclasses.replace(
            self.config,
            agent_backchannels=wants and answers,
            greet=greet and answers,
            answers=answers,
            tools=_declared_tools(session),
        )

    async def _transcribe(
        self,
        ws: ServerConnection,
        session: TranscriptionSession,
        event: rt.ClientEvent,
        rates: _Rates,
    ) -> None:
        """A transcription session takes audio and nothing that would make it speak."""
        if isinstance(event, rt.AudioAppend):
            pcm = rates.inbound.process(event.pcm)
            await session.audio(np.frombuffer(pcm, dtype="<i2"))
        elif not isinstance(event, rt.AudioCommit | rt.AudioClear):
            await ws.send(
                rt.error_event(
                    f"{type(event).__name__} is not accepted in a transcription session",
                    code="invalid_request_for_session_type",
                )
            )

    async def _dispatch(self, session: EngineSession, event: rt.ClientEvent, rates: _Rates) -> None:
        if isinstance(event, rt.AudioAppend):
            pcm = rates.inbound.process(event.pcm)
            await session.audio(np.frombuffer(pcm, dtype="<i2"))
        elif isinstance(event, rt.Dtmf):
            await session.dtmf(event.digit)
        elif isinstance(event, rt.Instruction):
            await session.instruction(event.text)
        elif isinstance(event, rt.Resume):
            await session.resume(event.note)
        elif isinstance(event, rt.ItemTruncate):
            await session.truncate(event.item_id, event.audio_end_ms)
        elif isinstance(event, rt.ResponseCancel):
            await session.cancel()
        elif isinstance(event, rt.ItemCreate) and event.role == "user" and event.text:
            await session.add_user_text(event.text)
        elif isinstance(event, rt.ResponseCreate):
            await session.create_response()


def _bearer_matches(header: str | None, token: str) -> bool:
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def _declared_tools(session: dict[str, Any]) -> frozenset[str]:
    """The names of the function tools a client declared in its session."""
    tools = session.get("tools")
    if not isinstance(tools, list):
        return frozenset()
    return frozenset(
        str(tool["name"])
        for tool in tools
        if isinstance(tool, dict) and tool.get("type") == "function" and "name" in tool
    )
