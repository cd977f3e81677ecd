"""The escalation service's decisions without processes: event -> observation, the callback
keypad, and the service driven by scripted live events with a fake worker and a fake clock."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from pathlib import Path

import pytest

from escalation.acd import FallbackKind, QueuePolicy
from escalation.observations import CallbackEntry, observation_for
from escalation.service import EscalationService, ServiceConfig, SupervisorSpec, with_defaults
from escalation.triggers import (
    CallerDigit,
    CallerUtterance,
    ModelFailure,
    ResponderTurn,
    TriggerPolicy,
)
from telephony import commands
from telephony.commands import Command, Reply
from telephony.events import CallEvent, CallEventKind, MemoryOutlet

CALL = "c1"


def event(kind: CallEventKind, **data: object) -> CallEvent:
    return CallEvent(CALL, kind, dict(data))


# --- event -> observation --------------------------------------------------------------------


def test_observations_from_events() -> None:
    assert observation_for(event(CallEventKind.DTMF, digit="0")) == CallerDigit("0")
    assert observation_for(event(CallEventKind.SESSION_FAILED, error="x")) == ModelFailure(
        "session_failed"
    )
    handoff = event(CallEventKind.AGENT, event="handoff_requested", reason="dtmf_0")
    assert observation_for(handoff) == ResponderTurn(True, 1.0, "dtmf_0")
    said = event(CallEventKind.AGENT, event="caller_transcript", text="a person please")
    assert observation_for(said) == CallerUtterance("a person please")
    partial = event(CallEventKind.AGENT, event="caller_transcript", text="a per", final=False)
    assert observation_for(partial) is None
    assert observation_for(event(CallEventKind.AGENT, event="agent_transcript", text="hi")) is None
    assert observation_for(event(CallEventKind.ANSWERED)) is None


def test_an_unknown_handoff_reason_still_asks_for_a_person() -> None:
    handoff = event(CallEventKind.AGENT, event="handoff_requested", reason="new_reason")
    assert observation_for(handoff) == ResponderTurn(True, 1.0, "caller_asked")


@pytest.mark.parametrize(
    "bad",
    [
        event(CallEventKind.DTMF),
        event(CallEventKind.DTMF, digit="x"),
        event(CallEventKind.AGENT, event="caller_transcript", text=7),
    ],
)
def test_malformed_events_raise_value_error(bad: CallEvent) -> None:
    with pytest.raises(ValueError):
        observation_for(bad)


# --- the callback keypad ---------------------------------------------------------------------


def typed(keys: str) -> CallbackEntry:
    entry = CallbackEntry()
    for key in keys:
        entry = entry.key(key)
    return entry


def test_a_callback_number_ends_with_hash() -> None:
    assert typed("5551234#").number == "5551234"
    assert typed("5551234").number is None
    assert typed("55*5551234#").number == "5551234"  # * starts again
    assert typed("0#").number is None  # a stray key, not a number
    assert typed("0#555123#").number == "555123"
    assert typed("555123#99#").number == "555123"  # complete: later keys change nothing
    assert "555" not in repr(typed("5551234#"))


# --- the service, scripted -------------------------------------------------------------------


class FakeWorker:
    def __init__(self) -> None:
        self.sent: list[Command] = []
        self.refuse: set[str] = set()

    async def __call__(self, command: Command, worker: int | None) -> Reply:
        self.sent.append(command)
        if command.TYPE in self.refuse:
            return Reply.failure(command.command_id, "cannot")
        return Reply(command.command_id, True)

    def types(self) -> list[str]:
        return [c.TYPE for c in self.sent]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(
    tmp: Path,
    *,
    fallback: FallbackKind = FallbackKind.AI,
    supervisors: int = 1,
    announce_interval_s: float = 30.0,
) -> tuple[EscalationService, FakeWorker, MemoryOutlet, Clock]:
    queue = QueuePolicy(
        "default",
        max_wait_s=10,
        offer_timeout_s=4,
        service_level_target_s=5,
        fallback=fallback,
        announce_interval_s=announce_interval_s,
    )
    config = ServiceConfig(
        queues=with_defaults((queue,)),
        supervisors=tuple(
            SupervisorSpec(f"s{i}", f"sip:s{i}@127.0.0.1:5060", frozenset({"default"}))
            for i in range(supervisors)
        ),
        line_policies={"main": TriggerPolicy()},
        line_queues={},
        default_line="main",
        workers=1,
        run_dir=tmp,
    )
    worker, outlet, clock = FakeWorker(), MemoryOutlet(), Clock()
    return EscalationService(config, outlet, worker, clock=clock), worker, outlet, clock


def transitions(outlet: MemoryOutlet) -> list[str]:
    return [str(e.data["event"]) for e in outlet.events if e.kind is CallEventKind.ESCALATION]


async def start(service: EscalationService) -> None:
    await service.handle(event(CallEventKind.STARTED, line="main", worker=0))
    await service.handle(event(CallEventKind.PHASE, phase="with_agent"))


async def press_zero(service: EscalationService) -> None:
    await service.handle(event(CallEventKind.DTMF, digit="0"))
    await service.handle(event(CallEventKind.PHASE, phase="queued"))


def test_dtmf_zero_holds_queues_offers_and_connects(tmp_path: Path) -> None:
    async def scenario() -> None:
        service, worker, outlet, clock = make(tmp_path)
        await start(service)
        await press_zero(service)
        # A free supervisor is rung at once, not at the queue's next tick.
        assert worker.types() == ["hold", "attach_leg"]
        await service.tick()
        assert worker.types() == ["hold", "attach_leg"]
        attach = worker.sent[-1]
        assert isinstance(attach, commands.AttachLeg) and attach.uri == "sip:s0@127.0.0.1:5060"
        await service.handle(event(CallEventKind.SUPERVISOR, event="ringing"))
        clock.now += 1
        await service.handle(event(CallEventKind.SUPERVISOR, event="answered"))
        assert transitions(outlet) == ["request", "enqueue", "offer", "accept", "connect"]
        first = outlet.events[0].data
        assert first["reason"] == "dtmf_zero" and first["from"] is None
        assert len({e.data["escalation_id"] for e in outlet.events}) == 1
        # Takeover, then hand back on the keypad: with the agent again.
        await service.handle(event(CallEventKind.PHASE, phase="with_human", mode="takeover"))
        await service.handle(event(CallEventKind.PHASE, phase="with_agent"))
        await service.handle(event(CallEventKind.SUPERVISOR, event="ended", by="parley"))
        assert transitions(outlet)[-1] == "hand_back"
        assert outlet.events[-1].data["to"] == "returned_to_ai"
        assert service.distributor.supervisor("s0").state.value == "wrap_up"
        # Re-armed: the caller can ask again.
        await service.handle(event(CallEventKind.DTMF, digit="0"))
        assert transitions(outlet)[-2:] == ["request", "enqueue"]

    asyncio.run(scenario())


def test_nobody_answers_falls_back_to_the_agent(tmp_path: Path) -> None:
    async def scenario() -> None:
        service, worker, outlet, clock = make(tmp_path)
        await start(service)
        await press_zero(service)
        await service.tick()  # offered
        await service.handle(event(CallEventKind.SUPERVISOR, event="ended", status=486))
        assert transitions(outlet)[-1] == "decline"
        clock.now += 11
        await service.tick()
        assert transitions(outlet)[-1] == "hand_back"
        reattach = worker.sent[-1]
        assert isinstance(reattach, commands.ReattachAgent) and "apologise" in (reattach.note or "")
        assert outlet.events[-1].data["to"] == "returned_to_ai"
        assert worker.types().count("attach_leg") == 1  # the declining phone rested

    asyncio.run(scenario())


def test_an_unanswered_offer_times_out_and_the_leg_is_dropped(tmp_path: Path) -> None:
    async def scenario() -> None:
        service, worker, outlet, clock = make(tmp_path)
        await start(service)
        await press_zero(service)
        await service.tick()
        clock.now += 4.5
        await service.tick()
        assert "offer_timed_out" in transitions(outlet)
        assert "detach_leg" in worker.types()
        # The old leg answers late: dropped again, not counted as the escalation's.
        await service.handle(event(CallEventKind.SUPERVISOR, event="answered"))
        assert "accept" not in transitions(outlet)

    asyncio.run(scenario())


def test_the_caller_hangs_up_while_queued(tmp_path: Path) -> None:
    async def scenario() -> None:
        service, _, outlet, clock = make(tmp_path, supervisors=0)
        await start(service)
        await press_zero(service)
        clock.now += 1
        await service.handle(event(CallEventKind.ENDED, reason="caller"))
        assert transitions(outlet)[-1] == "call_ended"
        assert outlet.events[-1].data["to"] == "abandoned"
        assert CALL not in service.calls

    asyncio.run(scenario())


def test_a_callback_number_typed_while_queued(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        service, worker, outlet, clock = make(
            tmp_path, fallback=FallbackKind.CALLBACK, supervisors=0
        )
        await start(service)
        await press_zero(service)
        clock.now += 11
        await service.tick()  # the fallback: the agent asks for a number
        assert worker.types()[-1] == "reattach_agent"
        await service.handle(event(CallEventKind.PHASE, phase="with_agent"))
        for key in "5550199#":
            await service.handle(event(CallEventKind.DTMF, digit=key))
        taken = outlet.events[-1]
        assert taken.data["event"] == "take_callback" and taken.data["to"] == "callback"
        assert taken.data["callback_number"] == "5550199"
        assert "request" not in transitions(outlet)[2:]  # the 0 in it did not escalate again

    with caplog.at_level(logging.DEBUG):
        asyncio.run(scenario())
    assert "5550199" not in caplog.text
    assert all("5550199" not in json.dumps(r.__dict__, default=str) for r in caplog.records)


def test_a_failed_hold_gives_the_call_back_and_bad_events_are_skipped(tmp_path: Path) -> None:
    async def scenario() -> None:
        service, worker, outlet, _ = make(tmp_path)
        worker.refuse.add("hold")
        await service.handle(CallEvent(CALL, CallEventKind.PHASE, {"phase": 7}))
        await service.handle(event(CallEventKind.DTMF, digit="??"))
        await start(service)
        await service.handle(event(CallEventKind.DTMF, digit="0"))
        assert transitions(outlet) == ["request", "hand_back"]

    asyncio.run(scenario())


# --- a restarted service --------------------------------------------------------------------


class StatusWorker(FakeWorker):
    """Answers Status as a worker would: the call's phase, or that it holds no such call."""

    def __init__(self, calls: dict[str, dict[str, object]]) -> None:
        super().__init__()
        self.calls = calls

    async def __call__(self, command: Command, worker: int | None) -> Reply:
        if isinstance(command, commands.Status):
            self.sent.append(command)
            state = self.calls.get(command.call_id)
            if state is None:
                return Reply.failure(command.command_id, "holds no live call")
            return Reply.success(command.command_id, dict(state))
        return await super().__call__(command, worker)


