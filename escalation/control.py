"""The escalation service's inbox: presence, accept, decline and snapshot, carried out.

`ServiceControl.handle` is the inbox's handler (telephony.inbox with escalation.commands.CODEC).
Each command runs between live events and ticks (`EscalationService.controlled`), so it sees
and changes the queues as they are; what it sets moving in the distributor (an offer to ring,
one to withdraw) is carried out by the tick that follows at once, through the service's usual
path: the worker rings the phone or stops it, and each step of the escalation is recorded as
a `call.escalation` event.

A failure's reply carries `data.code`: `not_found` (no such supervisor, or no such waiting
call), `conflict` (the queues cannot do it now; the error says why) or `bad_request`.
"""

from __future__ import annotations

import functools
from typing import Any

from escalation import lifecycle
from escalation.acd import AcdError, SupervisorState
from escalation.commands import (
    CODEC,
    INBOX,
    Accept,
    Decline,
    EscalationCommand,
    Presence,
    Snapshot,
    escalation_inbox_path,
)
from escalation.service import EscalationService, LiveCall, ServiceConfig
from telephony.commands import Reply
from telephony.inbox import Inbox, RedisInbox, UnixInbox

SNAPSHOT_CALLS = 40  # waiting calls listed at most, so the reply stays within a message


def control_inbox(config: ServiceConfig) -> Inbox:
    """The service's inbox: the Redis list `parley:commands:escalation` when Redis is set,
    else the socket `<run_dir>/escalation.cmd.sock` (0600)."""
    if config.redis_url:
        return RedisInbox(config.redis_url, INBOX, codec=CODEC)
    return UnixInbox(escalation_inbox_path(config.run_dir), codec=CODEC)


