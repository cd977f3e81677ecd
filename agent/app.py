"""Assembles the embedded engine: models, knowledge bases, responder, turn-taking, server."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.backchannel import is_backchannel
from agent.engine import Dialogue, EngineConfig, Turns
from agent.hub import ModelHub
from agent.knowledge import SAMPLE_KB, KnowledgeIndex, MiniLmEmbedder, load_knowledge_base
from agent.responder import Conversation
from agent.server import EngineServer
from agent.turns import HesitationAwareTurns

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineOptions:
    host: str = "127.0.0.1"
    port: int = 8765
    knowledge_bases: dict[str, Path] = field(default_factory=dict)
    vad_threads: int = 1
    asr_threads: int = 2
    batching: bool = True


class Knowledge:
    """Every configured knowledge base, indexed once with one shared embedder."""

    def __init__(self, folders: dict[str, Path]) -> None:
        started = time.perf_counter()
        # One thread: torch's pool is process-wide, and two threads were slower under load.
        self.embedder = MiniLmEmbedder(threads=1)
        self.bases: dict[str, tuple[Any, KnowledgeIndex]] = {}
        for name, folder in {"sample": SAMPLE_KB, **folders}.items():
            kb = load_knowledge_base(folder)
            self.bases[name] = (kb, KnowledgeIndex(kb, self.embedder))
        log.info(
            "knowledge bases indexed",
            extra={"bases": len(self.bases), "seconds": round(time.perf_counter() - started, 2)},
        )

    def conversation(self, session: dict[str, Any]) -> Dialogue:
        metadata = session.get("metadata") or {}
        name = metadata.get("knowledge_base", "sample") if isinstance(metadata, dict) else "sample"
        kb, index = self.bases.get(str(name), self.bases["sample"])
        return Conversation(kb, index, self.embedder)


def build_server(options: EngineOptions) -> tuple[EngineServer, ModelHub]:
    hub = ModelHub.load(
        vad_threads=options.vad_threads,
        asr_threads=options.asr_threads,
        batching=options.batching,
    )
    knowledge = Knowledge(options.knowledge_bases)
    server = EngineServer(
        models=hub,
        dialogue_factory=knowledge.conversation,
        turns_factory=_turns,
        is_backchannel=is_backchannel,
        config=EngineConfig(),
    )
    return server, hub


def _turns() -> Turns:
    return HesitationAwareTurns()


def serve(options: EngineOptions) -> None:
    """Runs the engine server in this process until SIGINT or SIGTERM."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        server, hub = await asyncio.to_thread(build_server, options)
        try:
            await server.serve(options.host, options.port, stop)
        finally:
            hub.close()

    asyncio.run(main())
