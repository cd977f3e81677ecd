"""The escalation service: live call events in, escalations and call commands out.

One asyncio process (`parley escalation`) follows every media worker's live events. Per live
call it feeds a `TriggerDetector`; on a trigger it puts the caller on hold and in a queue, and
a `Distributor` (ticked every `tick_s`) offers the call to supervisors by ringing their phones
into it (AttachLeg to the worker holding the call). Every transition of an escalation
(`escalation.lifecycle`) is written as a `call.escalation` event to this service's own spool,
which the ingester stores with the call.

The decisions live in the pure modules (triggers, lifecycle, acd, observations); this one
wires them to events and commands. It never crashes on a bad event or a failed command: it
logs (ids only, never numbers or words) and goes on, and it follows the event source again
when it drops. State is in memory: a restarted service knows calls from their next event,
and escalations that were waiting then are lost (the caller stays on hold until the worker's
call ends; see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from escalation import lifecycle, snapshot
from escalation.acd import (
    AcdError,
    Action,
    Announce,
    Distributor,
    Fallback,
    FallbackKind,
    OfferCall,
    OfferWithdrawn,
    QueuePolicy,
    SupervisorState,
    WithdrawReason,
)
from escalation.briefing import Briefing, CallNotes, announcement, mood_of
from escalation.lifecycle import Escalation, EscalationState, IllegalTransition, Transition
from escalation.observations import CallbackEntry, observation_for
from escalation.triggers import (
    CallerDigit,
    EscalationReason,
    SupervisorInitiative,
    Trigger,
    TriggerDetector,
    TriggerPolicy,
)
from telephony import commands
from telephony.commands import Command, CommandError, Reply
from telephony.delivery import WorkerInboxes, deliver
from telephony.events import CallEvent, CallEventKind, EventOutlet
from telephony.fanout import RedisChannel, follow, subscribe
from telephony.inbox import InboxError
from telephony.mixing import Leg
from telephony.prompts import fallback_prompt

log = logging.getLogger(__name__)

ACTOR = "escalation"  # the actor of the commands this service sends
DEFAULT_QUEUE = "default"
FALLBACK_AI_NOTE = "Nobody from the team was free; apologise and keep helping."
FALLBACK_CALLBACK_NOTE = (
    "Nobody is free: ask for a callback number to be typed on the keypad, then #."
)
TRANSFER_PROMPT = "Thank you for waiting. I'm connecting you with a member of our team now."
DECLINED = frozenset({486, 600, 603})  # the supervisor's phone said no
_ENDED_REMEMBERED = 10_000
_ABOUT_A_LIVE_CALL = frozenset(
    {
        CallEventKind.STARTED,
        CallEventKind.ANSWERED,
        CallEventKind.DTMF,
        CallEventKind.AGENT,
        CallEventKind.SESSION_FAILED,
        CallEventKind.PHASE,
        CallEventKind.SUPERVISOR,
        CallEventKind.COMMAND,
    }
)
SendCommand = Callable[[Command, int | None], Awaitable[Reply]]
# Speaks text into a WAV in the workers' speech folder; returns its SHA-256 (admin/speech.py).
Speak = Callable[[str], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class SupervisorSpec:
    name: str
    phone_uri: str  # what the worker dials to ring them (through the edge)
    queues: frozenset[str]
    skills: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """What the service needs from the settings (built by admin.settings)."""

    queues: tuple[QueuePolicy, ...]
    supervisors: tuple[SupervisorSpec, ...]
    line_policies: Mapping[str, TriggerPolicy]  # by line name
    line_queues: Mapping[str, str]  # by line name
    default_line: str | None
    workers: int
    run_dir: Path
    redis_url: str | None = None
    tick_s: float = 0.5
    retry_after_s: float = 5.0  # a supervisor whose phone failed or declined rests this long
    callback_wait_s: float = 90.0  # for a callback number after the agent asked for one
    goodbye_s: float = 3.0  # between the goodbye prompt and hanging up
    # Live escalations are kept here, so that a restarted service picks up its waiting callers
    # (escalation/snapshot.py). None: kept in memory only.
    state_file: Path | None = None

    def queue_of(self, line: str | None) -> str:
        return self.line_queues.get(line or "", DEFAULT_QUEUE)

    def policy_of(self, line: str | None) -> TriggerPolicy:
        found = self.line_policies.get(line or "") or self.line_policies.get(
            self.default_line or ""
        )
        return found or TriggerPolicy()


@dataclass
class LiveCall:
    """What the service knows of one live call."""

    call_id: str
    line: str | None
    worker: int | None
    detector: TriggerDetector
    phase: str = "with_agent"
    escalation: Escalation | None = None
    escalation_id: str = ""
    leg_of: str | None = None  # the supervisor whose leg rings or is on the call
    leg_up: bool = False  # that leg answered
    stale_legs: int = 0  # legs given up on whose end has not been reported yet
    busy: str | None = None  # a supervisor the distributor counts on this call
    callback: CallbackEntry = field(default_factory=CallbackEntry)
    callback_until: float | None = None  # waiting for a number the agent asked for
    notes: CallNotes = field(default_factory=CallNotes)  # for the supervisor's briefing
    briefing: Briefing | None = None  # the summary of the current offer
    stepping_in: str | None = None  # a supervisor someone else rang into the call
    agent_failed: bool = False  # its model failed: there is no agent to go back to


def worker_sender(config: ServiceConfig) -> SendCommand:
    """Sends a command to the worker holding the call: the one named, else each in turn."""
    inboxes = WorkerInboxes(config.workers, config.run_dir, config.redis_url)

    async def send(command: Command, worker: int | None) -> Reply:
        return (await deliver(inboxes, command, first=worker)).reply

    return send


class EscalationService:
    """Per-call triggers, the queues, and the commands that carry escalations out."""

    def __init__(
        self,
        config: ServiceConfig,
        outlet: EventOutlet,
        send: SendCommand,
        *,
        speak: Speak | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.outlet = outlet
        self.send = send
        self.speak = speak  # None: no briefings spoken, no queue announcements
        self.clock = clock
        self.calls: dict[str, LiveCall] = {}
        self.distributor = Distributor(config.queues)
        self.supervisors = {s.name: s for s in config.supervisors}
        self._resting: dict[str, float] = {}
        self._ended: dict[
            str, None
        ] = {}  # recently ended calls, oldest first  # supervisor -> available again at
        self._lock = asyncio.Lock()
        self._later: set[asyncio.Task[None]] = set()
        now = clock()
        for supervisor in config.supervisors:
            self.distributor.supervisor_joined(
                supervisor.name, skills=supervisor.skills, queues=supervisor.queues, now=now
            )

    # --- the loops ---------------------------------------------------------------------------

    async def run(self, events: Callable[[], AsyncIterator[CallEvent]] | None = None) -> None:
        """Follows the live events and ticks the queues until cancelled."""
        await self._recover()
        ticker = asyncio.create_task(self._tick_forever())
        try:
            await follow(events or self._subscription, self.handle, who="escalation")
        finally:
            ticker.cancel()
            for task in [ticker, *self._later]:
                task.cancel()
            await asyncio.gather(ticker, *self._later, return_exceptions=True)

    def _subscription(self) -> AsyncIterator[CallEvent]:
        source: Path | RedisChannel = (
            RedisChannel(self.config.redis_url) if self.config.redis_url else self.config.run_dir
        )
        return subscribe(source)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_s)
            try:
                await self.tick()
            except Exception:
                log.exception("escalation tick failed; going on")

    # --- events ------------------------------------------------------------------------------

    async def handle(self, event: CallEvent) -> None:
        """One live event; a bad or unexpected one is logged and skipped."""
        async with self._lock:
            try:
                await self._handle(event, self.clock())
            except Exception:
                log.exception(
                    "live event not handled; skipped",
                    extra={"call_id": event.call_id, "kind": event.kind.value},
                )

    async def _handle(self, event: CallEvent, now: float) -> None:
        kind = event.kind
        if kind is CallEventKind.WORKER_RESET:
            worker = event.data.get("worker")
            for call in [c for c in self.calls.values() if c.worker == worker]:
                self._call_over(call, now)
            return
        if kind is CallEventKind.ENDED:
            ending = self.calls.get(event.call_id)
            if ending is not None:
                self._call_over(ending, now)
            return
        if kind not in _ABOUT_A_LIVE_CALL or event.call_id in self._ended:
            return  # late stats of a call that is over would otherwise never be forgotten
        call = self._call(event)
        call.notes.observe(event)
        if kind is CallEventKind.SESSION_FAILED:
            call.agent_failed = True
        if kind is CallEventKind.COMMAND:
            self._commanded(call, event)
        elif kind is CallEventKind.PHASE:
            await self._phase(call, event, now)
        elif kind is CallEventKind.SUPERVISOR:
            await self._supervisor_leg(call, event, now)
        elif kind is CallEventKind.DTMF and self._waiting(call):
            await self._callback_key(call, str(event.data.get("digit", "")), now)
        else:
            await self._observe(call, event, now)

    def _call(self, event: CallEvent) -> LiveCall:
        call = self.calls.get(event.call_id)
        if call is None:
            # call.started carries the line and worker; a call first seen later (this service
            # restarted) gets the default line's policy until the call's end.
            line = event.data.get("line") if event.kind is CallEventKind.STARTED else None
            worker = event.data.get("worker")
            call = LiveCall(
                call_id=event.call_id,
                line=line if isinstance(line, str) else None,
                worker=worker if isinstance(worker, int) else None,
                detector=TriggerDetector(
                    self.config.policy_of(line if isinstance(line, str) else None)
                ),
            )
            self.calls[event.call_id] = call
        return call

    def _waiting(self, call: LiveCall) -> bool:
        """Whether the caller's keys are a callback number (on hold, or asked for one)."""
        escalation = call.escalation
        return escalation is not None and (
            escalation.state in lifecycle.WAITING_STATES or call.callback_until is not None
        )

    async def _observe(self, call: LiveCall, event: CallEvent, now: float) -> None:
        if call.phase != "with_agent":
            return  # only what happens with the agent asks for a person
        try:
            observation = observation_for(event)
        except ValueError as error:
            log.warning(
                "malformed call event skipped",
                extra={"call_id": call.call_id, "kind": event.kind.value, "error": str(error)},
            )
            return
        if observation is None:
            return
        if isinstance(observation, CallerDigit) and self._live(call):
            return
        trigger = call.detector.observe(observation, now)
        if trigger is not None and not self._live(call):
            await self._escalate(call, trigger, now)

    @staticmethod
    def _live(call: LiveCall) -> bool:
        return call.escalation is not None and lifecycle.is_live(call.escalation.state)

    async def _escalate(self, call: LiveCall, trigger: Trigger, now: float) -> None:
        queue = self.config.queue_of(call.line)
        call.escalation_id = uuid.uuid4().hex
        call.callback = CallbackEntry()
        self._record(call, lifecycle.request(call.call_id, reason=trigger.reason.value, at=now))
        reply = await self._command(call, commands.Hold(call_id=call.call_id, actor=ACTOR))
        if not reply.ok and call.phase != "queued":
            # The caller cannot wait on hold (the model failed, a person is on already): the
            # call stays where it is, and the escalation goes back to the AI at once.
            self._step(call, lifecycle.hand_back, at=now)
            return
        self._step(call, lifecycle.enqueue, queue=queue, at=now)
        try:
            self.distributor.call_queued(
                call.call_id, queue=queue, now=now, priority=1 if trigger.immediate else 0
            )
        except AcdError as error:
            log.error("call not queued", extra={"call_id": call.call_id, "error": str(error)})
            return
        await self._distribute(now)  # a free supervisor's phone rings now, not at the next tick

    async def _distribute(self, now: float) -> None:
        for action in self.distributor.tick(now):
            try:
                await self._act(action, now)
            except Exception:
                log.exception("queue action failed", extra={"call_id": action.call_id})

    async def _phase(self, call: LiveCall, event: CallEvent, now: float) -> None:
        before, call.phase = call.phase, str(event.data.get("phase", ""))
        escalation = call.escalation
        if escalation is None or call.phase != "with_agent" or before == "with_agent":
            return
        if escalation.state is EscalationState.CONNECTED:
            # The supervisor handed back (keypad 5, or a hand-back command).
            actor = lifecycle.supervisor_actor(escalation.supervisor_id or "unknown")
            self._step(call, lifecycle.hand_back, at=now, actor=actor)
            call.detector.reset()

    async def _supervisor_leg(self, call: LiveCall, event: CallEvent, now: float) -> None:
        what = event.data.get("event")
        escalation = call.escalation
        if what == "ringing":
            return
        if what == "answered":
            if call.stale_legs:
                # A leg this service gave up on answered after all: off the call with it.
                await self._command(call, commands.DetachLeg(call_id=call.call_id, actor=ACTOR))
                return
            if call.leg_of is None:
                self._stepped_in(call, now)  # rung by someone else (the API, parley call)
                return
            if escalation is None:
                return
            call.leg_up = True
            if escalation.state is EscalationState.OFFERED:
                supervisor = call.leg_of
                try:
                    self.distributor.offer_accepted(call.call_id, supervisor_id=supervisor, now=now)
                except AcdError as error:
                    log.warning(
                        "accept not counted", extra={"call_id": call.call_id, "error": str(error)}
                    )
                call.busy = supervisor
                self._step(call, lifecycle.accept, supervisor_id=supervisor, at=now)
                self._step(call, lifecycle.connect, at=now)
                # While the supervisor hears the summary, the caller is told who is coming.
                self._say_later(call, TRANSFER_PROMPT, to=Leg.CALLER, still=self._connected)
            return
        if what not in ("ended", "failed"):
            return
        if call.stale_legs:
            call.stale_legs -= 1
            return
        leg_of, answered = call.leg_of, call.leg_up
        call.leg_of, call.leg_up = None, False
        if leg_of is None:
            return
        supervisor = leg_of
        if not answered:
            await self._offer_failed(call, supervisor, event, now)
            return
        self._finished(call, now)
        if escalation is not None and escalation.state is EscalationState.CONNECTED:
            # The supervisor's leg ended without a hand back; the worker already gave the call
            # to the agent (or the queue) if they had taken it, but not from the briefing.
            if call.phase == "queued":
                await self._command(call, self._reattach(call, "The supervisor had to leave."))
            self._step(
                call, lifecycle.hand_back, at=now, actor=lifecycle.supervisor_actor(supervisor)
            )
            call.detector.reset()

    def _commanded(self, call: LiveCall, event: CallEvent) -> None:
        """Remembers whose phone someone else rang into the call (by its URI)."""
        data = event.data
        if data.get("command") != commands.AttachLeg.TYPE or data.get("actor") == ACTOR:
            return
        uri = data.get("uri")
        call.stepping_in = next(
            (s.name for s in self.supervisors.values() if s.phone_uri == uri), None
        )

    def _stepped_in(self, call: LiveCall, now: float) -> None:
        """A supervisor joined a call of their own accord: an escalation with that reason,
        accepted and connected by them, so the timeline and the queue's figures show it."""
        supervisor, call.stepping_in = call.stepping_in, None
        if supervisor is None or self._live(call):
            return
        trigger = call.detector.observe(SupervisorInitiative(supervisor), now)
        reason = trigger.reason.value if trigger else EscalationReason.SUPERVISOR_INITIATIVE.value
        call.escalation_id = uuid.uuid4().hex
        actor = lifecycle.supervisor_actor(supervisor)
        self._record(call, lifecycle.request(call.call_id, reason=reason, at=now, actor=actor))
        self._step(call, lifecycle.accept, supervisor_id=supervisor, at=now)
        self._step(call, lifecycle.connect, at=now)
        call.leg_of, call.leg_up, call.busy = supervisor, True, supervisor
        with contextlib.suppress(AcdError):
            self.distributor.supervisor_state_changed(supervisor, SupervisorState.BUSY, now=now)

    async def _offer_failed(
        self, call: LiveCall, supervisor: str, event: CallEvent, now: float
    ) -> None:
        status = event.data.get("status")
        escalation = call.escalation
        if escalation is None or escalation.state is not EscalationState.OFFERED:
            return
        try:
            self.distributor.offer_declined(call.call_id, supervisor_id=supervisor, now=now)
        except AcdError as error:
            log.warning("decline not counted", extra={"call_id": call.call_id, "error": str(error)})
        if status in DECLINED:
            self._step(call, lifecycle.decline, supervisor_id=supervisor, at=now)
        else:
            self._step(call, lifecycle.offer_timed_out, at=now)
        self._rest(supervisor, now)

    async def _callback_key(self, call: LiveCall, key: str, now: float) -> None:
        call.callback = call.callback.key(key)
        number = call.callback.number
        if number is None or call.escalation is None:
            return
        if call.escalation.state is EscalationState.OFFERED and call.leg_of is not None:
            call.stale_legs += 1
            call.leg_of = None
            await self._command(call, commands.DetachLeg(call_id=call.call_id, actor=ACTOR))
        self.distributor.caller_hung_up(call.call_id, now=now)  # leaves the queue
        call.callback_until = None
        self._step(call, lifecycle.take_callback, number=number, at=now)
        await self._command(
            call, commands.PlayPrompt(call_id=call.call_id, actor=ACTOR, prompt="goodbye")
        )
        self._later_do(self.config.goodbye_s, functools.partial(self._hang_up, call.call_id))

    async def _hang_up(self, call_id: str, reason: str = "callback") -> None:
        call = self.calls.get(call_id)
        if call is not None:
            await self._command(call, commands.Hangup(call_id=call_id, actor=ACTOR, reason=reason))

    def _call_over(self, call: LiveCall, now: float) -> None:
        if self.calls.pop(call.call_id, None) is not None and call.escalation is not None:
            self._save()
        self._ended[call.call_id] = None
        while len(self._ended) > _ENDED_REMEMBERED:
            del self._ended[next(iter(self._ended))]
        self.distributor.caller_hung_up(call.call_id, now=now)
        self._finished(call, now)
        if call.escalation is not None:
            escalation, step = lifecycle.call_ended(call.escalation, at=now)
            call.escalation = escalation
            if step is not None:
                self._emit(call, step)

    def _finished(self, call: LiveCall, now: float) -> None:
        if call.busy is not None:
            supervisor, call.busy = call.busy, None
            with contextlib.suppress(AcdError):
                self.distributor.supervisor_finished_call(supervisor, now=now)

    # --- the clock ---------------------------------------------------------------------------

    async def tick(self) -> None:
        async with self._lock:
            now = self.clock()
            self._wake_rested(now)
            await self._distribute(now)
            for call in list(self.calls.values()):
                if call.callback_until is not None and call.callback_until <= now:
                    call.callback_until = None
                    self._step(call, lifecycle.hand_back, at=now)  # the agent has the call

    async def _act(self, action: Action, now: float) -> None:
        call = self.calls.get(action.call_id)
        if call is None or call.escalation is None:
            return
        match action:
            case OfferCall(supervisor_id=supervisor):
                await self._offer(call, supervisor, now)
            case OfferWithdrawn(supervisor_id=supervisor, reason=reason):
                if reason is WithdrawReason.CALLER_HUNG_UP or call.leg_of != supervisor:
                    return
                call.stale_legs += 1
                call.leg_of, call.leg_up = None, False
                # Stops the ringing where the worker can; a leg that answers later is dropped.
                await self._command(call, commands.DetachLeg(call_id=call.call_id, actor=ACTOR))
                if reason is WithdrawReason.TIMED_OUT:
                    self._step(call, lifecycle.offer_timed_out, at=now)
                else:
                    self._step(call, lifecycle.decline, supervisor_id=supervisor, at=now)
            case Fallback() if call.agent_failed:
                # Nobody came and there is no agent to go back to: the caller is asked to
                # call back ("our assistant isn't available"), then the call ends.
                await self._command(
                    call, commands.PlayPrompt(call_id=call.call_id, actor=ACTOR, prompt="fallback")
                )
                hang_up = functools.partial(self._hang_up, call.call_id, reason="nobody_free")
                self._later_do(len(fallback_prompt()) / 32_000 + 0.5, hang_up)
            case Fallback(kind=FallbackKind.AI):
                reply = await self._command(call, self._reattach(call, FALLBACK_AI_NOTE))
                if reply.ok:
                    self._step(call, lifecycle.hand_back, at=now)
                    call.detector.reset()
            case Fallback(kind=FallbackKind.CALLBACK):
                reply = await self._command(call, self._reattach(call, FALLBACK_CALLBACK_NOTE))
                if reply.ok:
                    call.callback = CallbackEntry()
                    call.callback_until = now + self.config.callback_wait_s
            case Announce(position=position, expected_wait_s=expected):
                text = announcement(position, expected)
                self._say_later(call, text, to=Leg.CALLER, still=self._still_waiting)

    async def _offer(self, call: LiveCall, supervisor: str, now: float) -> None:
        spec = self.supervisors[supervisor]
        call.briefing = briefing = self._briefing(call, now)
        self._step(call, lifecycle.offer, supervisor_id=supervisor, at=now)
        call.leg_of, call.leg_up = supervisor, False
        attach = commands.AttachLeg(call_id=call.call_id, actor=ACTOR, uri=spec.phone_uri)
        reply = await self._command(call, attach)
        if reply.ok:
            # Spoken while the phone rings; played into the supervisor's ear on answer.
            offered = functools.partial(self._still_offered, supervisor=supervisor)
            self._say_later(call, briefing.spoken(), to=Leg.SUPERVISOR, still=offered)
            return
        call.leg_of = None
        with contextlib.suppress(AcdError):
            self.distributor.offer_declined(call.call_id, supervisor_id=supervisor, now=now)
        self._step(call, lifecycle.offer_timed_out, at=now)
        self._rest(supervisor, now)

    def _rest(self, supervisor: str, now: float) -> None:
        """A phone that failed or said no is not rung again at once (each tick otherwise)."""
        with contextlib.suppress(AcdError):
            if self.distributor.supervisor(supervisor).state is SupervisorState.AVAILABLE:
                self.distributor.supervisor_state_changed(supervisor, SupervisorState.AWAY, now=now)
                self._resting[supervisor] = now + self.config.retry_after_s

    def _wake_rested(self, now: float) -> None:
        for supervisor, until in list(self._resting.items()):
            if until <= now:
                del self._resting[supervisor]
                with contextlib.suppress(AcdError):
                    self.distributor.supervisor_state_changed(
                        supervisor, SupervisorState.AVAILABLE, now=now
                    )

    # --- surviving a restart ---------------------------------------------------------------

    def _save(self) -> None:
        path = self.config.state_file
        if path is None:
            return
        saved = [
            snapshot.Saved(
                call_id=call.call_id,
                escalation_id=call.escalation_id,
                line=call.line,
                worker=call.worker,
                reason=escalation.reason,
                state=escalation.state,
                requested_at=escalation.requested_at,
                queue=escalation.queue,
                supervisor_id=escalation.supervisor_id,
            )
            for call in self.calls.values()
            if (escalation := call.escalation) is not None and lifecycle.is_live(escalation.state)
        ]
        try:
            snapshot.write(path, saved)
        except OSError as error:
            log.error("escalation state not saved", extra={"error": str(error)})

    async def _recover(self) -> None:
        """Picks up the escalations a previous run of the service left live."""
        path = self.config.state_file
        if path is None:
            return
        saved = snapshot.read(path)
        async with self._lock:
            now = self.clock()
            for entry in saved:
                try:
                    await self._resume(entry, now)
                except Exception:
                    log.exception("escalation not picked up", extra={"call_id": entry.call_id})
            self._save()
        if saved:
            log.info(
                "escalations picked up after a restart",
                extra={"saved": len(saved), "live": len(self.calls)},
            )

    async def _resume(self, entry: snapshot.Saved, now: float) -> None:
        call = LiveCall(
            call_id=entry.call_id,
            line=entry.line,
            worker=entry.worker,
            detector=TriggerDetector(self.config.policy_of(entry.line)),
            escalation=entry.escalation(),
            escalation_id=entry.escalation_id,
        )
        reply = await self._command(call, commands.Status(call_id=call.call_id, actor=ACTOR))
        if not reply.ok:
            return  # the call ended meanwhile: its escalation was closed when it was stored
        self.calls[call.call_id] = call
        call.phase = str(reply.data.get("phase", ""))
        supervisor, state = entry.supervisor_id, entry.state
        on_call = bool(reply.data.get("supervisor"))
        if on_call and supervisor in self.supervisors and state in lifecycle.LIVE_STATES:
            # Their supervisor is on the call: busy until their leg ends.
            call.leg_of, call.leg_up, call.busy = supervisor, True, supervisor
            with contextlib.suppress(AcdError):
                self.distributor.supervisor_state_changed(supervisor, SupervisorState.BUSY, now=now)
            if state is EscalationState.OFFERED:
                self._step(call, lifecycle.accept, supervisor_id=supervisor, at=now)
            if call.escalation is not None and call.escalation.state is EscalationState.ACCEPTED:
                self._step(call, lifecycle.connect, at=now)
            return
        if reply.data.get("ringing"):  # an offer nobody follows any more: called off
            call.stale_legs += 1
            await self._command(call, commands.DetachLeg(call_id=call.call_id, actor=ACTOR))
        if state is EscalationState.OFFERED:
            self._step(call, lifecycle.offer_timed_out, at=now)
        queue = entry.queue or self.config.queue_of(entry.line)
        if call.phase == "queued":
            if state is EscalationState.REQUESTED:
                self._step(call, lifecycle.enqueue, queue=queue, at=now)
            # Queued since the request: the queue's maximum wait still counts from then.
            self.distributor.call_queued(
                call.call_id, queue=queue, now=min(now, entry.requested_at)
            )
        elif call.escalation is not None and lifecycle.is_live(call.escalation.state):
            self._step(call, lifecycle.hand_back, at=now)  # the agent has the caller again
            call.detector.reset()

    # --- what is said: briefings and announcements ---------------------------------------------

    def _briefing(self, call: LiveCall, now: float) -> Briefing:
        assert call.escalation is not None
        escalation, detector = call.escalation, call.detector
        return Briefing.of(
            call.notes,
            reason=escalation.reason,
            queue=escalation.queue or DEFAULT_QUEUE,
            waited_s=now - escalation.requested_at,
            mood=mood_of(detector.frustration(now), detector.policy.frustration_threshold),
        )

    @staticmethod
    def _still_waiting(call: LiveCall) -> bool:
        escalation = call.escalation
        return (
            escalation is not None
            and escalation.state is EscalationState.QUEUED
            and call.phase == "queued"
        )

    @staticmethod
    def _connected(call: LiveCall) -> bool:
        escalation = call.escalation
        return escalation is not None and escalation.state is EscalationState.CONNECTED

    @staticmethod
    def _still_offered(call: LiveCall, *, supervisor: str) -> bool:
        escalation = call.escalation
        return (
            escalation is not None
            and call.leg_of == supervisor
            and escalation.state in (EscalationState.OFFERED, EscalationState.CONNECTED)
        )

    def _say_later(
        self,
        call: LiveCall,
        text: str,
        *,
        to: Leg,
        still: Callable[[LiveCall], bool],
    ) -> None:
        """Has `text` spoken (outside the service's lock: synthesis takes a moment) and then
        played to the caller or the supervisor, if `still` holds for the call by then."""
        speak = self.speak
        if speak is None:
            return
        call_id = call.call_id

        async def say() -> None:
            try:
                sha256 = await speak(text)
            except Exception as error:  # a broken voice must not stop the queue
                log.warning(
                    "speech not made", extra={"call_id": call_id, "error": repr(error)[:200]}
                )
                return
            async with self._lock:
                live = self.calls.get(call_id)
                if live is None or not still(live):
                    return
                play = commands.PlayPrompt(
                    call_id=call_id, actor=ACTOR, prompt="speech", to=to, speech=sha256
                )
                await self._command(live, play)

        task = asyncio.create_task(say())
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    # --- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _reattach(call: LiveCall, note: str) -> Command:
        return commands.ReattachAgent(call_id=call.call_id, actor=ACTOR, note=note)

    async def _command(self, call: LiveCall, command: Command) -> Reply:
        try:
            reply = await self.send(command, call.worker)
        except (InboxError, CommandError, OSError) as error:
            reply = Reply.failure(command.command_id, f"{type(error).__name__}: {error}")
        if not reply.ok:
            log.warning(
                "call command failed",
                extra={
                    "call_id": call.call_id,
                    "command": command.TYPE,
                    "error": (reply.error or "")[:200],
                },
            )
        return reply

    def _step(
        self,
        call: LiveCall,
        transition: Callable[..., tuple[Escalation, Transition]],
        **kwargs: object,
    ) -> bool:
        """Applies one lifecycle transition to the call's escalation and records it."""
        if call.escalation is None:
            return False
        try:
            self._record(call, transition(call.escalation, **kwargs))
        except (IllegalTransition, ValueError) as error:
            log.warning(
                "escalation transition refused",
                extra={"call_id": call.call_id, "error": str(error)[:200]},
            )
            return False
        return True

    def _record(self, call: LiveCall, moved: tuple[Escalation, Transition]) -> None:
        call.escalation, step = moved
        self._emit(call, step)

    def _emit(self, call: LiveCall, step: Transition) -> None:
        summary = call.briefing if step.event is lifecycle.EscalationEvent.OFFER else None
        self.outlet.emit(escalation_event(call.escalation_id, call.escalation, step, summary))
        self._save()
        log.info(
            "escalation transition",
            extra={
                "call_id": call.call_id,
                "escalation_id": call.escalation_id,
                "event": step.event.value,
                "to": step.to_state.value,
            },
        )

    def _later_do(self, delay_s: float, work: Callable[[], Awaitable[None]]) -> None:
        async def later() -> None:
            await asyncio.sleep(delay_s)
            async with self._lock:
                await work()

        task = asyncio.create_task(later())
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    # --- commands from the service's inbox (escalation.control) ------------------------------

    async def controlled(self, work: Callable[[float], Reply]) -> Reply:
        """Runs `work(now)` between live events and ticks; a tick then carries out at once what
        it changed in the distributor (an offer to ring, one to withdraw)."""
        async with self._lock:
            reply = work(self.clock())
        await self.tick()
        return reply

    def rest(self, supervisor: str, now: float, *, resting: bool) -> None:
        """Starts a supervisor's rest (they declined a call) or ends it (they set presence)."""
        if resting:
            self._rest(supervisor, now)
        else:
            self._resting.pop(supervisor, None)


