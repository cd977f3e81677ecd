"""Google's side of the Gemini Live API (`BidiGenerateContent` over WebSocket), for the
adapter's tests.

Exists only because the Gemini API cannot be reached from here. Every message the adapter sends
must validate against the `google-genai` package's own Live types (which refuse unknown keys):
`LiveClientMessage` for realtime input, client content and tool responses; for `setup`,
`LiveClientSetup` with `realtimeInputConfig` checked as the package's `RealtimeInputConfig`
(the package's converters put it beside the other setup fields on the wire; its
`LiveClientSetup` type lacks the field). Every message a test makes it send is validated as a
`LiveServerMessage` first.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from google.genai import types
from websockets.asyncio.server import ServerConnection, serve


def client_message(raw: str | bytes) -> dict[str, Any]:
    """A client message as sent, after checking it against the published types."""
    message = json.loads(raw)
    if "setup" in message:
        setup = dict(message["setup"])
        realtime = setup.pop("realtimeInputConfig", None)
        if realtime is not None:
            types.RealtimeInputConfig.model_validate(realtime)
        types.LiveClientSetup.model_validate(setup)
        if set(message) != {"setup"}:
            raise ValueError(f"setup with more beside it: {sorted(message)}")
    else:
        types.LiveClientMessage.model_validate(message)
    return dict(message)


def server_message(message: dict[str, Any]) -> str:
    types.LiveServerMessage.model_validate(message)
    return json.dumps(message)


@dataclass
class Connection:
    headers: dict[str, str]
    ws: ServerConnection
    setup: dict[str, Any] = field(default_factory=dict)
    received: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    invalid: list[str] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def receive(self, key: str, timeout_s: float = 5.0) -> dict[str, Any]:
        """The next client message carrying `key` (realtimeInput, clientContent…); others
        are dropped."""
        async with asyncio.timeout(timeout_s):
            while True:
                message = await self.received.get()
                if key in message:
                    return dict(message[key])

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(server_message(message))

    async def audio(self, pcm24: bytes) -> None:
        data = base64.b64encode(pcm24).decode()
        part = {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": data}}
        await self.send({"serverContent": {"modelTurn": {"parts": [part]}}})


class GeminiLiveServer:
    def __init__(self) -> None:
        self.connections: asyncio.Queue[Connection] = asyncio.Queue()
        self.port = 0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[GeminiLiveServer]:
        async with serve(self._serve, "127.0.0.1", 0, max_size=2**24) as server:
            self.port = server.sockets[0].getsockname()[1]
            yield self

    @property
    def url(self) -> str:
        return (
            f"ws://127.0.0.1:{self.port}/ws/"
            "google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
        )

    async def _serve(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        connection = Connection({k.lower(): v for k, v in request.headers.raw_items()}, ws)
        try:
            first = client_message(await ws.recv())
            connection.setup = first["setup"]
        except Exception as error:
            connection.invalid.append(f"first message: {error}")
            await ws.close(1007, "setup expected")
            return
        await ws.send(server_message({"setupComplete": {}}))
        self.connections.put_nowait(connection)
        try:
            async for raw in ws:
                try:
                    connection.received.put_nowait(client_message(raw))
                except Exception as error:  # the adapter broke the protocol: the test fails
                    connection.invalid.append(f"{str(raw)[:200]}: {error}")
        except Exception:
            pass
        finally:
            connection.closed.set()

    async def next_connection(self, timeout_s: float = 5.0) -> Connection:
        async with asyncio.timeout(timeout_s):
            return await self.connections.get()
