"""The GPT-realtime adapter against OpenAI's side of the protocol (tests/openai_realtime_server.py):
everything it sends validates against the openai package's client event types, and it handles
the server events the package defines: audio at 24 kHz, barge-in and truncation, tool calls,
the older event names, refusals, a lost connection, and the renewal before the 60-minute limit.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from agent.openai_realtime import OpenAIOptions, OpenAIRealtimeSession, with_model
from agent.profiles import ModelTarget, SessionTarget, create_session
from agent.session import (
    AgentAudio,
    CallerAudio,
    CallerDtmf,
    ClearPlayout,
    EventKind,
    PlayoutReport,
    SessionError,
    SessionEvent,
    SessionOutput,
)
from agent.tools import Tools
from tests.openai_realtime_server import Connection, OpenAIRealtimeServer

KEY = "sk-test-0123456789abcdef"


def _run(body: Callable[[OpenAIRealtimeServer], Awaitable[None]]) -> None:
    async def main() -> None:
        async with OpenAIRealtimeServer().running() as server:
            await asyncio.wait_for(body(server), 30)

    asyncio.run(main())


def _talk(
    body: Callable[[OpenAIRealtimeSession, Connection], Awaitable[None]], **options: Any
) -> None:
    """Runs `body` with a started session and the server's side of it; every event the
    adapter sent must have been valid."""

    async def run(server: OpenAIRealtimeServer) -> None:
        session = _session(server, **options)
        await session.start()
        conn = await server.next_connection()
        try:
            await body(session, conn)
        finally:
            await session.close()
        assert conn.invalid == []

    _run(run)


async def _function_call(conn: Connection, call_id: str, name: str, arguments: str) -> None:
    await conn.send(
        {
            "type": "response.function_call_arguments.done",
            "response_id": "resp_2",
            "item_id": "item_fc",
            "output_index": 0,
            "call_id": call_id,
            "name": name,
            "arguments": arguments,
        }
    )


def _session(server: OpenAIRealtimeServer, **options: Any) -> OpenAIRealtimeSession:
    return OpenAIRealtimeSession(
        server.url,
        api_key=KEY,
        options=OpenAIOptions(**options),
        instructions="You answer the phone for Acme.",
    )


def _tone24(ms: int, hz: float = 440.0) -> bytes:
    t = np.arange(24 * ms) / 24000
    return (np.sin(2 * np.pi * hz * t) * 8000).astype("<i2").tobytes()


def _b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode()


async def _outputs(
    session: OpenAIRealtimeSession, until: Callable[[SessionOutput], bool]
) -> list[SessionOutput]:
    seen: list[SessionOutput] = []
    async for item in session.outputs():
        seen.append(item)
        if until(item):
            break
    return seen


async def _only_event(session: OpenAIRealtimeSession, kind: EventKind) -> SessionEvent:
    """The next output, which must be a `kind` event."""
    [event] = await _outputs(session, _is(kind))
    assert isinstance(event, SessionEvent)
    return event


def _is(kind: EventKind) -> Callable[[SessionOutput], bool]:
    return lambda item: isinstance(item, SessionEvent) and item.kind is kind


async def _answer(conn: Connection, item_id: str, pcm: bytes, *, old_names: bool = False) -> None:
    """A response with one audio item, as the API streams it."""
    delta = "response.audio.delta" if old_names else "response.output_audio.delta"
    done = "response.audio.done" if old_names else "response.output_audio.done"
    ids = {"response_id": "resp_1", "item_id": item_id, "output_index": 0, "content_index": 0}
    await conn.send(
        {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}}
    )
    for offset in range(0, len(pcm), 4800):  # 100 ms deltas
        await conn.send(
            {"type": delta, **ids, "delta": _b64(pcm[offset : offset + 4800])}, beta=old_names
        )
    await conn.send({"type": done, **ids}, beta=old_names)
    await conn.send(
        {"type": "response.output_audio_transcript.done", **ids, "transcript": "We open at nine."}
    )
    await conn.send({"type": "response.done", "response": {"id": "resp_1", "status": "completed"}})


def test_the_session_is_configured_as_the_published_protocol_says() -> None:
    async def body(session: OpenAIRealtimeSession, conn: Connection) -> None:
        update = await conn.receive("session.update")
        assert conn.headers["authorization"] == f"Bearer {KEY}"
        assert conn.path == "/v1/realtime?model=gpt-realtime"
        config = update["session"]
        assert config["type"] == "realtime" and config["model"] == "gpt-realtime"
        assert config["instructions"] == "You answer the phone for Acme."
        audio = config["audio"]
        assert audio["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert audio["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert audio["input"]["turn_detection"]["type"] == "semantic_vad"
        assert audio["input"]["turn_detection"]["eagerness"] == "high"
        assert audio["output"]["voice"] == "marin"
        assert {tool["name"] for tool in config["tools"]} == {"transfer_to_human", "end_call"}
        greet = await conn.receive("response.create")  # the agent speaks first
        assert "Greet the caller" in greet["response"]["instructions"]
        # Caller frames go out at 24 kHz: 50 frames of 20 ms are a second.
        for n in range(50):
            await session.send_audio(CallerAudio(bytes(640), n))
        await asyncio.sleep(0.2)
        appended = conn.drain("input_audio_buffer.append")
        sent = sum(len(base64.b64decode(e["audio"])) for e in appended)
        assert 48000 - 2400 <= sent <= 48000  # the resampler holds back at most ~50 ms

    _talk(body, turn_detection="semantic_vad", eagerness="high")


@pytest.mark.parametrize("old_names", [False, True])
def test_an_answer_comes_out_at_16_khz_with_its_transcript_and_turn_latency(
    old_names: bool,
) -> None:
    async def body(session: OpenAIRealtimeSession, conn: Connection) -> None:
        await conn.receive("session.update")
        for n in range(25):  # the caller's question: half a second
            await session.send_audio(CallerAudio(bytes(640), n))
        await conn.send(
            {"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": "item_q"}
        )
        await conn.send(
            {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 400, "item_id": "item_q"}
        )
        await conn.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": "item_q",
                "content_index": 0,
                "transcript": "When do you open?",
                "usage": {"type": "duration", "seconds": 0.5},
            }
        )
        await _answer(conn, "item_a", _tone24(1000), old_names=old_names)
        seen = await _outputs(session, _is(EventKind.AGENT_TRANSCRIPT))
        audio = b"".join(item.pcm for item in seen if isinstance(item, AgentAudio))
        assert len(audio) == pytest.approx(32000, abs=64)  # one second at 16 kHz
        events = {item.kind: item.data for item in seen if isinstance(item, SessionEvent)}
        assert events[EventKind.CALLER_TRANSCRIPT]["text"] == "When do you open?"
        assert events[EventKind.AGENT_UTTERANCE_STARTED] == {"utterance_id": "item_a"}
        assert events[EventKind.AGENT_UTTERANCE_DONE]["audio_ms"] == pytest.approx(1000, abs=3)
        assert events[EventKind.AGENT_TRANSCRIPT]["text"] == "We open at nine."
        latency = events[EventKind.END_OF_TURN]
        assert latency["model"] == "gpt-realtime"
        assert isinstance(latency["first_audio_ms"], float) and latency["first_audio_ms"] >= 0
        assert isinstance(latency["endpointing_ms"], float)
        assert 0 <= latency["endpointing_ms"] < 2000

    _talk(body)


def test_barge_in_clears_the_playout_and_truncates_at_what_the_caller_heard() -> None:
    async def body(session: OpenAIRealtimeSession, conn: Connection) -> None:
        ids = {"response_id": "resp_1", "item_id": "item_a", "output_index": 0, "content_index": 0}
        await conn.send(
            {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}}
        )
        await conn.send(
            {"type": "response.output_audio.delta", **ids, "delta": _b64(_tone24(2000))}
        )
        await conn.send(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": 900,
                "item_id": "item_b",
            }
        )
        seen = await _outputs(session, lambda item: isinstance(item, ClearPlayout))
        assert isinstance(seen[-1], ClearPlayout) and seen[-1].reason == "barge_in"
        await session.playout_report(PlayoutReport("item_a", played_ms=730, interrupted=True))
        truncate = await conn.receive("conversation.item.truncate")
        assert truncate == {
            "type": "conversation.item.truncate",
            "item_id": "item_a",
            "content_index": 0,
            "audio_end_ms": 730,
        }

    _talk(body)


@pytest.mark.parametrize(
    ("arguments", "kind", "data"),
    [
        (
            '{"reason": "caller_asked", "detail": "wants to dispute a charge"}',
            EventKind.HANDOFF_REQUESTED,
            {
                "reason": "caller_asked",
                "via": "tool",
                "detail": "wants to dispute a charge",
                "tool": "transfer_to_human",
            },
        ),
        # A reason outside the list is still a request for a person (they were told one comes).
        (
            '{"reason": "because"}',
            EventKind.HANDOFF_REQUESTED,
            {"reason": "caller_asked", "via": "tool", "tool": "transfer_to_human"},
        ),
    ],
)
def test_a_transfer_tool_call_asks_for_a_person_and_answers_the_model(
    arguments: str, kind: EventKind, data: dict[str, object]
) -> None:
    async def body(session: OpenAIRealtimeSession, conn: Connection) -> None:
        await _function_call(conn, "call_7", "transfer_to_human", arguments)
        event = await _only_event(session, kind)
        assert event == SessionEvent(kind, data)
        output = await conn.receive("conversation.item.create")
        assert output["item"]["type"] == "function_call_output"
        assert output["item"]["call_id"] == "call_7"
        assert "connected" in json.loads(output["item"]["output"])["status"]
        await asyncio.sleep(0.1)
        assert conn.drain("response.create") == []  # the model said it would connect them

    _talk(body)


def test_a_bad_tool_call_gets_an_error_the_model_can_read_and_the_model_goes_on() -> None:
    async def body(session: OpenAIRealtimeSession, conn: Connection) -> None:
        for call_id, name, arguments in [
            ("c1", "open_the_vault", "{}"),
            ("c2", "end_call", "not json"),
        ]:
            await _function_call(conn, call_id, name, arguments)
            output = await conn.receive("conversation.item.create")
            assert "error" in json.loads(output["item"]["output"])
            await conn.receive("response.create")

    _talk(body)


def test_end_call_hangs_up_after_the_last_words() -> None:
    async def body(session: OpenAIRealtimeSession, conn: Connection) -> None:
        await _function_call(conn, "c9", "end_call", "{}")
        event = await _only_event(session, EventKind.HANGUP_REQUESTED)
        assert event.data["reason"] == "agent_ended"

    _talk(body)


def test_whispers_keys_and_hand_back_reach_the_model_as_system_messages() -> None:
    async def body(session: OpenAIRealtimeSession, conn: Connection) -> None:
        await session.send_instruction("Offer the fee waiver.")
        await session.send_dtmf(CallerDtmf("5", 0))
        await session.resume("Refund approved")
        texts = []
        for _ in range(3):
            item = (await conn.receive("conversation.item.create"))["item"]
            assert item["role"] == "system"
            texts.append(item["content"][0]["text"])
        assert "Offer the fee waiver." in texts[0] and "never mention" in texts[0]
        assert "pressed the key 5" in texts[1]
        assert "Refund approved" in texts[2]
        await conn.receive("response.create")  # the agent says it is back at once

    _talk(body)


@pytest.mark.parametrize(
    ("status", "retryable", "words"),
    [
        (401, False, "refused the API key"),
        (403, False, "refused the API key"),
        (429, True, "rate-limited"),
        (503, True, "HTTP 503"),
    ],
)
def test_a_refused_connection_says_why_and_never_shows_the_key(
    status: int, retryable: bool, words: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(server: OpenAIRealtimeServer) -> None:
        server.refuse_with = status
        session = _session(server)
        with pytest.raises(SessionError) as refused:
            await session.start()
        assert words in str(refused.value)
        assert refused.value.retryable is retryable
        assert KEY not in str(refused.value)

    with caplog.at_level(logging.DEBUG):
        _run(body)
    # Parley's side logs nothing of the key, even at DEBUG (the test server's own handshake
    # log, OpenAI's side, is not Parley's).
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("websockets.server")]
    assert ours and not any(KEY in line for line in ours)


def test_a_model_that_goes_away_mid_call_ends_the_session_with_an_error() -> None:
    async def body(session: OpenAIRealtimeSession, conn: Connection) -> None:
        await conn.ws.close(1011, "internal error")
        with pytest.raises(SessionError, match="lost"):
            await _outputs(session, lambda item: False)

    _talk(body)


def test_an_error_event_is_reported_and_the_session_goes_on() -> None:
    async def body(session: OpenAIRealtimeSession, conn: Connection) -> None:
        await conn.send(
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "code": "rate_limit_exceeded",
                    "message": "slow down",
                },
            }
        )
        await conn.send(
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "code": "response_cancel_not_active",
                    "message": "x",
                },
            }
        )
        error = await _only_event(session, EventKind.ERROR)
        assert error.data == {"code": "rate_limit_exceeded", "message": "slow down"}
        await _answer(conn, "item_a", _tone24(200))
        seen = await _outputs(session, _is(EventKind.AGENT_UTTERANCE_DONE))
        assert not any(
            isinstance(item, SessionEvent) and item.kind is EventKind.ERROR for item in seen
        )

    _talk(body)


def test_the_session_is_renewed_before_its_limit_with_the_conversation_so_far() -> None:
    async def body(server: OpenAIRealtimeServer) -> None:
        session = _session(server, renew_after_s=1.5)
        await session.start()
        first = await server.next_connection()
        await first.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": "item_q", "content_index": 0, "transcript": "When do you open?",
                "usage": {"type": "duration", "seconds": 0.5},
            }
        )  # fmt: skip
        await _answer(first, "item_a", _tone24(200))
        await _outputs(session, _is(EventKind.AGENT_TRANSCRIPT))
        second = await server.next_connection(timeout_s=5)
        await second.receive("session.update")
        replayed = [(await second.receive("conversation.item.create"))["item"] for _ in range(2)]
        assert [(item["role"], item["content"][0]["text"]) for item in replayed] == [
            ("user", "When do you open?"),
            ("assistant", "We open at nine."),
        ]
        await asyncio.wait_for(first.closed.wait(), 5)  # the old one is let go
        # Caller audio now goes to the new connection, and its answers come out; no error.
        for n in range(5):
            await session.send_audio(CallerAudio(bytes(640), n))
        await second.receive("input_audio_buffer.append")
        await _answer(second, "item_b", _tone24(200))
        seen = await _outputs(session, _is(EventKind.AGENT_UTTERANCE_DONE))
        assert any(isinstance(item, AgentAudio) and item.utterance_id == "item_b" for item in seen)
        assert first.invalid == second.invalid == []
        await session.close()

    _run(body)


def test_the_registry_builds_the_adapter_with_the_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = SessionTarget(
        engine_url="ws://unused",
        model=ModelTarget(
            url="wss://api.openai.com/v1/realtime",
            model="gpt-realtime",
            api_key_env="PARLEY_TEST_KEY",
        ),
    )
    monkeypatch.delenv("PARLEY_TEST_KEY", raising=False)
    with pytest.raises(SessionError, match="PARLEY_TEST_KEY is not set") as missing:
        create_session("realtime", target)
    assert missing.value.retryable is False
    monkeypatch.setenv("PARLEY_TEST_KEY", KEY)
    session = create_session("realtime", target)
    assert isinstance(session, OpenAIRealtimeSession)
    assert session.headers == {"Authorization": f"Bearer {KEY}"}
    assert session.url == "wss://api.openai.com/v1/realtime?model=gpt-realtime"


def test_the_model_goes_in_the_query_once() -> None:
    assert (
        with_model("wss://h/v1/realtime", "gpt-realtime")
        == "wss://h/v1/realtime?model=gpt-realtime"
    )
    assert (
        with_model("wss://h/v1/realtime?model=x", "gpt-realtime") == "wss://h/v1/realtime?model=x"
    )


def test_tools_without_a_knowledge_base_offer_no_lookup() -> None:
    assert [d["name"] for d in Tools().definitions()] == ["transfer_to_human", "end_call"]


def test_a_lookup_tool_call_is_answered_and_the_model_goes_on() -> None:
    async def answers(question: str) -> str | None:
        return "We open at nine." if "open" in question else None

    async def main() -> None:
        async with OpenAIRealtimeServer().running() as server:
            session = OpenAIRealtimeSession(
                server.url, api_key=KEY, options=OpenAIOptions(), tools=Tools(lookup=answers)
            )
            await session.start()
            conn = await server.next_connection()
            update = await conn.receive("session.update")
            assert "lookup" in {tool["name"] for tool in update["session"]["tools"]}
            await _function_call(conn, "c1", "lookup", '{"question": "When do you open?"}')
            output = await conn.receive("conversation.item.create")
            assert json.loads(output["item"]["output"]) == {
                "found": True,
                "answer": "We open at nine.",
            }
            await conn.receive("response.create")  # the model says what it found
            await session.close()
            assert conn.invalid == []

    asyncio.run(main())