class ServiceControl:
    def __init__(self, service: EscalationService) -> None:
        self.service = service

    async def handle(self, command: EscalationCommand) -> Reply:
        match command:
            case Presence():
                work = functools.partial(self._presence, command)
            case Accept():
                work = functools.partial(self._accept, command)
            case Decline():
                work = functools.partial(self._decline, command)
            case Snapshot():
                work = functools.partial(self._snapshot, command)
        return await self.service.controlled(work)

    # --- the commands ------------------------------------------------------------------------

    def _presence(self, command: Presence, now: float) -> Reply:
        name = command.supervisor
        if (unknown := self._unknown(command.command_id, name)) is not None:
            return unknown
        distributor = self.service.distributor
        if distributor.supervisor(name).state is SupervisorState.BUSY:
            return _failure(
                command.command_id, "conflict", f"supervisor {name} is on a call; after it, then"
            )
        self.service.rest(name, now, resting=False)
        distributor.supervisor_state_changed(name, SupervisorState(command.state.value), now=now)
        return Reply.success(command.command_id, {"supervisor": name, "state": command.state})

    def _accept(self, command: Accept, now: float) -> Reply:
        name = command.supervisor
        if (unknown := self._unknown(command.command_id, name)) is not None:
            return unknown
        call = self._waiting_call(command)
        if call is None:
            which = command.call_id or command.escalation_id
            return _failure(command.command_id, "not_found", f"no call waits for a person: {which}")
        try:
            self.service.distributor.offer_to(call.call_id, supervisor_id=name, now=now)
        except AcdError as error:
            return _failure(command.command_id, "conflict", str(error))
        return Reply.success(
            command.command_id,
            {"call_id": call.call_id, "escalation_id": call.escalation_id, "supervisor": name},
        )

    def _decline(self, command: Decline, now: float) -> Reply:
        name = command.supervisor
        if (unknown := self._unknown(command.command_id, name)) is not None:
            return unknown
        ringing = self._ringing(name)
        if ringing is None or command.escalation_id not in (None, ringing.escalation_id):
            return _failure(
                command.command_id, "conflict", f"that call is not ringing supervisor {name}"
            )
        self.service.rest(name, now, resting=True)  # withdraws the offer: the next one gets it
        return Reply.success(
            command.command_id,
            {
                "call_id": ringing.call_id,
                "escalation_id": ringing.escalation_id,
                "supervisor": name,
            },
        )

    def _snapshot(self, command: Snapshot, now: float) -> Reply:
        return Reply.success(
            command.command_id, {"queues": self._queues(now), "supervisors": self._supervisors()}
        )

    # --- what a snapshot shows ---------------------------------------------------------------

    def _queues(self, now: float) -> list[dict[str, Any]]:
        distributor = self.service.distributor
        listed = 0
        queues = []
        for policy in self.service.config.queues:
            calls = []
            for call in self._waiting_in(policy.name, now):
                waiting = distributor.waiting_call(call.call_id)
                offer = distributor.offer(call.call_id)
                assert waiting is not None and call.escalation is not None
                position = distributor.position(call.call_id, now)
                expected = distributor.expected_wait_s(policy.name, position) if position else None
                calls.append(
                    {
                        "call_id": call.call_id,
                        "escalation_id": call.escalation_id,
                        "reason": call.escalation.reason,
                        "waited_s": round(max(0.0, now - waiting.queued_at), 1),
                        "position": position,
                        "expected_wait_s": None if expected is None else round(expected, 1),
                        "offered_to": offer.supervisor_id if offer else None,
                    }
                )
            shown = calls[: max(0, SNAPSHOT_CALLS - listed)]
            listed += len(shown)
            share = distributor.service_level(policy.name).share
            queues.append(
                {
                    "name": policy.name,
                    "waiting": len(calls),
                    "calls": shown,
                    "service_level": None if share is None else round(share, 3),
                }
            )
        return queues

    def _waiting_in(self, queue: str, now: float) -> list[LiveCall]:
        """The queue's calls, the one ringing a supervisor first, then in the order offered."""
        distributor = self.service.distributor
        calls = [
            call
            for call in self.service.calls.values()
            if call.escalation is not None
            and call.escalation.state in lifecycle.WAITING_STATES
            and (waiting := distributor.waiting_call(call.call_id)) is not None
            and waiting.queue == queue
        ]
        return sorted(calls, key=lambda call: distributor.position(call.call_id, now) or 0)

    def _supervisors(self) -> list[dict[str, Any]]:
        shown = []
        for name, spec in self.service.supervisors.items():
            try:
                state = self.service.distributor.supervisor(name).state
            except AcdError:
                continue  # never joined: it serves an unknown queue (logged at start)
            on_call = next(
                (c.call_id for c in self.service.calls.values() if name in (c.busy, c.leg_of)),
                None,
            )
            ringing = self._ringing(name)
            shown.append(
                {
                    "name": name,
                    "state": state.value,
                    "queues": sorted(spec.queues),
                    "call_id": on_call,
                    "offered_call_id": ringing.call_id if ringing else None,
                }
            )
        return shown

    # --- helpers -----------------------------------------------------------------------------

    def _unknown(self, command_id: str, name: str) -> Reply | None:
        if name in self.service.supervisors:
            return None
        return _failure(command_id, "not_found", f"no supervisor named {name!r}")

    def _waiting_call(self, command: Accept) -> LiveCall | None:
        if command.call_id is not None:
            call = self.service.calls.get(command.call_id)
        else:
            call = next(
                (
                    c
                    for c in self.service.calls.values()
                    if c.escalation_id == command.escalation_id
                ),
                None,
            )
        if call is None or call.escalation is None:
            return None
        return call if call.escalation.state in lifecycle.WAITING_STATES else None

    def _ringing(self, supervisor: str) -> LiveCall | None:
        for call in self.service.calls.values():
            offer = self.service.distributor.offer(call.call_id)
            if offer is not None and offer.supervisor_id == supervisor:
                return call
        return None


def _failure(command_id: str, code: str, error: str) -> Reply:
    return Reply(command_id, False, error, {"code": code})
