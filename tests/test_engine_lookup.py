"""The lookup tool of a hosted model, answered by the engine server from the line's knowledge
base: a question it has an answer to, one it has not, a wrong token, an engine that is down."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from agent.app import Knowledge
from agent.server import EngineServer
from agent.tools import Tools, engine_lookup
from tests.support import free_port_block, port_open

TOKEN = "engine-token-for-lookups"


@pytest.fixture(scope="module")
def knowledge() -> Iterator[Knowledge]:
    yield Knowledge({})  # the sample knowledge base, with the real embedder


def test_a_hosted_models_lookup_is_answered_from_the_knowledge_base(knowledge: Knowledge) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        port = free_port_block(1)
        server = EngineServer(
            models=object(),  # type: ignore[arg-type]
            dialogue_factory=lambda _: None,  # type: ignore[arg-type,return-value]
            turns_factory=lambda: None,  # type: ignore[arg-type,return-value]
            judge_overlap=lambda *_: None,  # type: ignore[arg-type]
            token=TOKEN,
            lookup=knowledge.lookup,
        )
        serving = asyncio.create_task(server.serve("127.0.0.1", port, stop))
        url = f"ws://127.0.0.1:{port}/v1/realtime"
        try:
            await port_open(port)
            tools = Tools(lookup=engine_lookup(url, TOKEN, "sample"))
            assert "lookup" in [d["name"] for d in tools.definitions()]
            found = await tools.call("lookup", json.dumps({"question": "Do you ship overseas?"}))
            answer = json.loads(found.output)
            assert answer["found"] is True and "ship" in answer["answer"].lower(), answer
            assert found.respond is True  # the model says what it found
            nothing = await tools.call("lookup", json.dumps({"question": "What is the moon?"}))
            assert json.loads(nothing.output) == {"found": False}
            wrong = Tools(lookup=engine_lookup(url, "not-the-token", "sample"))
            refused = json.loads((await wrong.call("lookup", '{"question": "hours?"}')).output)
            assert "could not be reached" in refused["error"]
        finally:
            stop.set()
            await serving
        # The engine gone: the model is told, the call goes on.
        gone = Tools(lookup=engine_lookup(url, TOKEN, "sample"))
        down = json.loads((await gone.call("lookup", '{"question": "hours?"}')).output)
        assert "could not be reached" in down["error"]

    asyncio.run(main())


def test_an_unknown_knowledge_base_is_said_so(knowledge: Knowledge) -> None:
    assert knowledge.lookup("acme", "hours?") == {
        "found": False,
        "error": "no knowledge base named 'acme'",
    }
