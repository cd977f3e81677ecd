"""Where the API sends commands: the media workers' inboxes and the escalation service's.

Built once from the settings (`ControlPlane.from_settings`) and kept in the API's context. The
sending is async (telephony.inbox); routes are plain functions run in a worker thread, so they
hand each send to the event loop (`anyio.from_thread`) and wait there, never blocking it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import anyio.from_thread

from escalation.commands import CODEC, INBOX, EscalationCommand, escalation_inbox_path
from telephony.commands import Command, Reply
from telephony.delivery import Delivery, WorkerInboxes, deliver
from telephony.inbox import RedisTarget, Target, send_command

ESCALATION_DOWN = (
    "the escalation service does not answer; is it running? ('parley escalation'; 'parley run' "
    "starts it when phones or queues are configured)"
)


@dataclass(frozen=True, slots=True)
class ControlPlane:
    workers: WorkerInboxes
    escalation: Target  # the escalation service's inbox
    # Each supervisor's queues, by name (a user acts as the supervisor with their username).
    supervisors: Mapping[str, frozenset[str]] = field(default_factory=dict)
    phones: Mapping[str, str] = field(default_factory=dict)  # phone name -> the URI rung
    supervisor_phones: Mapping[str, str] = field(default_factory=dict)  # name -> phone name
    # Each queue's service-level target in seconds, for the metrics (GET /metrics/summary).
    service_level_targets: Mapping[str, float] = field(default_factory=dict)
    timeout_s: float = 2.0

    @classmethod
    def from_settings(cls, settings: Any) -> ControlPlane:
        """From admin.settings.Settings: the supervisors the escalation service knows (every
        sip.phones phone, serving every queue, where none are configured)."""
        config = settings.escalation_config()
        escalation: Target = (
            RedisTarget(config.redis_url, INBOX)
            if config.redis_url
            else escalation_inbox_path(config.run_dir)
        )
        return cls(
            workers=WorkerInboxes.from_settings(settings),
            escalation=escalation,
            supervisors=MappingProxyType({s.name: s.queues for s in config.supervisors}),
            phones=MappingProxyType(
                {p.name: settings.phone_uri(p.name) for p in settings.sip.phones}
            ),
            service_level_targets=MappingProxyType(
                {q.name: q.service_level_target_s for q in config.queues}
            ),
            supervisor_phones=MappingProxyType(
                {s.name: s.phone for s in settings.supervisors}
                or {p.name: p.name for p in settings.sip.phones}
            ),
        )

    def to_worker(self, command: Command) -> Delivery:
        """Delivers a call command to the worker holding the call; from a route's thread."""
        return anyio.from_thread.run(self._deliver, command)

    def to_escalation(self, command: EscalationCommand) -> Reply:
        """Sends a command to the escalation service; from a route's thread. Raises InboxError
        (see ESCALATION_DOWN) when it does not answer."""
        return anyio.from_thread.run(self._escalation, command)

    async def _deliver(self, command: Command) -> Delivery:
        return await deliver(self.workers, command, timeout_s=self.timeout_s)

    async def _escalation(self, command: EscalationCommand) -> Reply:
        return await send_command(self.escalation, command, timeout_s=self.timeout_s, codec=CODEC)
