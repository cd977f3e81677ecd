"""Parley's turn-taking for a hosted model (`turn_detection: parley` on a `realtime` line).

The hosted model's own voice activity detection is off (`turn_detection: null`); a session on
Parley's engine server hears the caller beside it, with the engine's whole turn-taking
(Silero VAD, the hesitation-aware wait: fillers, numbers read out, unfinished sentences) and
says nothing (`metadata.answers: "false"`). Its events tell the adapter when the caller
started to speak (a barge-in on the model's answer) and when a turn ended, with its words;
the adapter then commits the model's input buffer and asks for the answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed

from agent.remote import RealtimeTranscriber
from agent.session import SAMPLE_RATE, SessionError


@dataclass(frozen=True, slots=True)
class TurnEvent:
    """`started`: the caller began to speak; `ended`: their turn is over (`text`, and the
    engine's wait from the end of speech to its decision, `endpointing_ms`)."""

    kind: str  # "started" | "ended"
    text: str = ""
    endpointing_ms: float = 0.0


class EngineTurns(RealtimeTranscriber):
    """A listening session on Parley's engine server that decides the caller's turns: the
    transcriber's connection (audio in as it comes), on a conversation session that says
    nothing instead of a transcription-only one."""

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        knowledge_base: str = "sample",
        connect_timeout_s: float = 3.0,
    ) -> None:
        super().__init__(url, headers=headers, connect_timeout_s=connect_timeout_s)
        self.knowledge_base = knowledge_base
        self._stopped_at: float | None = None

    def _session(self) -> dict[str, Any]:
        fmt = {"type": "audio/pcm", "rate": SAMPLE_RATE}
        return {
            "type": "realtime",
            "audio": {"input": {"format": fmt}, "output": {"format": fmt}},
            "metadata": {
                "knowledge_base": self.knowledge_base,
                "answers": "false",
                "greet": "false",
                "agent_backchannels": "false",
            },
        }

    async def events(self) -> AsyncIterator[TurnEvent]:
        """The caller's turns, until the connection ends; a lost one raises SessionError."""
        if self._ws is None:
            raise SessionError("not connected to the engine", retryable=False)
        try:
            async for message in self._ws:
                event = json.loads(message)
                if not isinstance(event, dict):
                    continue
                turn = self._turn(event)
                if turn is not None:
                    yield turn
        except ConnectionClosed:
            pass
        except ValueError as error:
            raise SessionError(f"bad event from the engine: {error}", retryable=False) from None
        if not self.closing:
            raise SessionError("engine connection lost (turn-taking)", retryable=True)

    def _turn(self, event: dict[str, Any]) -> TurnEvent | None:
        kind = event.get("type")
        if kind == "input_audio_buffer.speech_started":
            self._stopped_at = None
            return TurnEvent("started")
        if kind == "input_audio_buffer.speech_stopped":
            self._stopped_at = time.monotonic()
            return None
        if kind == "conversation.item.input_audio_transcription.completed":
            waited = time.monotonic() - self._stopped_at if self._stopped_at else 0.0
            self._stopped_at = None
            return TurnEvent("ended", str(event.get("transcript") or ""), round(waited * 1000, 1))
        return None