def test_a_restarted_service_picks_up_its_waiting_callers(tmp_path: Path) -> None:
    async def scenario() -> None:
        first, _worker, _outlet, clock = make(tmp_path, supervisors=0)
        first.config = dataclasses.replace(first.config, state_file=tmp_path / "state.json")
        await start(first)
        await press_zero(first)
        gone = CallEvent("c2", CallEventKind.STARTED, {"line": "main", "worker": 0})
        await first.handle(gone)
        await first.handle(CallEvent("c2", CallEventKind.DTMF, {"digit": "0"}))
        saved = json.loads((tmp_path / "state.json").read_text())
        assert {e["call_id"] for e in saved["escalations"]} == {"c1", "c2"}

        # The service dies; c2's caller hangs up meanwhile; a new service starts.
        second, _, outlet, _ = make(tmp_path, supervisors=1)
        second.config = dataclasses.replace(second.config, state_file=tmp_path / "state.json")
        second.clock = clock
        worker = StatusWorker({"c1": {"phase": "queued", "supervisor": False, "ringing": False}})
        second.send = worker
        clock.now += 3
        await second._recover()
        assert set(second.calls) == {"c1"}
        assert second.distributor.position("c1", clock.now) is not None
        await second.tick()  # the supervisor who is now free is offered the waiting caller
        assert worker.types()[-1] == "attach_leg"
        assert transitions(outlet) == ["offer"]
        saved = json.loads((tmp_path / "state.json").read_text())
        assert [(e["call_id"], e["state"]) for e in saved["escalations"]] == [("c1", "offered")]

    asyncio.run(scenario())


