"""A supervisor's whisper and hand-back in the embedded agent: the dialogue, then the engine
session driven offline with stand-in models (no sockets, no model files, well under a second)."""

from __future__ import annotations

import asyncio
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.backchannel import judge_overlap
from agent.engine import VAD_WINDOW, EngineConfig, EngineSession
from agent.knowledge import (
    DEFAULT_RESUME,
    Entry,
    KnowledgeBase,
    KnowledgeIndex,
    Vectors,
    load_knowledge_base,
)
from agent.responder import Conversation, ReplyKind, Source
from agent.turns import HesitationAwareTurns

SHIPPING = "Shipping is free on orders over fifty dollars."
HOURS = "We're open nine to five, Monday to Friday."
DISCOUNT = "I can offer you a 10 percent discount."
NOTE = "Refund approved; it will arrive in 3 days."
BACK = DEFAULT_RESUME


class WordsEmbedder:
    """Bag-of-words vectors: texts that share words are similar, others are not."""

    def embed(self, texts: list[str]) -> Vectors:
        out = np.zeros((len(texts), 512), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                out[row, zlib.crc32(word.encode()) % 512] += 1.0
            norm = float(np.linalg.norm(out[row]))
            if norm:
                out[row] /= norm
        return out


KB = KnowledgeBase(
    name="Test line",
    greeting="Hello, how can I help?",
    entries=(
        Entry("shipping", "How much does shipping cost?", SHIPPING, ("shipping price",), ()),
        Entry("hours", "What are your opening hours?", HOURS, ("opening times",), ()),
    ),
    procedures=(),
)
EMBEDDER = WordsEmbedder()
INDEX = KnowledgeIndex(KB, EMBEDDER)


def conversation(kb: KnowledgeBase = KB) -> Conversation:
    index = INDEX if kb is KB else KnowledgeIndex(kb, EMBEDDER)
    return Conversation(kb, index, EMBEDDER)


# --- the dialogue --------------------------------------------------------------------------


def test_a_whisper_goes_into_the_next_answer_once() -> None:
    talk = conversation()
    talk.instruct("Offer the caller a 10 percent discount")
    reply = talk.respond("How much does shipping cost?")
    assert reply.text == f"{SHIPPING} {DISCOUNT}"
    assert reply.whisper == DISCOUNT
    again = talk.respond("How much does shipping cost?")
    assert again.text == SHIPPING and again.whisper == ""


def test_a_whisper_comes_before_a_question_so_the_caller_is_left_with_it() -> None:
    talk = conversation()
    talk.instruct("Tell them the fee is waived")
    reply = talk.respond("purple elephant tuesday")
    assert reply.kind is ReplyKind.CLARIFY
    assert reply.text.startswith("The fee is waived. ") and reply.text.endswith("?")


def test_a_whisper_is_history_from_the_supervisor_not_the_caller() -> None:
    talk = conversation()
    talk.instruct("Offer the caller a 10 percent discount")
    talk.respond("How much does shipping cost?")
    assert [(item.source, item.text) for item in talk.history] == [
        (Source.SUPERVISOR_INSTRUCTION, "Offer the caller a 10 percent discount"),
        (Source.CALLER, "How much does shipping cost?"),
        (Source.AGENT, f"{SHIPPING} {DISCOUNT}"),
    ]


def test_a_fork_carries_a_held_whisper_without_spending_the_originals() -> None:
    talk = conversation()
    talk.instruct("Offer the caller a 10 percent discount")
    assert DISCOUNT in talk.fork().respond("How much does shipping cost?").text
    assert DISCOUNT in talk.respond("How much does shipping cost?").text


def test_a_reprompt_does_not_spend_a_whisper() -> None:
    talk = conversation()
    talk.instruct("Offer the caller a 10 percent discount")
    assert DISCOUNT not in talk.silence().text
    assert DISCOUNT in talk.respond("What are your opening hours?").text


def test_a_hand_back_says_the_agent_is_back_then_the_note() -> None:
    talk = conversation()
    reply = talk.resume("Refund approved; it will arrive in 3 days")
    assert reply.kind is ReplyKind.RESUME
    assert reply.text == f"{BACK} {NOTE}"
    assert (Source.SUPERVISOR_NOTE, NOTE) in [(i.source, i.text) for i in talk.history]


def test_a_hand_back_without_a_note_only_says_the_agent_is_back() -> None:
    assert conversation().resume(None).text == BACK
    assert conversation().resume("  ").text == BACK


def test_a_question_about_the_note_is_answered_from_it() -> None:
    talk = conversation()
    talk.resume("Refund approved; it will arrive in 3 days")
    reply = talk.respond("When will my refund arrive?")
    assert reply.kind is ReplyKind.NOTE and reply.text == NOTE
    # The knowledge base still answers what it knows better.
    assert talk.respond("How much does shipping cost?").text == SHIPPING
    # Unrelated words are not answered with the note.
    assert talk.respond("purple elephant tuesday").kind is ReplyKind.CLARIFY


def test_the_line_may_word_its_own_i_am_back(tmp_path: Path) -> None:
    (tmp_path / "line.yaml").write_text(
        "greeting: Hello.\nresume: Sorry for the wait, I'm back.\n"
        "entries:\n  - id: hours\n    question: What are your hours?\n    answer: Nine to five.\n",
        encoding="utf-8",
    )
    kb = load_knowledge_base(tmp_path)
    assert kb.resume == "Sorry for the wait, I'm back."
    assert conversation(kb).resume("Refund approved").text == (
        "Sorry for the wait, I'm back. Refund approved."
    )


# --- the engine session, offline ------------------------------------------------------------


class StandInModels:
    """Loud audio is speech; the caller said `heard`; each character is 10 ms of audio."""

    def __init__(self) -> None:
        self.heard = ""

    async def vad(self, stream_id: int, window: np.ndarray) -> float:
        return 1.0 if np.abs(window).max(initial=0) > 1000 else 0.0

    def open_vad_stream(self) -> int:
        return 0

    def close_vad_stream(self, stream_id: int) -> None:
        return None

    async def transcribe(self, pcm: np.ndarray, *, urgent: bool = False) -> str:
        return self.heard

    async def synthesize(self, sentence: str) -> np.ndarray:
        return np.full(len(sentence) * 160, 100, dtype=np.int16)

    def sentences(self, text: str) -> list[str]:
        return [s for s in re.split(r"(?<=[.?!])\s+", text) if s]


class Engine:
    """An EngineSession over the stand-in models; records what it sends."""

    def __init__(self) -> None:
        self.models = StandInModels()
        self.sent: list[tuple[str, dict[str, Any]]] = []

        async def send(kind: str, fields: dict[str, Any]) -> None:
            self.sent.append((kind, fields))

        self.session = EngineSession(
            models=self.models,
            dialogue=conversation(),
            turns=HesitationAwareTurns(),
            send=send,
            judge_overlap=judge_overlap,
            config=EngineConfig(greet=False),
        )

    async def feed(self, ms: int, *, loud: bool = False) -> None:
        window = np.full(VAD_WINDOW, 8000 if loud else 0, dtype=np.int16)
        for _ in range(ms * 16 // VAD_WINDOW):
            await self.session.audio(window)
            await asyncio.sleep(0.001)  # lets the ASR and responder tasks run, as on a line

    async def say(self, words: str) -> None:
        """The caller says `words`, then stays quiet until the agent has answered."""
        self.models.heard = words
        answered = len(self.said())
        await self.feed(600, loud=True)
        for _ in range(100):
            if len(self.said()) > answered:
                return
            await self.feed(32)
        raise AssertionError(f"no answer; sent {[kind for kind, _ in self.sent]}")

    def said(self) -> list[str]:
        return [
            f["transcript"] for k, f in self.sent if k == "response.output_audio_transcript.done"
        ]

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.sent]


def test_a_whisper_changes_the_next_spoken_answer_once() -> None:
    async def scenario() -> None:
        engine = Engine()
        await engine.session.instruction("Offer the caller a 10 percent discount")
        await engine.say("How much does shipping cost?")
        await engine.say("How much does shipping cost?")
        assert engine.said() == [f"{SHIPPING} {DISCOUNT}", SHIPPING]
        applied = [f for k, f in engine.sent if k == "parley.instruction_applied"]
        assert [f["text"] for f in applied] == [DISCOUNT]
        await engine.session.close()

    asyncio.run(scenario())


def test_a_whisper_while_idle_does_not_make_the_agent_speak() -> None:
    async def scenario() -> None:
        engine = Engine()
        await engine.feed(500)
        await engine.session.instruction("Tell them the fee is waived")
        await engine.feed(3000)
        assert "response.created" not in engine.kinds()
        await engine.say("What are your opening hours?")
        assert engine.said() == [f"{HOURS} The fee is waived."]
        await engine.session.close()

    asyncio.run(scenario())


def test_a_whisper_after_the_reply_was_prepared_still_reaches_it() -> None:
    async def scenario() -> None:
        engine = Engine()
        engine.models.heard = "How much does shipping cost?"
        await engine.feed(600, loud=True)
        await engine.feed(96)  # past the look-ahead: the reply is prepared on a fork
        prepared = engine.session._prepared
        assert prepared is not None
        await prepared.task
        await engine.session.instruction("Offer the caller a 10 percent discount")
        for _ in range(100):
            if engine.said():
                break
            await engine.feed(32)
        assert engine.said() == [f"{SHIPPING} {DISCOUNT}"]
        await engine.session.close()

    asyncio.run(scenario())


def test_a_hand_back_is_spoken_at_once_and_the_note_answers_later() -> None:
    async def scenario() -> None:
        engine = Engine()
        await engine.session.resume("Refund approved; it will arrive in 3 days")
        # At once: no caller audio was needed for the agent to speak up.
        assert engine.session.t_ms == 0
        assert engine.said() == [f"{BACK} {NOTE}"]
        assert engine.kinds().index("parley.agent_resumed") < engine.kinds().index(
            "response.created"
        )
        await engine.say("When will my refund arrive?")
        assert engine.said()[-1] == NOTE
        await engine.session.close()

    asyncio.run(scenario())


def test_a_hand_back_without_a_note_says_only_that_the_agent_is_back() -> None:
    async def scenario() -> None:
        engine = Engine()
        await engine.session.resume(None)
        assert engine.said() == [BACK]
        assert ("parley.agent_resumed", {"note": False}) in engine.sent
        await engine.session.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("text", ["", "   "])
def test_a_blank_whisper_is_ignored(text: str) -> None:
    async def scenario() -> None:
        engine = Engine()
        await engine.session.instruction(text)
        await engine.say("What are your opening hours?")
        assert engine.said() == [HOURS]
        await engine.session.close()

    asyncio.run(scenario())
