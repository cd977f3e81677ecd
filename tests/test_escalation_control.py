"""The escalation service's inbox commands (escalation.control) on a scripted service with a
fake worker and a fake clock, and one round trip through a real Unix-socket inbox."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from escalation.commands import (
    CODEC,
    Accept,
    Decline,
    EscalationCommand,
    Presence,
    PresenceState,
    Snapshot,
    escalation_inbox_path,
)
from escalation.control import ServiceControl, control_inbox
from telephony import commands
from telephony.inbox import send_command
from tests.test_escalation_service_units import CALL, make, press_zero, start, transitions


def test_presence_away_keeps_calls_from_a_supervisor_until_they_are_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        service, worker, _outlet, _clock = make(tmp_path)
        control = ServiceControl(service)
        away = await control.handle(
            Presence(actor="user:s0", supervisor="s0", state=PresenceState.AWAY)
        )
        assert away.ok
        await start(service)
        await press_zero(service)
        await service.tick()
        assert worker.types() == ["hold"]  # nobody to offer it to
        snapshot = await control.handle(Snapshot(actor="user:admin"))
        (queue,) = [q for q in snapshot.data["queues"] if q["name"] == "default"]
        assert queue["waiting"] == 1 and queue["calls"][0]["position"] == 1
        assert queue["calls"][0]["reason"] == "dtmf_zero"
        assert snapshot.data["supervisors"][0]["state"] == "away"
        back = await control.handle(
            Presence(actor="user:s0", supervisor="s0", state=PresenceState.AVAILABLE)
        )
        assert back.ok and worker.types() == ["hold", "attach_leg"]  # rung at once

    asyncio.run(scenario())


def test_accept_rings_the_supervisor_who_asks_out_of_turn(tmp_path: Path) -> None:
    async def scenario() -> None:
        service, worker, outlet, _clock = make(tmp_path, supervisors=2)
        control = ServiceControl(service)
        for name in ("s0", "s1"):  # away: the call waits (a free one would be rung at once)
            away = Presence(actor=f"user:{name}", supervisor=name, state=PresenceState.AWAY)
            assert (await control.handle(away)).ok
        await start(service)
        await press_zero(service)
        assert worker.types() == ["hold"]
        ref = service.calls[CALL].escalation_id
        reply = await control.handle(Accept(actor="user:s1", supervisor="s1", escalation_id=ref))
        assert reply.ok and reply.data == {
            "call_id": CALL,
            "escalation_id": ref,
            "supervisor": "s1",
        }
        attach = worker.sent[-1]
        assert isinstance(attach, commands.AttachLeg) and attach.uri == "sip:s1@127.0.0.1:5060"
        assert transitions(outlet)[-1] == "offer" and outlet.events[-1].data["supervisor"] == "s1"
        snapshot = await control.handle(Snapshot(actor="user:admin"))
        (queue,) = [q for q in snapshot.data["queues"] if q["name"] == "default"]
        assert queue["calls"][0]["offered_to"] == "s1" and queue["calls"][0]["position"] is None
        s1 = next(s for s in snapshot.data["supervisors"] if s["name"] == "s1")
        assert (s1["offered_call_id"], s1["call_id"]) == (CALL, CALL)
        again = await control.handle(Accept(actor="user:s0", supervisor="s0", call_id=CALL))
        assert (again.ok, again.data["code"]) == (False, "conflict")  # it rings s1

    asyncio.run(scenario())


def test_decline_withdraws_the_offer_rests_them_and_offers_the_next(tmp_path: Path) -> None:
    async def scenario() -> None:
        service, worker, outlet, _clock = make(tmp_path, supervisors=2)
        control = ServiceControl(service)
        await start(service)
        await press_zero(service)
        await service.tick()
        offered_to = outlet.events[-1].data["supervisor"]
        assert isinstance(offered_to, str)
        reply = await control.handle(Decline(actor="user:x", supervisor=offered_to))
        assert reply.ok and reply.data["call_id"] == CALL
        assert worker.types() == ["hold", "attach_leg", "detach_leg", "attach_leg"]
        assert transitions(outlet)[-3:] == ["offer", "decline", "offer"]
        assert outlet.events[-1].data["supervisor"] != offered_to
        assert service.distributor.supervisor(offered_to).state.value == "away"  # resting

    asyncio.run(scenario())


def test_refusals_say_why_with_a_code(tmp_path: Path) -> None:
    async def scenario() -> None:
        service, _worker, _outlet, _clock = make(tmp_path)
        control = ServiceControl(service)
        cases: list[tuple[EscalationCommand, str]] = [
            (Presence(actor="a", supervisor="nobody", state=PresenceState.AWAY), "not_found"),
            (Accept(actor="a", supervisor="s0", call_id="no-such-call"), "not_found"),
            (Decline(actor="a", supervisor="s0"), "conflict"),
        ]
        for command, code in cases:
            reply = await control.handle(command)
            assert (reply.ok, reply.data["code"]) == (False, code), reply
            assert reply.error

    asyncio.run(scenario())


def test_commands_travel_through_the_service_inbox() -> None:
    async def scenario(run_dir: Path) -> None:
        service, _worker, _outlet, _clock = make(run_dir)
        inbox = control_inbox(service.config)
        await inbox.start(ServiceControl(service).handle)
        try:
            path = escalation_inbox_path(run_dir)
            assert path.stat().st_mode & 0o777 == 0o600
            reply = await send_command(path, Snapshot(actor="user:admin"), codec=CODEC)
            assert reply.ok and reply.data["supervisors"][0]["name"] == "s0"
        finally:
            await inbox.close()

    with tempfile.TemporaryDirectory(dir="/tmp") as run_dir:  # short: a socket path
        asyncio.run(scenario(Path(run_dir)))
