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
import http
import json
import logging
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
from agent.remote import resample_pcm16

log = logging.getLogger(__name__)

PATHS = ("/v1/realtime", "/realtime")


class EngineServer:
    def __init__(
        self,
        *,
        models: Models,
        dialogue_factory: Callable[[dict[str, Any]], Dialogue],
        turns_factory: Callable[[], Turns],
        judge_overlap: Callable[[str, int], Overlap],
        config: EngineConfig | None = None,
    ) -> None:
        self.models = models
        self.dialogue_factory = dialogue_factory
        self.turns_factory = turns_factory
        self.judge_overlap = judge_overlap
        self.config = config or EngineConfig()
        self.sessions = 0
        self.metrics = EngineMetrics(
            sessions=lambda: self.sessions, stats=lambda: getattr(self.models, "stats", None)
        )

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            health: dict[str, Any] = {"status": "ok", "sessions": self.sessions}
            stats = getattr(self.models, "stats", None)
            if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
                health["models"] = dataclasses.asdict(stats)
            return connection.respond(http.HTTPStatus.OK, json.dumps(health))
        if path == "/metrics":
            response = connection.respond(http.HTTPStatus.OK, self.metrics.exposition())
            del response.headers["Content-Type"]  # Headers is a multi-dict: replace, not add
            response.headers["Content-Type"] = CONTENT_TYPE
            return response
        if path not in PATHS:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "use /v1/realtime\n")
        return None

    async def serve(self, host: str, port: int, stop: asyncio.Event) -> None:
        async with serve(
            self._connection, host, port, process_request=self._http, max_size=2**22
        ) as server:
            log.info("engine server listening", extra={"host": host, "port": port})
            await stop.wait()
            server.close()

    async def _connection(self, ws: ServerConnection) -> None:
        input_rate = output_rate = rt.DEFAULT_RATE
        session_id = rt.new_id("sess")
        lock = asyncio.Lock()

        async def send(kind: str, fields: dict[str, Any]) -> None:
            self.metrics.observe(kind, fields)
            if kind == "response.output_audio.delta" and output_rate != 16_000:
                pcm = rt.audio_bytes(fields["delta"])
                fields = {**fields, "delta": rt.audio_b64(resample_pcm16(pcm, 16_000, output_rate))}
            async with lock:
                try:
                    await ws.send(rt.server_event(kind, **fields))
                except ConnectionClosed:
                    pass

        session: EngineSession | None = None
        self.sessions += 1
        try:
            await ws.send(
                rt.server_event(
                    "session.created",
                    session=rt.session_object(session_id, input_rate, output_rate, ""),
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
                    input_rate = event.input_rate or input_rate
                    output_rate = event.output_rate or output_rate
                    await ws.send(
                        rt.server_event(
                            "session.updated",
                            session=rt.session_object(
                                session_id, input_rate, output_rate, event.instructions or ""
                            ),
                        )
                    )
                    if session is None:
                        session = await self._open_session(event.raw, send)
                    continue
                if session is None:
                    # A client that never sends session.update gets the defaults.
                    session = await self._open_session({}, send)
                await self._dispatch(session, event, input_rate)
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
            return self.config
        wants = str(metadata.get("agent_backchannels", "")).lower() == "true"
        return dataclasses.replace(self.config, agent_backchannels=wants)

    async def _dispatch(
        self, session: EngineSession, event: rt.ClientEvent, input_rate: int
    ) -> None:
        if isinstance(event, rt.AudioAppend):
            pcm = resample_pcm16(event.pcm, input_rate, 16_000)
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
            await session.user_text(event.text)
