"""Sending a command to the media worker that holds its call: `parley call`, the API and the
escalation service all do it this way.

Each worker's inbox is tried in turn: one that does not hold the call says so, one that is down
is skipped. The `Delivery` says what became of the command, for a caller that maps it (an exit
status, an HTTP status): carried out, refused by the call's phase, no worker holds the call, or
it may be on a worker that did not answer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telephony.commands import Command, Reply
from telephony.inbox import InboxError, RedisTarget, Target, inbox_path, send_command

NOT_HELD = "holds no live call"  # how a worker's reply says the call is not one of its own


class Outcome(enum.StrEnum):
    DONE = "done"  # the worker holding the call carried it out
    REFUSED = "refused"  # the call cannot take it now; the reply says why
    NOT_HELD = "not_held"  # every worker answered, and none holds the call
    UNREACHABLE = "unreachable"  # none that answered holds it; some did not answer


@dataclass(frozen=True, slots=True)
class Delivery:
    outcome: Outcome
    reply: Reply  # the holder's; for NOT_HELD and UNREACHABLE a failure naming the call


@dataclass(frozen=True, slots=True)
class WorkerInboxes:
    """Where the media workers take commands: Unix sockets in `run_dir`, or Redis lists."""

    workers: int
    run_dir: Path
    redis_url: str | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> WorkerInboxes:
        """From admin.settings.Settings (or anything with its workers, run_dir, redis_url)."""
        return cls(settings.sip.workers, settings.run_dir(), settings.redis_url)

    def target(self, index: int) -> Target:
        if self.redis_url:
            return RedisTarget(self.redis_url, index)
        return inbox_path(self.run_dir, index)


async def deliver(
    inboxes: WorkerInboxes,
    command: Command,
    *,
    timeout_s: float = 2.0,
    first: int | None = None,
) -> Delivery:
    """Sends `command` to each media worker until the one holding the call answers; `first`
    is the worker thought to hold it (tried before the others)."""
    order = list(range(inboxes.workers))
    if first is not None and first in order:
        order = [first, *(i for i in order if i != first)]
    unreachable = []
    for index in order:
        try:
            reply = await send_command(inboxes.target(index), command, timeout_s=timeout_s)
        except InboxError as error:
            unreachable.append(f"worker {index}: {error}")
            continue
        if reply.ok:
            return Delivery(Outcome.DONE, reply)
        if NOT_HELD not in (reply.error or ""):
            return Delivery(Outcome.REFUSED, reply)
    detail = f" (unreachable: {'; '.join(unreachable)})" if unreachable else ""
    failure = Reply.failure(
        command.command_id, f"no media worker holds a live call {command.call_id}{detail}"
    )
    return Delivery(Outcome.UNREACHABLE if unreachable else Outcome.NOT_HELD, failure)