def escalation_event(
    escalation_id: str,
    escalation: Escalation | None,
    step: Transition,
    summary: Briefing | None = None,
) -> CallEvent:
    """The `call.escalation` event of one transition (`telephony.events.CallEventKind`); an
    offer carries the warm-handoff summary given to the supervisor."""
    assert escalation is not None
    data: dict[str, object] = {
        "escalation_id": escalation_id,
        "event": step.event.value,
        "from": step.from_state.value if step.from_state else None,
        "to": step.to_state.value,
        "actor": step.actor,
        "reason": escalation.reason,
        "queue": escalation.queue,
        "supervisor": escalation.supervisor_id,
        "detail": step.detail,
    }
    if summary is not None:
        data["summary"] = summary.as_data()
    if step.event is lifecycle.EscalationEvent.TAKE_CALLBACK:
        data["callback_number"] = escalation.callback_number  # a field, never log text
    return CallEvent(escalation.call_id, CallEventKind.ESCALATION, data)


def with_defaults(queues: tuple[QueuePolicy, ...]) -> tuple[QueuePolicy, ...]:
    """The queues, with the default one added when none is named so."""
    if any(q.name == DEFAULT_QUEUE for q in queues):
        return queues
    return (*queues, QueuePolicy(DEFAULT_QUEUE))


__all__ = [
    "EscalationService",
    "LiveCall",
    "ServiceConfig",
    "SupervisorSpec",
    "escalation_event",
    "with_defaults",
    "worker_sender",
]
