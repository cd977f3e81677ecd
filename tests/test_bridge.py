"""The bridge and media port in-process: pjmedia's clock is played by the test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pjsua2 as pj
import pytest

from agent.session import (
    FRAME_BYTES,
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
from telephony.bridge import CallBridge
from telephony.events import CallEventKind, MemoryOutlet
from telephony.framecopy import read_bytes, write_bytes
from telephony.mediaport import MediaPort, wake_on
from telephony.pjthread import library_only
from telephony.playout import AHEAD_FRAMES as PLAYOUT_AHEAD_FRAMES


@pytest.fixture(scope="module", autouse=True)
def pjlib() -> Iterator[None]:
    with library_only():
        yield


class ScriptedSession:
    """A session whose outputs the test pushes; records what it was sent."""

    def __init__(self) -> None:
        self.out: asyncio.Queue[SessionOutput | Exception | None] = asyncio.Queue()
        self.audio: list[bytes] = []
        self.reports: list[PlayoutReport] = []
        self.instructions: list[str] = []
        self.resumes: list[str | None] = []
        self.closed = False

    async def start(self) -> None:
        return None

    async def send_audio(self, frame: CallerAudio) -> None:
        self.audio.append(frame.pcm)

    async def send_dtmf(self, digit: CallerDtmf) -> None:
        return None

    async def send_instruction(self, text: str) -> None:
        self.instructions.append(text)

    async def resume(self, note: str | None) -> None:
        self.resumes.append(note)

    async def playout_report(self, report: PlayoutReport) -> None:
        self.reports.append(report)

    async def outputs(self) -> AsyncIterator[SessionOutput]:
        while True:
            item = await self.out.get()
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item

    async def close(self) -> None:
        self.closed = True
        self.out.put_nowait(None)


def _frame(pcm: bytes) -> Any:
    frame = pj.MediaFrame()
    frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
    write_bytes(frame.buf, pcm)
    return frame


async def _bridge(
    session: ScriptedSession,
    failures: list[str] | None = None,
    rx_capacity: int = 50,
    on_sensitive: Callable[[bool], None] = lambda _on: None,
) -> tuple[CallBridge, MediaPort, MemoryOutlet]:
    ready = asyncio.Event()
    port = MediaPort(on_rx=wake_on(asyncio.get_running_loop(), ready), rx_capacity=rx_capacity)
    outlet = MemoryOutlet()
    bridge = CallBridge(
        call_id="c1",
        port=port,
        session=session,
        outlet=outlet,
        rx_ready=ready,
        on_hangup_requested=lambda _r: None,
        on_session_failed=(failures if failures is not None else []).append,
        on_sensitive=on_sensitive,
    )
    await bridge.start()
    return bridge, port, outlet


def _pull(port: MediaPort, frames: int) -> list[bytes]:
    """Plays the conference clock: asks the port for `frames` frames of agent audio."""
    out = []
    for _ in range(frames):
        frame = pj.MediaFrame()
        port.onFrameRequested(frame)
        out.append(read_bytes(frame.buf))
    return out


def test_caller_frames_reach_the_session_in_order() -> None:
    async def scenario() -> None:
        session = ScriptedSession()
        bridge, port, _ = await _bridge(session)
        frames = [bytes([i]) * FRAME_BYTES for i in range(30)]
        for pcm in frames:
            port.onFrameReceived(_frame(pcm))
        port.onFrameReceived(_frame(b"\x01" * 10))  # a short frame is not audio: ignored
        await asyncio.sleep(0.05)
        assert session.audio == frames
        await bridge.close()
        assert session.closed

    asyncio.run(scenario())


def test_caller_overflow_drops_oldest_and_counts() -> None:
    async def scenario() -> None:
        session = ScriptedSession()
        bridge, port, _ = await _bridge(session, rx_capacity=5)
        for i in range(8):  # the loop never runs between these: the queue overflows
            port.onFrameReceived(_frame(bytes([i]) * FRAME_BYTES))
        await asyncio.sleep(0.05)
        assert [pcm[0] for pcm in session.audio] == [3, 4, 5, 6, 7]
        assert port.counters().rx_overflow_drops == 3
        await bridge.close()

    asyncio.run(scenario())


def test_agent_audio_is_framed_paced_and_padded() -> None:
    async def scenario() -> None:
        session = ScriptedSession()
        bridge, port, _ = await _bridge(session)
        # 1 s and 10 ms of audio: 50 whole frames and a half frame.
        session.out.put_nowait(AgentAudio("u1", b"\x05\x00" * (16000 + 160)))
        await asyncio.sleep(0.02)
        assert port.playout_depth() == PLAYOUT_AHEAD_FRAMES  # paced, not dumped
        played = []
        for _ in range(60):
            played += _pull(port, 1)
            await asyncio.sleep(0.011)
        session.out.put_nowait(SessionEvent(EventKind.AGENT_UTTERANCE_DONE, {"utterance_id": "u1"}))
        await asyncio.sleep(0.05)
        played += _pull(port, 2)
        voiced = [f for f in played if f != bytes(FRAME_BYTES)]
        assert len(voiced) == 51
        assert voiced[-1] == b"\x05\x00" * 160 + bytes(FRAME_BYTES - 320)
        await bridge.close()

    asyncio.run(scenario())


def test_the_agents_goodbye_is_heard_before_it_hangs_up() -> None:
    async def scenario() -> None:
        session = ScriptedSession()
        hangups: list[tuple[str, int]] = []
        ready = asyncio.Event()
        port = MediaPort(on_rx=wake_on(asyncio.get_running_loop(), ready))
        played: list[bytes] = []
        bridge = CallBridge(
            call_id="c1",
            port=port,
            session=session,
            outlet=MemoryOutlet(),
            rx_ready=ready,
            on_hangup_requested=lambda reason: hangups.append((reason, len(played))),
            on_session_failed=lambda _error: None,
        )
        await bridge.start()
        # The engine sends its goodbye (half a second) and the request at once.
        session.out.put_nowait(AgentAudio("bye", b"\x05\x00" * 8000))
        session.out.put_nowait(
            SessionEvent(EventKind.AGENT_UTTERANCE_DONE, {"utterance_id": "bye"})
        )
        session.out.put_nowait(
            SessionEvent(EventKind.HANGUP_REQUESTED, {"reason": "conversation_complete"})
        )
        for _ in range(40):  # the conference clock plays it out
            await asyncio.sleep(0.02)
            assert not hangups or len([f for f in played if any(f)]) == 25, hangups
            played += _pull(port, 1)
        assert hangups and hangups[0][0] == "conversation_complete"
        assert len([f for f in played[: hangups[0][1]] if any(f)]) == 25  # all of it, first
        await bridge.close()

    asyncio.run(scenario())


def test_flush_empties_playout_and_reports_what_was_heard() -> None:
    async def scenario() -> None:
        session = ScriptedSession()
        bridge, port, outlet = await _bridge(session)
        session.out.put_nowait(AgentAudio("u7", b"\x09\x00" * 16000 * 3))
        await asyncio.sleep(0.02)
        _pull(port, 7)
        session.out.put_nowait(ClearPlayout(reason="barge-in"))
        await asyncio.sleep(0.02)
        assert port.playout_depth() == 0
        assert _pull(port, 3) == [bytes(FRAME_BYTES)] * 3  # silence at once
        assert session.reports == [PlayoutReport("u7", 140, interrupted=True)]
        [flushed] = [e for e in outlet.events if e.kind is CallEventKind.PLAYOUT_FLUSHED]
        assert flushed.data == {"reason": "barge-in", "utterance_id": "u7", "played_ms": 140}
        await bridge.close()

    asyncio.run(scenario())


def test_an_answer_resumed_after_a_flush_counts_on_from_where_it_was_heard() -> None:
    async def scenario() -> None:
        session = ScriptedSession()
        bridge, port, _ = await _bridge(session)
        session.out.put_nowait(AgentAudio("u9", b"\x09\x00" * 16000))
        await asyncio.sleep(0.02)
        _pull(port, 7)
        session.out.put_nowait(ClearPlayout(reason="barge_in"))  # paused for an "uh-huh"
        await asyncio.sleep(0.02)
        session.out.put_nowait(AgentAudio("u9", b"\x09\x00" * 16000))  # the rest, resumed
        await asyncio.sleep(0.02)
        _pull(port, 3)
        session.out.put_nowait(ClearPlayout(reason="barge_in"))  # now a real barge-in
        await asyncio.sleep(0.02)
        assert session.reports == [
            PlayoutReport("u9", 140, interrupted=True),
            PlayoutReport("u9", 200, interrupted=True),  # a position in the whole answer
        ]
        await bridge.close()

    asyncio.run(scenario())


def test_an_answer_heard_in_full_is_not_flushed() -> None:
    async def scenario() -> None:
        session = ScriptedSession()
        bridge, port, outlet = await _bridge(session)
        session.out.put_nowait(AgentAudio("u8", b"\x09\x00" * 1600))  # 100 ms
        session.out.put_nowait(SessionEvent(EventKind.AGENT_UTTERANCE_DONE, {"utterance_id": "u8"}))
        await asyncio.sleep(0.02)
        _pull(port, 8)  # five frames of answer, then silence
        session.out.put_nowait(ClearPlayout(reason="barge_in"))  # the caller speaks next
        await asyncio.sleep(0.02)
        assert session.reports == []
        assert not [e for e in outlet.events if e.kind is CallEventKind.PLAYOUT_FLUSHED]
        assert port.counters().underruns == 0  # the silence after an answer is not a gap in it
        await bridge.close()

    asyncio.run(scenario())


def test_a_failing_session_is_reported_not_raised() -> None:
    async def scenario() -> None:
        session = ScriptedSession()
        failures: list[str] = []
        bridge, _, _ = await _bridge(session, failures)
        session.out.put_nowait(SessionError("engine went away", retryable=True))
        await asyncio.sleep(0.05)
        assert failures == ["engine went away"]
        await bridge.close()

    asyncio.run(scenario())


def test_a_detached_agent_hears_nothing_says_nothing_and_returns_with_a_note() -> None:
    async def scenario() -> None:
        session = ScriptedSession()
        bridge, port, outlet = await _bridge(session)
        session.out.put_nowait(AgentAudio("u1", b"\x05" * FRAME_BYTES * 20))
        await asyncio.sleep(0.05)
        assert _pull(port, 3)[0] == b"\x05" * FRAME_BYTES
        await bridge.detach()
        # What it was saying stops at once, and the session learns how much was heard.
        assert port.playout_depth() == 0
        assert session.reports == [PlayoutReport("u1", 60, interrupted=True)]
        flushed = [e for e in outlet.events if e.kind is CallEventKind.PLAYOUT_FLUSHED]
        assert flushed[-1].data["reason"] == "detached"
        # Caller audio that still arrives is not for it; what it says goes nowhere.
        port.onFrameReceived(_frame(b"\x07" * FRAME_BYTES))
        session.out.put_nowait(AgentAudio("u2", b"\x09" * FRAME_BYTES * 5))
        await asyncio.sleep(0.05)
        assert session.audio == []
        assert port.playout_depth() == 0
        await bridge.reattach("The refund was approved")
        # A hand-back, not a whisper: the agent is to say it is back, with the note.
        assert session.resumes == ["The refund was approved"]
        assert session.instructions == []
        port.onFrameReceived(_frame(b"\x08" * FRAME_BYTES))
        session.out.put_nowait(AgentAudio("u3", b"\x0a" * FRAME_BYTES * 2))
        await asyncio.sleep(0.05)
        assert session.audio == [b"\x08" * FRAME_BYTES]  # only what the caller said after
        assert _pull(port, 1)[0] == b"\x0a" * FRAME_BYTES
        assert not session.closed  # the same conversation all along
        await bridge.close()

    asyncio.run(scenario())


def test_a_hand_back_without_a_note_still_resumes_the_agent() -> None:
    async def scenario() -> None:
        session = ScriptedSession()
        bridge, _, _ = await _bridge(session)
        await bridge.detach()
        await bridge.reattach()
        await bridge.reattach("ignored: already attached")
        await bridge.instruct("Offer the loyalty discount")
        assert session.resumes == [None]
        assert session.instructions == ["Offer the loyalty discount"]
        await bridge.close()

    asyncio.run(scenario())


def test_what_was_said_is_redacted_before_any_event_leaves_the_worker() -> None:
    async def scenario() -> None:
        session = ScriptedSession()
        bridge, _port, outlet = await _bridge(session)
        said: list[tuple[EventKind, dict[str, object]]] = [
            (
                EventKind.CALLER_TRANSCRIPT,
                {"text": "my card is forty-one eleven, " + " ".join(["eleven"] * 6)},
            ),
            (EventKind.AGENT_TRANSCRIPT, {"text": "And the security code on the back?"}),
            (EventKind.CALLER_TRANSCRIPT, {"text": "one two three"}),
            (EventKind.REPLY, {"item_id": "i1", "facts": {"email": "jane@example.com"}}),
        ]
        for kind, data in said:
            session.out.put_nowait(SessionEvent(kind, data))
        for _ in range(50):
            if len(outlet.events) >= len(said):
                break
            await asyncio.sleep(0.01)
        shown = [event.data for event in outlet.events if event.kind is CallEventKind.AGENT]
        assert [data.get("text") for data in shown[:3]] == [
            "my card is [card]",
            "And the security code on the back?",
            "[security_code]",  # an answer to the agent's question about the code
        ]
        assert shown[3]["facts"] == {"email": "[email]"}
        await bridge.close()

    asyncio.run(scenario())


def test_during_a_pci_pause_no_word_said_reaches_an_event() -> None:
    async def scenario() -> None:
        session = ScriptedSession()
        bridge, _port, outlet = await _bridge(session)
        bridge.pci_paused = True
        said: list[tuple[EventKind, dict[str, object]]] = [
            (EventKind.CALLER_TRANSCRIPT, {"text": "four one one one one one one one"}),
            (EventKind.REPLY, {"item_id": "i1", "facts": {"card": "4111111111111111"}}),
            (EventKind.AGENT_TRANSCRIPT, {"utterance_id": "u1", "text": "Ending 1111?"}),
            (EventKind.END_OF_TURN, {"item_id": "i1", "endpointing_ms": 400}),
        ]
        for kind, data in said:
            session.out.put_nowait(SessionEvent(kind, data))
        for _ in range(50):
            if len(outlet.events) >= len(said):
                break
            await asyncio.sleep(0.01)
        shown = [event.data for event in outlet.events if event.kind is CallEventKind.AGENT]
        assert shown == [
            {"event": "caller_transcript", "text": "", "pci_paused": True},
            {"event": "reply", "item_id": "i1", "facts": {}, "pci_paused": True},
            {"event": "agent_transcript", "utterance_id": "u1", "text": "", "pci_paused": True},
            {"event": "end_of_turn", "item_id": "i1", "endpointing_ms": 400},
        ]
        await bridge.close()

    asyncio.run(scenario())


def test_the_agent_asking_for_a_card_pauses_before_its_words_and_resumes_after_its_thanks() -> None:
    async def scenario() -> None:
        session = ScriptedSession()
        calls: list[bool] = []

        def collecting(on: bool) -> None:  # what the worker does: pause, resume
            calls.append(on)
            bridge.pci_paused = on

        bridge, _port, outlet = await _bridge(session, on_sensitive=collecting)
        said: list[tuple[EventKind, dict[str, object]]] = [
            (EventKind.REPLY, {"item_id": "i1", "facts": {}, "sensitive": True}),
            (EventKind.AGENT_TRANSCRIPT, {"utterance_id": "i1", "text": "Your card number?"}),
            (EventKind.CALLER_TRANSCRIPT, {"text": "4532 0151 1283 0366"}),
            (EventKind.REPLY, {"item_id": "i2", "facts": {"zip": "94105"}, "sensitive": False}),
            (EventKind.AGENT_TRANSCRIPT, {"utterance_id": "i2", "text": "Thanks, updated."}),
        ]
        for kind, data in said:
            session.out.put_nowait(SessionEvent(kind, data))
        for _ in range(50):
            if len(outlet.events) >= len(said):
                break
            await asyncio.sleep(0.01)
        shown = [event.data for event in outlet.events if event.kind is CallEventKind.AGENT]
        assert calls == [True, False]
        assert shown == [
            {"event": "reply", "item_id": "i1", "facts": {}, "sensitive": True, "pci_paused": True},
            {"event": "agent_transcript", "utterance_id": "i1", "text": "", "pci_paused": True},
            {"event": "caller_transcript", "text": "", "pci_paused": True},
            # The reply that ends it was made while paused: its facts go out withheld.
            {
                "event": "reply",
                "item_id": "i2",
                "facts": {},
                "sensitive": False,
                "pci_paused": True,
            },
            {"event": "agent_transcript", "utterance_id": "i2", "text": "Thanks, updated."},
        ]
        await bridge.close()

    asyncio.run(scenario())