def test_a_broken_state_file_is_survived(tmp_path: Path) -> None:
    async def scenario() -> None:
        service, worker, _, _ = make(tmp_path)
        path = tmp_path / "state.json"
        service.config = dataclasses.replace(service.config, state_file=path)
        for garbage in (b"{not json", b'{"version": 1, "escalations": [{"call_id": 3}]}'):
            path.write_bytes(garbage)
            await service._recover()
            assert service.calls == {} and worker.sent == []

    asyncio.run(scenario())


def test_a_supervisor_who_steps_in_is_an_escalation_of_their_own(tmp_path: Path) -> None:
    async def scenario() -> None:
        service, _worker, outlet, _clock = make(tmp_path, supervisors=2)
        await start(service)
        rung = {"command": "attach_leg", "actor": "api:boss", "uri": "sip:s1@127.0.0.1:5060"}
        await service.handle(event(CallEventKind.COMMAND, **rung))
        await service.handle(event(CallEventKind.SUPERVISOR, event="ringing"))
        await service.handle(event(CallEventKind.SUPERVISOR, event="answered"))
        assert transitions(outlet) == ["request", "accept", "connect"]
        first = outlet.events[0].data
        assert first["reason"] == "supervisor_initiative" and first["actor"] == "supervisor:s1"
        assert service.distributor.supervisor("s1").state.value == "busy"
        # Their leg ends: handed back to the agent, and they are free again after wrap-up.
        await service.handle(event(CallEventKind.SUPERVISOR, event="ended", by="supervisor"))
        assert transitions(outlet)[-1] == "hand_back"
        assert outlet.events[-1].data["to"] == "returned_to_ai"
        # A leg the service rang itself is not one of these.
        await service.handle(event(CallEventKind.COMMAND, **(rung | {"actor": "escalation"})))
        await service.handle(event(CallEventKind.SUPERVISOR, event="answered"))
        assert transitions(outlet)[-1] == "hand_back"

    asyncio.run(scenario())
