"""Assembles the embedded engine: models, knowledge bases, responder, turn-taking, server."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.backchannel import judge_overlap
from agent.device import resolve_device
from agent.engine import Dialogue, EngineConfig, Turns
from agent.hub import ModelHub
from agent.knowledge import (
    SAMPLE_KB,
    Entry,
    KnowledgeBase,
    KnowledgeIndex,
    MiniLmEmbedder,
    load_knowledge_base,
)
from agent.responder import DEFAULT_ANSWER_THRESHOLD, Conversation
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
    # Synthesize the knowledge bases' fixed replies in the background at start-up, so their
    # first audio is ready the moment a turn ends.
    prerender: bool = True
    # What a client must send (Authorization: Bearer …) to open a session; "" for none (an
    # engine on loopback only: settings refuse a wider one without a token).
    token: str = ""
    # Where Whisper and the embeddings run: auto (a CUDA GPU if torch sees one), cpu, cuda[:N].
    device: str = "auto"


class Knowledge:
    """Every configured knowledge base, indexed once with one shared embedder."""

    def __init__(self, folders: dict[str, Path], *, device: str = "cpu") -> None:
        started = time.perf_counter()
        # One thread: torch's pool is process-wide, and two threads were slower under load.
        self.embedder = MiniLmEmbedder(threads=1, device=device)
        self.bases: dict[str, tuple[Any, KnowledgeIndex]] = {}
        for name, folder in {"sample": SAMPLE_KB, **folders}.items():
            kb = load_knowledge_base(folder)
            self.bases[name] = (kb, KnowledgeIndex(kb, self.embedder))
        log.info(
            "knowledge bases indexed",
            extra={"bases": len(self.bases), "seconds": round(time.perf_counter() - started, 2)},
        )

    def fixed_replies(self) -> list[str]:
        """Every configured knowledge base's fixed replies, each once."""
        texts = [text for kb, _ in self.bases.values() for text in fixed_replies(kb)]
        return list(dict.fromkeys(texts))

    def lookup(self, name: str, question: str) -> dict[str, Any]:
        """The knowledge base's answer to a question (the lookup tool of a hosted model):
        the best entry if it scores as the responder would answer it."""
        if name not in self.bases:
            return {"found": False, "error": f"no knowledge base named {name!r}"}
        _, index = self.bases[name]
        for item, score in index.search(self.embedder.embed([question])[0]):
            if isinstance(item, Entry) and score >= DEFAULT_ANSWER_THRESHOLD:
                return {"found": True, "answer": item.answer, "about": item.question}
            if score < DEFAULT_ANSWER_THRESHOLD:
                break
        return {"found": False}

    def conversation(self, session: dict[str, Any]) -> Dialogue:
        metadata = session.get("metadata") or {}
        name = metadata.get("knowledge_base", "sample") if isinstance(metadata, dict) else "sample"
        kb, index = self.bases.get(str(name), self.bases["sample"])
        return Conversation(kb, index, self.embedder)


def fixed_replies(kb: KnowledgeBase) -> list[str]:
    """Replies whose words never change: worth synthesizing before the first call."""
    texts = [kb.greeting, kb.handoff, kb.goodbye, kb.fallback, kb.resume]
    texts += [entry.answer for entry in kb.entries]
    texts += [slot.prompt for procedure in kb.procedures for slot in procedure.slots]
    return [text for text in texts if text.strip()]


def build_server(options: EngineOptions) -> tuple[EngineServer, ModelHub, Knowledge]:
    device = resolve_device(options.device)
    log.info("engine models on %s", device)
    hub = ModelHub.load(
        vad_threads=options.vad_threads,
        asr_threads=options.asr_threads,
        batching=options.batching,
        device=device,
    )
    knowledge = Knowledge(options.knowledge_bases, device=device)
    server = EngineServer(
        models=hub,
        dialogue_factory=knowledge.conversation,
        turns_factory=_turns,
        judge_overlap=judge_overlap,
        config=EngineConfig(),
        token=options.token,
        lookup=knowledge.lookup,
    )
    return server, hub, knowledge


def _turns() -> Turns:
    return HesitationAwareTurns()


def serve(options: EngineOptions) -> None:
    """Runs the engine server in this process until SIGINT or SIGTERM."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        server, hub, knowledge = await asyncio.to_thread(build_server, options)
        prerender = None
        if options.prerender:
            prerender = asyncio.create_task(hub.prerender(knowledge.fixed_replies()))
        try:
            await server.serve(options.host, options.port, stop)
        finally:
            if prerender is not None:
                prerender.cancel()
            hub.close()

    asyncio.run(main())
