"""The warm-handoff briefing and the queue announcements: the pure text, and the escalation
service asking for them to be spoken (a stand-in voice, a fake worker and clock)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from escalation.briefing import Briefing, CallNotes, announcement, mood_of
from escalation.observations import observation_for
from escalation.service import TRANSFER_PROMPT
from escalation.triggers import CallerUtterance, ResponderTurn
from telephony import commands
from telephony.events import CallEvent, CallEventKind
from telephony.mixing import Leg
from tests.test_escalation_service_units import event, make, press_zero, start, transitions


def agent(**data: object) -> CallEvent:
    return CallEvent("c1", CallEventKind.AGENT, dict(data))


def notes_of(*events: CallEvent) -> CallNotes:
    notes = CallNotes()
    for e in events:
        notes.observe(e)
    return notes


CONVERSATION = (
    agent(event="caller_transcript", text="I want to check my order"),
    agent(event="reply", intent="order_status", understood=True, confidence=0.9, facts={}),
    agent(event="agent_transcript", text="Sure. What is your order number?"),
    agent(event="caller_transcript", text="it is 4567 and my card is 4111111111111111"),
    agent(
        event="reply",
        intent="order_status",
        understood=True,
        confidence=1.0,
        facts={"order_number": "4567", "card": "4111111111111111"},
    ),
    agent(event="caller_transcript", text="partial", final=False),
    agent(event="reply", understood=False, confidence=0.2, facts="not a mapping"),
    agent(event="caller_transcript", text="this is useless, get me a person"),
)


def test_the_briefing_says_reason_mood_topic_facts_and_words() -> None:
    notes = notes_of(*CONVERSATION)
    assert (notes.turns, notes.misses, notes.intent) == (3, 1, "order_status")
    briefing = Briefing.of(
        notes, reason="frustration", queue="billing", waited_s=75, mood="frustrated"
    )
    said = briefing.spoken()
    assert "billing queue, waiting 1 minute" in said
    assert "Reason: the caller is frustrated." in said
    assert "The caller seems frustrated." in said
    assert "Topic: order status." in said
    assert "order number: 4 5 6 7" in said
    assert "4111" not in said.replace(" ", "") and "ending in 1 1 1 1" in said  # masked
    assert "The caller said: this is useless, get me a person." in said
    assert "The agent last said: Sure. What is your order number?" in said
    assert "did not understand the caller once" in said
    assert said.endswith("5 to hand back.")
    data: dict[str, Any] = briefing.as_data()
    assert data["facts"] == {"order_number": "4567", "card": "ending in 1111"}
    assert data["caller_said"][-1] == "this is useless, get me a person"


def test_a_briefing_of_a_call_nobody_spoke_on() -> None:
    said = Briefing.of(CallNotes(), reason="dtmf_zero", queue="default", waited_s=0.2, mood="calm")
    text = said.spoken()
    assert text.startswith("A call from the default queue, waiting 1 second.")
    assert "pressed the key for a person" in text and "Facts" not in text


def test_mood_and_announcements() -> None:
    assert [mood_of(s, 1.75) for s in (0.0, 0.9, 1.0, 1.8)] == [
        "calm",
        "impatient",
        "impatient",
        "frustrated",
    ]
    assert "You are next in line." in announcement(1, None)
    assert "as soon as possible" in announcement(1, None)
    assert "number 3 in line" in announcement(3, 30.0) and "less than a minute" in announcement(
        3, 30
    )
    assert "about 2 minutes" in announcement(2, 130.0)
    assert "about 1 minute." in announcement(2, 70.0)


def test_the_callers_level_feeds_the_raised_voice_cue() -> None:
    said = agent(event="caller_transcript", text="this is wrong", level_dbfs=-12.5)
    assert observation_for(said) == CallerUtterance("this is wrong", -12.5)
    for level in (3.0, float("nan"), "loud", None):
        bad = agent(event="caller_transcript", text="this is wrong", level_dbfs=level)
        assert observation_for(bad) == CallerUtterance("this is wrong")


def test_the_responders_reading_feeds_the_triggers() -> None:
    reply = agent(event="reply", intent=None, understood=False, confidence=0.25, facts={})
    assert observation_for(reply) == ResponderTurn(False, 0.25)
    for bad in (
        agent(event="reply", understood="no", confidence=0.2),
        agent(event="reply", understood=True),
        agent(event="reply", understood=True, confidence=float("nan")),
    ):
        try:
            observation_for(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad.data} was taken")


class Voice:
    """Stands in for the Piper voice: a fake hash per text."""

    def __init__(self, *, fail: bool = False) -> None:
        self.said: list[str] = []
        self.fail = fail

    async def __call__(self, text: str) -> str:
        if self.fail:
            raise RuntimeError("no voice")
        self.said.append(text)
        return f"{len(self.said):064x}"


async def _settle(service: object) -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_the_offer_carries_the_summary_and_the_supervisor_is_briefed(tmp_path: Path) -> None:
    async def scenario() -> None:
        service, worker, outlet, _clock = make(tmp_path)
        voice = service.speak = Voice()
        await start(service)
        for e in CONVERSATION[:2]:
            await service.handle(CallEvent("c1", e.kind, e.data))
        await press_zero(service)
        await _settle(service)
        offer = next(e for e in outlet.events if e.data["event"] == "offer")
        summary: dict[str, Any] = offer.data["summary"]  # type: ignore[assignment]
        assert summary["reason"] == "dtmf_zero" and summary["intent"] == "order_status"
        assert summary["waited_s"] == 0.0
        assert voice.said and voice.said[0].startswith("A call from the default queue")
        [brief] = [c for c in worker.sent if isinstance(c, commands.PlayPrompt)]
        assert brief.to is Leg.SUPERVISOR and brief.speech == f"{1:064x}"
        assert [e for e in outlet.events if "summary" in e.data] == [offer]
        # Answered: the caller is told a person is joining.
        await service.handle(event(CallEventKind.SUPERVISOR, event="answered"))
        await _settle(service)
        assert voice.said[-1] == TRANSFER_PROMPT
        told = [c for c in worker.sent if isinstance(c, commands.PlayPrompt)][-1]
        assert told.to is Leg.CALLER and told.speech == f"{2:064x}"

    asyncio.run(scenario())


def test_waiting_callers_hear_announcements_and_a_broken_voice_is_survived(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        service, worker, outlet, clock = make(tmp_path, supervisors=0, announce_interval_s=3)
        voice = service.speak = Voice()
        await start(service)
        await press_zero(service)
        clock.now += 3.5
        await service.tick()
        await _settle(service)
        assert voice.said == [announcement(1, None)]
        [played] = [c for c in worker.sent if isinstance(c, commands.PlayPrompt)]
        assert played.to is Leg.CALLER and played.speech is not None
        # A voice that fails: nothing is played, the queue goes on.
        service.speak = Voice(fail=True)
        clock.now += 3
        await service.tick()
        await _settle(service)
        assert len([c for c in worker.sent if isinstance(c, commands.PlayPrompt)]) == 1
        assert transitions(outlet)[:2] == ["request", "enqueue"]
        await service.handle(event(CallEventKind.ENDED))

    asyncio.run(scenario())
