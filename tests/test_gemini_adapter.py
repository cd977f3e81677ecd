"""The Gemini Live adapter against Google's side of the protocol (tests/gemini_live_server.py):
everything it sends validates against the google-genai package's Live types, and it handles
the server messages those types define — audio at 24 kHz, interruption, transcriptions, tool
calls — and a goAway mid-answer, resumed on a new connection with no gap the caller hears.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from agent.gemini_live import GeminiLiveSession, GeminiOptions
from agent.profiles import ModelTarget, SessionTarget, create_session
from agent.session import (
    AgentAudio,
    CallerAudio,
    CallerDtmf,
    ClearPlayout,
    EventKind,
    SessionError,
    SessionEvent,
    SessionOutput,
)
from tests.gemini_live_server import Connection, GeminiLiveServer

KEY = "AIza-test-0123456789"


def _session(server: GeminiLiveServer) -> GeminiLiveSession:
    return GeminiLiveSession(
        server.url, api_key=KEY, options=GeminiOptions(), instructions="You answer for Acme."
    )


def _talk(
    body: Callable[[GeminiLiveSession, Connection, GeminiLiveServer], Awaitable[None]],
) -> None:
    async def main() -> None:
        async with GeminiLiveServer().running() as server:
            session = _session(server)
            await session.start()
            conn = await server.next_connection()
            try:
                await asyncio.wait_for(body(session, conn, server), 30)
            finally:
                await session.close()
            assert conn.invalid == []

    asyncio.run(main())


def _tone24(ms: int, hz: float = 440.0) -> bytes:
    t = np.arange(24 * ms) / 24000
    return (np.sin(2 * np.pi * hz * t) * 8000).astype("<i2").tobytes()


def _loud_frame() -> bytes:
    t = np.arange(320) / 16000
    return (np.sin(2 * np.pi * 300 * t) * 6000).astype("<i2").tobytes()


async def _until(session: GeminiLiveSession, kind: EventKind) -> list[SessionOutput]:
    seen: list[SessionOutput] = []
    async for item in session.outputs():
        seen.append(item)
        if isinstance(item, SessionEvent) and item.kind is kind:
            return seen
    return seen


def _events(seen: list[SessionOutput]) -> dict[EventKind, dict[str, object]]:
    return {item.kind: item.data for item in seen if isinstance(item, SessionEvent)}


def test_the_setup_and_the_audio_are_as_the_live_api_takes_them() -> None:
    async def body(session: GeminiLiveSession, conn: Connection, _: GeminiLiveServer) -> None:
        assert conn.headers["x-goog-api-key"] == KEY and "key=" not in session.url
        setup = conn.setup
        assert setup["model"] == "models/gemini-live-2.5-flash-preview"
        assert setup["generationConfig"]["responseModalities"] == ["AUDIO"]
        voice = setup["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]
        assert voice == {"voiceName": "Kore"}
        assert setup["systemInstruction"] == {"parts": [{"text": "You answer for Acme."}]}
        names = [d["name"] for d in setup["tools"][0]["functionDeclarations"]]
        assert names == ["transfer_to_human", "end_call"]
        assert setup["realtimeInputConfig"]["automaticActivityDetection"]["disabled"] is False
        assert setup["inputAudioTranscription"] == {} and setup["outputAudioTranscription"] == {}
        assert (
            setup["sessionResumption"] == {}
            and "slidingWindow" in setup["contextWindowCompression"]
        )
        greeting = await conn.receive("clientContent")
        assert (
            greeting["turnComplete"] is True and "Greet" in greeting["turns"][0]["parts"][0]["text"]
        )
        # Caller frames go out as they are: 16 kHz PCM, nothing resampled on the way up.
        frames = [_loud_frame() for _ in range(10)]
        for n, frame in enumerate(frames):
            await session.send_audio(CallerAudio(frame, n))
        sent = [await conn.receive("realtimeInput") for _ in range(10)]
        assert {m["audio"]["mimeType"] for m in sent} == {"audio/pcm;rate=16000"}
        assert b"".join(base64.b64decode(m["audio"]["data"]) for m in sent) == b"".join(frames)

    _talk(body)


def test_an_answer_comes_out_at_16_khz_with_both_transcripts_and_its_latency() -> None:
    async def body(session: GeminiLiveSession, conn: Connection, _: GeminiLiveServer) -> None:
        for n in range(5):
            await session.send_audio(CallerAudio(_loud_frame(), n))
        await conn.send({"serverContent": {"inputTranscription": {"text": "When do you "}}})
        await conn.send({"serverContent": {"inputTranscription": {"text": "open?"}}})
        pcm = _tone24(1000)
        for offset in range(0, len(pcm), 4800):
            await conn.audio(pcm[offset : offset + 4800])
        await conn.send({"serverContent": {"outputTranscription": {"text": "We open "}}})
        await conn.send({"serverContent": {"outputTranscription": {"text": "at nine."}}})
        await conn.send({"serverContent": {"generationComplete": True}})
        await conn.send({"serverContent": {"turnComplete": True}})
        seen = await _until(session, EventKind.AGENT_TRANSCRIPT)
        audio = b"".join(item.pcm for item in seen if isinstance(item, AgentAudio))
        assert len(audio) == pytest.approx(32000, abs=64)  # one second at 16 kHz
        events = _events(seen)
        assert events[EventKind.CALLER_TRANSCRIPT] == {"text": "When do you open?"}
        utterance = events[EventKind.AGENT_UTTERANCE_STARTED]["utterance_id"]
        assert events[EventKind.AGENT_UTTERANCE_DONE] == {
            "utterance_id": utterance,
            "audio_ms": 1000,
        }
        assert events[EventKind.AGENT_TRANSCRIPT] == {
            "utterance_id": utterance,
            "text": "We open at nine.",
        }
        latency = events[EventKind.END_OF_TURN]
        assert latency["model"] == "gemini-live-2.5-flash-preview"
        assert (
            isinstance(latency["first_audio_ms"], float) and 0 <= latency["first_audio_ms"] < 2000
        )

    _talk(body)


def test_an_interruption_clears_the_playout_and_ends_the_utterance() -> None:
    async def body(session: GeminiLiveSession, conn: Connection, _: GeminiLiveServer) -> None:
        await conn.audio(_tone24(500))
        await conn.send({"serverContent": {"interrupted": True}})
        seen = await _until(session, EventKind.AGENT_TRANSCRIPT)
        cleared = [item for item in seen if isinstance(item, ClearPlayout)]
        assert [c.reason for c in cleared] == ["barge_in"]
        assert EventKind.CALLER_SPEECH_STARTED in _events(seen)
        # The next answer is a new utterance.
        await conn.audio(_tone24(200))
        await conn.send({"serverContent": {"turnComplete": True}})
        again = await _until(session, EventKind.AGENT_UTTERANCE_DONE)
        first = _events(seen)[EventKind.AGENT_UTTERANCE_DONE]["utterance_id"]
        assert _events(again)[EventKind.AGENT_UTTERANCE_STARTED]["utterance_id"] != first

    _talk(body)


def test_a_transfer_tool_call_asks_for_a_person_and_answers_the_model() -> None:
    async def body(session: GeminiLiveSession, conn: Connection, _: GeminiLiveServer) -> None:
        call = {"id": "fc_1", "name": "transfer_to_human", "args": {"reason": "caller_upset"}}
        await conn.send({"toolCall": {"functionCalls": [call]}})
        seen = await _until(session, EventKind.HANDOFF_REQUESTED)
        assert _events(seen)[EventKind.HANDOFF_REQUESTED] == {
            "reason": "caller_upset", "via": "tool", "tool": "transfer_to_human",
        }  # fmt: skip
        response = await conn.receive("toolResponse")
        [answer] = response["functionResponses"]
        assert answer["id"] == "fc_1" and answer["name"] == "transfer_to_human"
        assert "connected" in answer["response"]["status"]
        await conn.send({"toolCallCancellation": {"ids": ["fc_9"]}})  # noted, nothing breaks

    _talk(body)


def test_whispers_keys_and_hand_back_reach_the_model_as_notes() -> None:
    async def body(session: GeminiLiveSession, conn: Connection, _: GeminiLiveServer) -> None:
        await conn.receive("clientContent")  # the greeting
        await session.send_instruction("Offer the fee waiver.")
        await session.send_dtmf(CallerDtmf("5", 0))
        await session.resume("Refund approved")
        notes = [await conn.receive("clientContent") for _ in range(3)]
        texts = [n["turns"][0]["parts"][0]["text"] for n in notes]
        assert "Offer the fee waiver." in texts[0] and notes[0]["turnComplete"] is False
        assert "pressed the key 5" in texts[1]
        assert "Refund approved" in texts[2] and notes[2]["turnComplete"] is True

    _talk(body)


def test_go_away_mid_answer_resumes_on_a_new_connection_without_a_gap() -> None:
    """The server says goAway while an answer streams (at real time, 40 ms a message): the
    answer plays on from the old connection; once it is complete and the server has given a
    handle that holds it, the adapter resumes on a new connection with that handle, and the
    next answer comes from there. What the caller would hear never runs dry for 100 ms."""

    async def body(session: GeminiLiveSession, first: Connection, server: GeminiLiveServer) -> None:
        await first.send({"sessionResumptionUpdate": {"newHandle": "h1", "resumable": True}})
        arrivals: list[tuple[float, int]] = []  # (when, samples) of each piece of audio

        async def listen(until: EventKind) -> list[SessionOutput]:
            seen: list[SessionOutput] = []
            async for item in session.outputs():
                seen.append(item)
                if isinstance(item, AgentAudio):
                    arrivals.append((time.monotonic(), len(item.pcm) // 2))
                if isinstance(item, SessionEvent) and item.kind is until:
                    break
            return seen

        listening = asyncio.create_task(listen(EventKind.AGENT_UTTERANCE_DONE))
        pcm = _tone24(2000)
        step = 24 * 40 * 2  # 40 ms
        started = time.monotonic()
        for n, offset in enumerate(range(0, len(pcm), step)):
            if n == 15:  # 0.6 s in
                await first.send({"goAway": {"timeLeft": "5s"}})
                await first.send({"sessionResumptionUpdate": {"resumable": False}})
            await first.audio(pcm[offset : offset + step])
            await asyncio.sleep(max(0.0, started + (n + 1) * 0.04 - time.monotonic()))
        await first.send({"serverContent": {"generationComplete": True}})
        await first.send({"serverContent": {"turnComplete": True}})
        await listening
        # The whole answer came, and never later than 100 ms after the caller needed it.
        heard = sum(samples for _, samples in arrivals)
        assert heard == pytest.approx(32000, abs=16)
        t0, delivered, worst = arrivals[0][0], 0, 0.0
        for when, samples in arrivals:
            worst = max(worst, (when - t0) - delivered / 16000)
            delivered += samples
        assert worst < 0.1, f"the caller would have heard {worst * 1000:.0f} ms of nothing"
        # Nothing was resumed mid-answer; the handle that holds the answer resumes it.
        assert server.connections.empty()
        await first.send({"sessionResumptionUpdate": {"newHandle": "h2", "resumable": True}})
        second = await server.next_connection()
        assert second.setup["sessionResumption"] == {"handle": "h2"}
        await asyncio.wait_for(first.closed.wait(), 5)
        # The caller's audio now goes to the new connection, and answers come from it.
        await session.send_audio(CallerAudio(_loud_frame(), 0))
        await second.receive("realtimeInput")
        await second.audio(_tone24(200))
        await second.send({"serverContent": {"turnComplete": True}})
        seen = await _until(session, EventKind.AGENT_UTTERANCE_DONE)
        assert any(isinstance(item, AgentAudio) for item in seen)
        assert session.resumptions == 1
        assert second.invalid == []

    _talk(body)


def test_a_lost_connection_ends_the_session_with_an_error() -> None:
    async def body(session: GeminiLiveSession, conn: Connection, _: GeminiLiveServer) -> None:
        await conn.ws.close(1011, "internal error")
        with pytest.raises(SessionError, match="lost"):
            await _until(session, EventKind.ERROR)

    _talk(body)


def test_the_registry_builds_gemini_live_with_its_key_in_a_header(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = SessionTarget(
        engine_url="ws://unused",
        model=ModelTarget(url="", model="", api_key_env="PARLEY_TEST_GEMINI"),
    )
    monkeypatch.setenv("PARLEY_TEST_GEMINI", KEY)
    session: Any = create_session("gemini-live", target)
    assert isinstance(session, GeminiLiveSession)
    assert session.headers == {"x-goog-api-key": KEY}
    assert session.url.startswith("wss://generativelanguage.googleapis.com/ws/")
    assert KEY not in session.url
