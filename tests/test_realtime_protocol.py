"""The Realtime protocol boundary: malformed client events get clear errors, never a crash."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json

import numpy as np
import pytest
from websockets.asyncio.client import connect

from agent import realtime as rt
from agent.remote import RealtimeSession, RealtimeTranscriber
from agent.session import AgentDtmf, ClearPlayout, EventKind, SessionError, SessionEvent
from telephony.consent import spoken_answer
from tests.engine_harness import silence, speak
from tests.support import EngineProcess


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_event"),
        ('{"type": "nope.never"}', "unsupported_event"),
        ('{"type": "input_audio_buffer.append", "audio": 5}', "invalid_value"),
        ('{"type": "input_audio_buffer.append", "audio": "!!notbase64"}', "invalid_value"),
        # "AQID" is 3 bytes: PCM16 needs an even count
        ('{"type": "input_audio_buffer.append", "audio": "AQID"}', "invalid_value"),
        ('{"type": "session.update", "session": []}', "invalid_value"),
        (
            '{"type": "session.update", "session": {"audio": {"input": {"format": '
            '{"type": "audio/pcm", "rate": 44100}}}}}',
            "unsupported_format",
        ),
        (
            '{"type": "session.update", "session": {"audio": {"input": {"format": '
            '{"type": "audio/opus"}}}}}',
            "unsupported_format",
        ),
        ('{"type": "conversation.item.truncate", "item_id": "x"}', "invalid_value"),
        ('{"type": "parley.dtmf", "digit": "12"}', "invalid_value"),
        ('{"type": "parley.resume", "note": 5}', "invalid_value"),
        ('{"type": "parley.resume", "note": ["Refund approved"]}', "invalid_value"),
        # A misspelt note would be lost without a word: refused instead.
        ('{"type": "parley.resume", "notes": "Refund approved"}', "unknown_parameter"),
        ('{"type": "parley.resume", "text": "Refund approved"}', "unknown_parameter"),
    ],
)
def test_malformed_client_events_are_refused_with_a_code(message: str, code: str) -> None:
    with pytest.raises(rt.ProtocolError) as refused:
        rt.parse_client_event(message)
    assert refused.value.code == code


def test_good_client_events_parse() -> None:
    audio = base64.b64encode(b"\x00\x01" * 160).decode()
    event = rt.parse_client_event(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
    assert event == rt.AudioAppend(b"\x00\x01" * 160)
    update = rt.parse_client_event(
        json.dumps(
            {
                "type": "session.update",
                "session": {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
            }
        )
    )
    assert isinstance(update, rt.SessionUpdate) and update.input_rate == 16000
    assert rt.parse_client_event('{"type": "parley.dtmf", "digit": "#"}') == rt.Dtmf("#")


@pytest.mark.parametrize(
    ("message", "note"),
    [
        ('{"type": "parley.resume", "note": "Refund approved"}', "Refund approved"),
        (
            '{"type": "parley.resume", "event_id": "e1", "note": " Refund approved "}',
            "Refund approved",
        ),
        ('{"type": "parley.resume"}', None),
        ('{"type": "parley.resume", "note": null}', None),
        ('{"type": "parley.resume", "note": "   "}', None),
    ],
)
def test_a_hand_back_parses_with_or_without_a_note(message: str, note: str | None) -> None:
    assert rt.parse_client_event(message) == rt.Resume(note)


def test_the_client_sends_whispers_and_hand_backs_as_parley_events() -> None:
    class Wire:
        def __init__(self) -> None:
            self.sent: list[dict[str, object]] = []

        async def send(self, message: str) -> None:
            self.sent.append(json.loads(message))

    async def scenario() -> list[dict[str, object]]:
        session = RealtimeSession("ws://127.0.0.1:9/v1/realtime")
        wire = Wire()
        session._ws = wire  # type: ignore[assignment]
        await session.send_instruction("Offer the loyalty discount")
        await session.resume("Refund approved")
        await session.resume(None)
        return wire.sent

    sent = asyncio.run(scenario())
    assert sent == [
        {"type": "parley.instruction", "text": "Offer the loyalty discount"},
        {"type": "parley.resume", "note": "Refund approved"},
        {"type": "parley.resume"},
    ]
    assert [rt.parse_client_event(json.dumps(event)) for event in sent] == [
        rt.Instruction("Offer the loyalty discount"),
        rt.Resume("Refund approved"),
        rt.Resume(None),
    ]


def test_the_client_clears_playout_on_speech_started_and_maps_parley_events() -> None:
    session = RealtimeSession("ws://127.0.0.1:9/v1/realtime")
    out = session._translate({"type": "input_audio_buffer.speech_started"})
    assert isinstance(out[0], ClearPlayout)
    [handoff] = session._translate({"type": "parley.handoff_requested", "reason": "caller_asked"})
    assert isinstance(handoff, SessionEvent) and handoff.kind is EventKind.HANDOFF_REQUESTED
    assert handoff.data["reason"] == "caller_asked"
    assert session._translate({"type": "parley.dtmf", "digits": "12"}) == [AgentDtmf("12")]
    [applied] = session._translate(
        {"type": "parley.instruction_applied", "item_id": "i1", "text": "The fee is waived."}
    )
    assert applied == SessionEvent(
        EventKind.INSTRUCTION_APPLIED, {"item_id": "i1", "text": "The fee is waived."}
    )
    [resumed] = session._translate({"type": "parley.agent_resumed", "note": True})
    assert resumed == SessionEvent(EventKind.AGENT_RESUMED, {"note": True})


def test_the_engine_answers_garbage_with_errors_and_keeps_the_session(
    engine: EngineProcess,
) -> None:
    async def exchange() -> list[dict[str, object]]:
        received: list[dict[str, object]] = []
        async with connect(engine.url) as ws:
            received.append(json.loads(await ws.recv()))
            for bad in ("{oops", '{"type": "nope"}', '{"type": "input_audio_buffer.append"}'):
                await ws.send(bad)
                received.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
            async with asyncio.timeout(10):
                while True:
                    event = json.loads(await ws.recv())
                    received.append(event)
                    if event["type"] == "response.created":  # the greeting: still working
                        break
        return received

    events = asyncio.run(exchange())
    assert events[0]["type"] == "session.created"
    errors = [e for e in events if e["type"] == "error"]
    assert [e["error"]["code"] for e in errors] == [  # type: ignore[index]
        "invalid_json",
        "unsupported_event",
        "invalid_value",
    ]
    assert events[-1]["type"] == "response.created"


def test_a_transcription_session_hears_each_answer_and_never_speaks(
    engine: EngineProcess,
) -> None:
    """`session.type: "transcription"`: what the media worker opens to hear spoken consent."""
    answers = ["Yes, that's fine.", "No, I don't agree."]
    audio = np.concatenate(
        [silence(300), speak(answers[0]), silence(900), speak(answers[1]), silence(900)]
    )

    async def exchange() -> list[dict[str, object]]:
        received: list[dict[str, object]] = []
        async with connect(engine.url) as ws:
            await ws.send(
                json.dumps(
                    {
                        "type": "session.update",
                        "session": {
                            "type": "transcription",
                            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}},
                        },
                    }
                )
            )
            await ws.send(json.dumps({"type": "response.create"}))  # it must not speak
            for start in range(0, len(audio), 320):
                chunk = audio[start : start + 320].astype("<i2").tobytes()
                await ws.send(
                    json.dumps({"type": "input_audio_buffer.append", "audio": rt.audio_b64(chunk)})
                )
                await asyncio.sleep(0.005)  # faster than real time: it only listens
            async with asyncio.timeout(30):
                done = 0
                while done < len(answers):
                    event = json.loads(await ws.recv())
                    received.append(event)
                    done += event["type"] == "conversation.item.input_audio_transcription.completed"
            await asyncio.sleep(0.5)  # anything more would be a reply
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    while True:
                        received.append(json.loads(await ws.recv()))
        return received

    events = asyncio.run(exchange())
    kinds = [str(e["type"]) for e in events]
    assert not [k for k in kinds if k.startswith("response.")], kinds
    [refused] = [e for e in events if e["type"] == "error"]
    assert refused["error"]["code"] == "invalid_request_for_session_type"  # type: ignore[index]
    words = [
        str(e["transcript"])
        for e in events
        if e["type"] == "conversation.item.input_audio_transcription.completed"
    ]
    assert [spoken_answer(w) for w in words] == ["granted", "declined"], words
    # Each utterance: started, stopped, committed, then its words.
    assert kinds.count("input_audio_buffer.speech_started") == 2, kinds
    first = kinds.index("input_audio_buffer.speech_started")
    assert kinds.index("input_audio_buffer.speech_stopped") > first
    assert kinds.index("conversation.item.input_audio_transcription.completed") > kinds.index(
        "input_audio_buffer.committed"
    )


def test_the_workers_transcriber_client_yields_words_and_reports_an_unreachable_engine() -> None:
    async def unreachable() -> str:
        heard = RealtimeTranscriber("ws://127.0.0.1:9/v1/realtime", connect_timeout_s=1.0)
        try:
            await heard.start()
        except SessionError as error:
            return str(error)
        return ""

    assert "engine unreachable" in asyncio.run(unreachable())
