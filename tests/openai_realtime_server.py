"""OpenAI's side of the Realtime API (GA protocol, WebSocket), for the adapter's tests.

Exists only because api.openai.com cannot be reached from here. It speaks the published
protocol and nothing more: every client event it receives must validate against the `openai`
package's own typed client events (the TypedDict params, unknown keys refused), and every server
event a test makes it send is validated against the package's server event models first. A test
drives it step by step: take the next connection, read what the adapter sent, answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent
from openai.types.realtime import RealtimeClientEventParam, RealtimeServerEvent
from pydantic import ConfigDict, TypeAdapter
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

CLIENT_EVENTS: TypeAdapter[Any] = TypeAdapter(
    RealtimeClientEventParam, config=ConfigDict(extra="forbid")
)
SERVER_EVENTS: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
# The beta protocol's events, for the older names a server may still send
# (response.audio.delta for response.output_audio.delta…).
BETA_SERVER_EVENTS: TypeAdapter[Any] = TypeAdapter(BetaServerEvent)
_ids = itertools.count(1)


def event_id() -> str:
    return f"event_{next(_ids)}"


def client_event(message: str | bytes) -> dict[str, Any]:
    """A client event as sent, after checking it against the published types."""
    event = json.loads(message)
    CLIENT_EVENTS.validate_python(event)
    return dict(event)


def server_event(event: dict[str, Any], *, beta: bool = False) -> str:
    """A server event as the API sends it (with an event_id), checked against its type (the
    beta protocol's, for an event of the older names)."""
    event = {"event_id": event_id(), **event}
    (BETA_SERVER_EVENTS if beta else SERVER_EVENTS).validate_python(event)
    return json.dumps(event)


@dataclass
class Connection:
    headers: dict[str, str]
    path: str
    ws: ServerConnection
    received: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    invalid: list[str] = field(default_factory=list)  # client events that failed validation
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def receive(self, kind: str | None = None, timeout_s: float = 5.0) -> dict[str, Any]:
        """The next client event (of `kind`, skipping others, e.g. audio appends)."""
        async with asyncio.timeout(timeout_s):
            while True:
                event = await self.received.get()
                if kind is None or event["type"] == kind:
                    return event

    async def send(self, event: dict[str, Any], *, beta: bool = False) -> None:
        await self.ws.send(server_event(event, beta=beta))

    def drain(self, kind: str) -> list[dict[str, Any]]:
        """The `kind` events received so far (the rest stay queued)."""
        kept: list[dict[str, Any]] = []
        taken: list[dict[str, Any]] = []
        while not self.received.empty():
            event = self.received.get_nowait()
            (taken if event["type"] == kind else kept).append(event)
        for event in kept:
            self.received.put_nowait(event)
        return taken


class OpenAIRealtimeServer:
    """Accepts connections on /v1/realtime; `refuse_with` makes the handshake fail (401, 429)."""

    def __init__(self) -> None:
        self.connections: asyncio.Queue[Connection] = asyncio.Queue()
        self.refuse_with: int | None = None
        self.port = 0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[OpenAIRealtimeServer]:
        async with serve(self._serve, "127.0.0.1", 0, process_request=self._handshake) as server:
            self.port = server.sockets[0].getsockname()[1]
            yield self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    def _handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.refuse_with is not None:
            status = http.HTTPStatus(self.refuse_with)
            body = json.dumps({"error": {"type": "invalid_request_error", "code": status.phrase}})
            return connection.respond(status, body)
        return None

    async def _serve(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        connection = Connection(
            {k.lower(): v for k, v in request.headers.raw_items()}, request.path, ws
        )
        await ws.send(
            server_event(
                {
                    "type": "session.created",
                    "session": {
                        "type": "realtime",
                        "id": f"sess_{next(_ids)}",
                        "object": "realtime.session",
                    },
                }
            )
        )
        self.connections.put_nowait(connection)
        try:
            async for message in ws:
                try:
                    event = client_event(message)
                except Exception as error:  # the adapter broke the protocol: the test fails
                    connection.invalid.append(f"{str(message)[:200]}: {error}")
                    continue
                if event["type"] == "session.update":
                    await ws.send(
                        server_event({"type": "session.updated", "session": event["session"]})
                    )
                connection.received.put_nowait(event)
        except Exception:
            pass
        finally:
            connection.closed.set()

    async def next_connection(self, timeout_s: float = 5.0) -> Connection:
        async with asyncio.timeout(timeout_s):
            return await self.connections.get()
