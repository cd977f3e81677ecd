"""The tools every model on a Parley line may call, and what a call of each does.

A hosted model (GPT-realtime, Gemini Live) asks for a person, a lookup or the end of the call by
calling a function; Parley's embedded engine decides the same things in its responder. Either
way the media worker sees the same session events (`handoff_requested`, `hangup_requested`), so
escalation, supervision and the records do not depend on which model is on the line.

The definitions are JSON Schema, as both providers take them; each adapter wraps them in its
own envelope (OpenAI: `{"type": "function", name, description, parameters}`; Gemini:
`functionDeclarations`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agent.health import server_url
from agent.session import EventKind, SessionEvent

log = logging.getLogger(__name__)
LOOKUP_TIMEOUT_S = 3.0

# Why the model hands the call over, as the escalation engine counts it (its
# RESPONDER_HANDOFFS): the model picks one, and may say more in `detail`.
HANDOFF_REASONS = ("caller_asked", "cannot_help", "sensitive_topic", "caller_upset")

TRANSFER_TO_HUMAN = "transfer_to_human"
LOOKUP = "lookup"
END_CALL = "end_call"

DEFINITIONS: tuple[dict[str, Any], ...] = (
    {
        "name": TRANSFER_TO_HUMAN,
        "description": (
            "Hand the call to a human agent. Use it when the caller asks for a person, when you "
            "cannot help, when the topic is sensitive (a complaint, a legal or medical matter), "
            "or when the caller is upset. Tell the caller you are connecting them first."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "reason": {"type": "string", "enum": list(HANDOFF_REASONS)},
                "detail": {
                    "type": "string",
                    "description": "one sentence for the human agent: what the caller needs",
                },
            },
            "required": ["reason"],
        },
    },
    {
        "name": LOOKUP,
        "description": (
            "Look up the business's own answer (opening hours, prices, policies) in its "
            "knowledge base. Use it before answering any question about the business."
        ),
        "parameters": {
            "type": "object",
            "properties": {"question": {"type": "string", "description": "the caller's question"}},
            "required": ["question"],
        },
    },
    {
        "name": END_CALL,
        "description": (
            "End the call after your last words, once the caller has what they needed and has "
            "said goodbye."
        ),
        "parameters": {"type": "object", "properties": {}},
    },
)

Lookup = Callable[[str], Awaitable[str | None]]


def engine_lookup(engine_url: str, token: str, knowledge_base: str) -> Lookup:
    """The lookup tool on a line's knowledge base, answered by Parley's engine server
    (GET /v1/lookup, with the engine's token): what a hosted model asks about the business."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def ask(question: str) -> str | None:
        query = urllib.parse.urlencode({"kb": knowledge_base, "q": question})
        request = urllib.request.Request(
            server_url(engine_url, "/v1/lookup", query), headers=headers
        )
        with urllib.request.urlopen(request, timeout=LOOKUP_TIMEOUT_S) as answer:
            found = json.loads(answer.read())
        return str(found["answer"]) if found.get("found") else None

    async def lookup(question: str) -> str | None:
        return await asyncio.to_thread(ask, question)

    return lookup


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call gives back to the model (`output`, JSON text) and to the call (events)."""

    output: str
    events: tuple[SessionEvent, ...] = ()
    respond: bool = True  # ask the model to go on speaking (it says what it found, or goodbye)


@dataclass
class Tools:
    """Runs the model's tool calls for one session."""

    lookup: Lookup | None = None  # the line's knowledge base; None: no lookup on this line
    calls: list[str] = field(default_factory=list)  # names called, in order (for the records)

    def definitions(self) -> list[dict[str, Any]]:
        return [d for d in DEFINITIONS if d["name"] != LOOKUP or self.lookup is not None]

    async def call(self, name: str, arguments: str) -> ToolResult:
        """The result of one call; a bad call is answered with an error the model can read,
        never raised (the model made it, from what the caller said)."""
        self.calls.append(name)
        try:
            args = json.loads(arguments or "{}")
        except ValueError:
            return _error(f"arguments are not JSON: {arguments[:80]!r}")
        if not isinstance(args, dict):
            return _error("arguments must be a JSON object")
        if name == TRANSFER_TO_HUMAN:
            reason = args.get("reason")
            if reason not in HANDOFF_REASONS:
                reason = "caller_asked"  # the caller has been told a person is coming
            detail = args.get("detail")
            data: dict[str, object] = {"reason": reason, "via": "tool", "tool": name}
            if isinstance(detail, str) and detail.strip():
                data["detail"] = detail.strip()[:300]
            return ToolResult(
                json.dumps({"status": "a person is being connected; stay with the caller"}),
                (SessionEvent(EventKind.HANDOFF_REQUESTED, data),),
                respond=False,
            )
        if name == END_CALL:
            return ToolResult(
                json.dumps({"status": "the call ends once your last words are heard"}),
                (
                    SessionEvent(
                        EventKind.HANGUP_REQUESTED, {"reason": "agent_ended", "tool": name}
                    ),
                ),
                respond=False,
            )
        if name == LOOKUP and self.lookup is not None:
            question = args.get("question")
            if not isinstance(question, str) or not question.strip():
                return _error("lookup needs a question")
            try:
                answer = await self.lookup(question.strip()[:500])
            except (OSError, ValueError) as error:
                log.warning("knowledge-base lookup failed", extra={"error": str(error)[:200]})
                return _error("the knowledge base could not be reached: say you will find out")
            if answer is None:
                return ToolResult(json.dumps({"found": False}))
            return ToolResult(json.dumps({"found": True, "answer": answer}))
        return _error(f"no tool named {name!r}")


# What a hosted model is told, in its own conversation, of what happens on the call outside it.


def key_note(digit: str) -> str:
    return f"The caller pressed the key {digit} on their phone."


def whisper_note(text: str) -> str:
    return (
        "A human supervisor, whom the caller cannot hear, tells you: "
        f"{text.strip()} Follow it in what you say next; never mention the supervisor."
    )


def hand_back_note(note: str | None) -> str:
    said = f" They noted: {note}" if note else ""
    return (
        "The human agent who had the call has handed it back to you."
        + said
        + " Tell the caller you are back and go on helping them."
    )


def _error(message: str) -> ToolResult:
    return ToolResult(json.dumps({"error": message}))


def log_failure(task: asyncio.Task[None]) -> None:
    """A tool call's task ended in an error (logged; the model was already answered or the
    session is gone)."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("tool call failed", extra={"error": str(task.exception())})
