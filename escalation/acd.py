"""Automatic call distribution: which waiting call rings which supervisor, and when.

Pure and time-driven: no I/O, no clock, no timers. A service holds one `Distributor` in memory,
feeds it what happened (a call queued, a supervisor's state changed, an offer accepted or
declined, a caller hung up, a supervisor finished a call) and calls `tick(now)`; the actions it
gets back (`OfferCall`, `OfferWithdrawn`, `Announce`, `Fallback`) are what to do now. Each
action maps onto one transition of the call's escalation (`escalation.lifecycle`):

    OfferCall -> offer                     OfferWithdrawn(timed_out) -> offer_timed_out
    Fallback(ai) -> hand_back              OfferWithdrawn(supervisor_away) -> decline
    Fallback(callback) -> take_callback    OfferWithdrawn(caller_hung_up): stop the ringing
      (once the caller has left a number)    (the hang-up itself was the escalation's abandon)

The rules:

- A call is offered to the supervisor who has been idle longest among those available, serving
  its queue and holding every skill the queue (and the call) needs. Calls go out highest
  effective priority first, then longest waiting.
- Effective priority ages, so low-priority calls are not starved:

      effective = queue.priority_weight * call.priority + waited_s / config.aging_s

  With the default `aging_s` of 60 s, a minute of waiting is worth one priority level: a
  priority-0 call that has waited 2 min goes before a priority-1 call that has waited under
  1 min. Two waiting calls age at the same rate, so their order never changes; what aging
  buys is that a waiting call ends up ahead of every newer call, whatever its priority
  (waiting grows without bound, priorities do not), so no call is starved.
- An offer not answered within the queue's `offer_timeout_s` (or declined) goes to the next
  supervisor; the one who let it pass gets it again only when nobody else could take it.
- A call that has waited `max_wait_s` gets the queue's fallback (back to the AI, or a
  callback). An offer already ringing is left to finish first: the caller is seconds from a
  person, and the offer's timeout bounds the overrun.
- Every `announce_interval_s` a waiting caller hears their position and expected wait.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class FallbackKind(enum.StrEnum):
    AI = "ai"  # back to the AI, with an apology
    CALLBACK = "callback"  # ask for a number to call back on


class SupervisorState(enum.StrEnum):
    AVAILABLE = "available"
    BUSY = "busy"  # on a call
    WRAP_UP = "wrap_up"  # finishing notes after a call; available after the wrap-up time
    AWAY = "away"


class WithdrawReason(enum.StrEnum):
    TIMED_OUT = "timed_out"  # the supervisor did not answer within the offer timeout
    CALLER_HUNG_UP = "caller_hung_up"
    SUPERVISOR_AWAY = "supervisor_away"  # the supervisor went away or left while it rang


class AcdError(ValueError):
    """An event that does not fit the distributor's state (unknown queue, call or offer)."""


# --- configuration -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    name: str
    skills: frozenset[str] = frozenset()  # a supervisor needs all of them
    priority_weight: float = 1.0  # scales its calls' priority against other queues'
    service_level_target_s: float = 20.0  # answered within this counts towards service level
    max_wait_s: float = 120.0  # then the fallback
    offer_timeout_s: float = 15.0  # one supervisor's time to answer an offer
    announce_interval_s: float = 30.0  # position and expected wait, this often
    fallback: FallbackKind = FallbackKind.AI

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a queue needs a name")
        for field in (
            "priority_weight",
            "service_level_target_s",
            "max_wait_s",
            "offer_timeout_s",
            "announce_interval_s",
        ):
            value = getattr(self, field)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(
                    f"queue {self.name}: {field} must be a positive number, not {value!r}"
                )
        if self.service_level_target_s > self.max_wait_s:
            raise ValueError(
                f"queue {self.name}: service_level_target_s ({self.service_level_target_s}) "
                f"must not exceed max_wait_s ({self.max_wait_s}); no call could be answered "
                "within the target after it has fallen back"
            )
        if any(not skill.strip() for skill in self.skills):
            raise ValueError(f"queue {self.name}: skills must be non-empty names")

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> QueuePolicy:
        """A policy from plain configuration (YAML, JSON); unknown keys are refused."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown queue policy keys: {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        name = data.get("name")
        if not isinstance(name, str):
            raise ValueError("a queue policy needs a name (a string)")
        kwargs: dict[str, object] = {"name": name}
        if "skills" in data:
            skills = data["skills"]
            if isinstance(skills, str) or not isinstance(skills, Iterable):
                raise ValueError(f"queue {name}: skills must be a list of names")
            if not all(isinstance(skill, str) for skill in skills):
                raise ValueError(f"queue {name}: every skill must be a string")
            kwargs["skills"] = frozenset(skills)
        for field in (
            "priority_weight",
            "service_level_target_s",
            "max_wait_s",
            "offer_timeout_s",
            "announce_interval_s",
        ):
            if field in data:
                value = data[field]
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"queue {name}: {field} must be a number, not {value!r}")
                kwargs[field] = float(value)
        if "fallback" in data:
            fallback = data["fallback"]
            choices = [kind.value for kind in FallbackKind]
            if fallback not in choices:
                raise ValueError(
                    f"queue {name}: fallback must be one of {', '.join(choices)}, not {fallback!r}"
                )
            kwargs["fallback"] = FallbackKind(fallback)
        return cls(**kwargs)  # type: ignore[arg-type]  # each value was checked above


@dataclass(frozen=True, slots=True)
class AcdConfig:
    wrap_up_s: float = 30.0  # after a call, a supervisor is available again this much later
    aging_s: float = 60.0  # waiting this long raises a call's effective priority by one
    handle_time_samples: int = 20  # recent handle times per queue behind the wait estimate

    def __post_init__(self) -> None:
        if not math.isfinite(self.wrap_up_s) or self.wrap_up_s < 0:
            raise ValueError(f"wrap_up_s must be zero or more seconds, not {self.wrap_up_s!r}")
        if not math.isfinite(self.aging_s) or self.aging_s <= 0:
            raise ValueError(f"aging_s must be a positive number of seconds, not {self.aging_s!r}")
        if self.handle_time_samples < 1:
            raise ValueError("handle_time_samples must be at least 1")


# --- what the distributor tracks -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Supervisor:
    supervisor_id: str
    skills: frozenset[str]
    queues: frozenset[str]  # the queues they serve
    state: SupervisorState
    since: float  # when they entered `state`; for AVAILABLE, when they became idle

    def can_take(self, policy: QueuePolicy, skills: frozenset[str]) -> bool:
        return policy.name in self.queues and (policy.skills | skills) <= self.skills


@dataclass(frozen=True, slots=True)
class WaitingCall:
    call_id: str
    queue: str
    queued_at: float
    priority: int = 0  # higher is more urgent
    skills: frozenset[str] = frozenset()  # needed on top of the queue's (a language, ...)
    passed_over: frozenset[str] = frozenset()  # supervisors who declined it or let it ring out
    next_announce_at: float = math.inf
    seq: int = 0  # arrival order, the last tie-break


@dataclass(frozen=True, slots=True)
class Offer:
    call_id: str
    supervisor_id: str
    at: float
    expires_at: float


def effective_priority(
    call: WaitingCall, policy: QueuePolicy, now: float, *, aging_s: float
) -> float:
    """The call's priority with its wait added: see the module's docstring."""
    return policy.priority_weight * call.priority + max(0.0, now - call.queued_at) / aging_s


# --- actions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OfferCall:
    call_id: str
    supervisor_id: str
    queue: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class OfferWithdrawn:
    """Stop ringing this supervisor for this call."""

    call_id: str
    supervisor_id: str
    reason: WithdrawReason


@dataclass(frozen=True, slots=True)
class Announce:
    """Tell the caller where they stand; `expected_wait_s` is None when there is no basis."""

    call_id: str
    position: int  # 1: next to be offered
    expected_wait_s: float | None


@dataclass(frozen=True, slots=True)
class Fallback:
    call_id: str
    queue: str
    kind: FallbackKind
    waited_s: float


Action = OfferCall | OfferWithdrawn | Announce | Fallback


@dataclass(frozen=True, slots=True)
class ServiceLevel:
    """Calls that left a queue, and the share answered within its target.

    Every caller who left counts in the denominator, abandoned and fallen back included: a
    caller who gave up waiting was not served within the target.
    """

    answered: int
    answered_within_target: int
    abandoned: int
    fell_back: int

    @property
    def total(self) -> int:
        return self.answered + self.abandoned + self.fell_back

    @property
    def share(self) -> float | None:
        return self.answered_within_target / self.total if self.total else None


# --- the distributor -----------------------------------------------------------------------


class Distributor:
    """The queues, the supervisors and the waiting calls of one contact center, in memory.

    Event methods raise `AcdError` for events that cannot be applied (an unknown queue or
    supervisor, an accept for an offer that is no longer out) and change nothing then.
    Their consequences for other parties (a ringing offer to withdraw) come out of the next
    `tick`, in the order they happened.
    """

    def __init__(self, policies: Iterable[QueuePolicy], config: AcdConfig | None = None) -> None:
        self.config = config or AcdConfig()
        self._policies: dict[str, QueuePolicy] = {}
        for policy in policies:
            if policy.name in self._policies:
                raise ValueError(f"two queue policies are named {policy.name}")
            self._policies[policy.name] = policy
        self._supervisors: dict[str, Supervisor] = {}
        self._waiting: dict[str, WaitingCall] = {}
        self._offers: dict[str, Offer] = {}  # by call id
        self._handle_times: dict[str, deque[float]] = {
            name: deque(maxlen=self.config.handle_time_samples) for name in self._policies
        }
        self._on_call: dict[str, tuple[str, float]] = {}  # supervisor -> (queue, accepted at)
        self._stats: dict[str, ServiceLevel] = {
            name: ServiceLevel(0, 0, 0, 0) for name in self._policies
        }
        self._pending: list[Action] = []
        self._seq = 0
        self._now = -math.inf

    # --- events ----------------------------------------------------------------------------

    def call_queued(
        self,
        call_id: str,
        *,
        queue: str,
        now: float,
        priority: int = 0,
        skills: Iterable[str] = (),
    ) -> WaitingCall:
        policy = self._policy(queue)
        if call_id in self._waiting:
            raise AcdError(
                f"call {call_id} is already waiting in queue {self._waiting[call_id].queue}"
            )
        self._seq += 1
        call = WaitingCall(
            call_id=call_id,
            queue=queue,
            queued_at=now,
            priority=priority,
            skills=frozenset(skills),
            next_announce_at=now + policy.announce_interval_s,
            seq=self._seq,
        )
        self._waiting[call_id] = call
        return call

    def caller_hung_up(self, call_id: str, *, now: float) -> None:
        """The caller left; unknown or already-answered calls are ignored (teardown calls this)."""
        call = self._waiting.pop(call_id, None)
        if call is None:
            return
        offer = self._offers.pop(call_id, None)
        if offer is not None:
            self._pending.append(
                OfferWithdrawn(call_id, offer.supervisor_id, WithdrawReason.CALLER_HUNG_UP)
            )
        self._count(call.queue, abandoned=1)

    def offer_accepted(self, call_id: str, *, supervisor_id: str, now: float) -> None:
        self._offer(call_id, supervisor_id)
        call = self._waiting.pop(call_id)
        del self._offers[call_id]
        supervisor = self._supervisors[supervisor_id]
        self._supervisors[supervisor_id] = dataclasses.replace(
            supervisor, state=SupervisorState.BUSY, since=now
        )
        self._on_call[supervisor_id] = (call.queue, now)
        target = self._policies[call.queue].service_level_target_s
        within = 1 if now - call.queued_at <= target else 0
        self._count(call.queue, answered=1, answered_within_target=within)

    def offer_to(self, call_id: str, *, supervisor_id: str, now: float) -> OfferCall | None:
        """A supervisor asks for this waiting call: it is offered to them now, out of turn.

        Comes out of the next `tick` as an OfferCall (None when it rings them already). Taking
        a call makes a supervisor who was away or wrapping up available. Refused (AcdError)
        for a call not waiting, one ringing someone else, a supervisor on a call or ringing
        for another, or one without the call's queue and skills.
        """
        call = self._waiting.get(call_id)
        if call is None:
            raise AcdError(f"call {call_id} is not waiting in a queue")
        supervisor = self._supervisor(supervisor_id)
        policy = self._policies[call.queue]
        offer = self._offers.get(call_id)
        if offer is not None and offer.supervisor_id == supervisor_id:
            return None
        if offer is not None:
            raise AcdError(f"call {call_id} is ringing another supervisor; wait for them")
        if not supervisor.can_take(policy, call.skills):
            raise AcdError(
                f"supervisor {supervisor_id} does not serve queue {call.queue} with its skills"
            )
        if supervisor.state is SupervisorState.BUSY:
            raise AcdError(f"supervisor {supervisor_id} is on a call")
        if any(offer.supervisor_id == supervisor_id for offer in self._offers.values()):
            raise AcdError(f"supervisor {supervisor_id} is being offered another call")
        if supervisor.state is not SupervisorState.AVAILABLE:
            self._supervisors[supervisor_id] = dataclasses.replace(
                supervisor, state=SupervisorState.AVAILABLE, since=now
            )
        self._offers[call_id] = Offer(call_id, supervisor_id, now, now + policy.offer_timeout_s)
        action = OfferCall(call_id, supervisor_id, call.queue, now + policy.offer_timeout_s)
        self._pending.append(action)
        return action

    def offer_declined(self, call_id: str, *, supervisor_id: str, now: float) -> None:
        """The supervisor said no; the call waits for the next one."""
        self._offer(call_id, supervisor_id)
        self._return_to_queue(call_id, supervisor_id)

    def supervisor_joined(
        self,
        supervisor_id: str,
        *,
        skills: Iterable[str],
        queues: Iterable[str],
        now: float,
        state: SupervisorState = SupervisorState.AVAILABLE,
    ) -> Supervisor:
        if not supervisor_id:
            raise AcdError("a supervisor needs an id")
        queues = frozenset(queues)
        unknown = sorted(queues - self._policies.keys())
        if unknown:
            raise AcdError(
                f"supervisor {supervisor_id} serves unknown queues: {', '.join(unknown)}"
            )
        supervisor = Supervisor(supervisor_id, frozenset(skills), queues, state, now)
        self._supervisors[supervisor_id] = supervisor
        return supervisor

    def supervisor_left(self, supervisor_id: str, *, now: float) -> None:
        self._supervisor(supervisor_id)
        self._withdraw_offers_to(supervisor_id)
        self._on_call.pop(supervisor_id, None)
        del self._supervisors[supervisor_id]

    def supervisor_state_changed(
        self, supervisor_id: str, state: SupervisorState, *, now: float
    ) -> None:
        """A state the supervisor set (away, back, busy elsewhere); the same state is a no-op.

        Becoming available starts their idle time now. Leaving AVAILABLE while an offer rings
        withdraws it, as a decline.
        """
        supervisor = self._supervisor(supervisor_id)
        if supervisor.state is state:
            return
        if state is not SupervisorState.AVAILABLE:
            self._withdraw_offers_to(supervisor_id)
        self._supervisors[supervisor_id] = dataclasses.replace(supervisor, state=state, since=now)

    def supervisor_finished_call(self, supervisor_id: str, *, now: float) -> None:
        """The supervisor's call ended (or was handed back): wrap-up, then available again."""
        supervisor = self._supervisor(supervisor_id)
        on_call = self._on_call.pop(supervisor_id, None)
        if on_call is not None:
            queue, accepted_at = on_call
            self._handle_times[queue].append(max(0.0, now - accepted_at))
        self._supervisors[supervisor_id] = dataclasses.replace(
            supervisor, state=SupervisorState.WRAP_UP, since=now
        )
        self._end_wrap_up(now)

    # --- the clock -------------------------------------------------------------------------

    def tick(self, now: float) -> list[Action]:
        """What to do at `now`: withdrawals, fallbacks, offers, then announcements."""
        if now < self._now:
            raise ValueError(f"tick at {now} is before the last tick at {self._now}")
        self._now = now
        actions, self._pending = self._pending, []
        self._end_wrap_up(now)
        actions.extend(self._expire_offers(now))
        actions.extend(self._fall_back(now))
        actions.extend(self._distribute(now))
        actions.extend(self._announce(now))
        return actions

    # --- queries ---------------------------------------------------------------------------

    def supervisor(self, supervisor_id: str) -> Supervisor:
        return self._supervisor(supervisor_id)

    def offer(self, call_id: str) -> Offer | None:
        return self._offers.get(call_id)

    def waiting_call(self, call_id: str) -> WaitingCall | None:
        """The call while it waits in a queue, being offered or not."""
        return self._waiting.get(call_id)

    def waiting(self, queue: str, now: float) -> list[WaitingCall]:
        """The queue's calls not being offered, in the order they will be offered."""
        self._policy(queue)
        calls = [
            call
            for call in self._waiting.values()
            if call.queue == queue and call.call_id not in self._offers
        ]
        return self._in_order(calls, now)

    def position(self, call_id: str, now: float) -> int | None:
        """1 for the next call to be offered in its queue; None if it is not waiting."""
        call = self._waiting.get(call_id)
        if call is None or call_id in self._offers:
            return None
        order = [waiting.call_id for waiting in self.waiting(call.queue, now)]
        return order.index(call_id) + 1

    def expected_wait_s(self, queue: str, position: int) -> float | None:
        """Seconds until the caller at `position` is offered, or None with nothing to go on.

        Each staffed supervisor (serving the queue with its skills, not away) frees up once per
        mean recent handle time plus wrap-up, so `position` calls are through after
        `position * cycle / staffed`. None when nobody staffs the queue or no call in it has
        been handled yet: a made-up number would be a promise we cannot keep.
        """
        policy = self._policy(queue)
        samples = self._handle_times[queue]
        staffed = sum(
            1
            for supervisor in self._supervisors.values()
            if supervisor.state is not SupervisorState.AWAY
            and supervisor.can_take(policy, frozenset())
        )
        if not samples or not staffed:
            return None
        cycle = sum(samples) / len(samples) + self.config.wrap_up_s
        return position * cycle / staffed

    def service_level(self, queue: str) -> ServiceLevel:
        self._policy(queue)
        return self._stats[queue]

    # --- the steps of a tick ---------------------------------------------------------------

    def _end_wrap_up(self, now: float) -> None:
        for supervisor in list(self._supervisors.values()):
            ends_at = supervisor.since + self.config.wrap_up_s
            if supervisor.state is SupervisorState.WRAP_UP and ends_at <= now:
                # Idle from the moment wrap-up ended, however late the tick that noticed.
                self._supervisors[supervisor.supervisor_id] = dataclasses.replace(
                    supervisor, state=SupervisorState.AVAILABLE, since=ends_at
                )

    def _expire_offers(self, now: float) -> list[Action]:
        expired = [offer for offer in self._offers.values() if offer.expires_at <= now]
        for offer in expired:
            self._return_to_queue(offer.call_id, offer.supervisor_id)
        return [
            OfferWithdrawn(offer.call_id, offer.supervisor_id, WithdrawReason.TIMED_OUT)
            for offer in expired
        ]

    def _fall_back(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for call in list(self._waiting.values()):
            policy = self._policies[call.queue]
            waited = now - call.queued_at
            if call.call_id in self._offers or waited < policy.max_wait_s:
                continue
            del self._waiting[call.call_id]
            self._count(call.queue, fell_back=1)
            actions.append(Fallback(call.call_id, call.queue, policy.fallback, waited))
        return actions

    def _distribute(self, now: float) -> list[Action]:
        actions: list[Action] = []
        calls = [call for call in self._waiting.values() if call.call_id not in self._offers]
        for call in self._in_order(calls, now):
            supervisor = self._pick_supervisor(call)
            if supervisor is None:
                continue
            policy = self._policies[call.queue]
            offer = Offer(call.call_id, supervisor.supervisor_id, now, now + policy.offer_timeout_s)
            self._offers[call.call_id] = offer
            actions.append(
                OfferCall(call.call_id, supervisor.supervisor_id, call.queue, offer.expires_at)
            )
        return actions

    def _announce(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for queue, policy in self._policies.items():
            for position, call in enumerate(self.waiting(queue, now), start=1):
                if call.next_announce_at > now:
                    continue
                actions.append(
                    Announce(call.call_id, position, self.expected_wait_s(queue, position))
                )
                # Keep the cadence from the queue time; a late tick does not bunch announcements.
                next_at = call.next_announce_at + policy.announce_interval_s
                if next_at <= now:
                    next_at = now + policy.announce_interval_s
                self._waiting[call.call_id] = dataclasses.replace(call, next_announce_at=next_at)
        return actions

    def _pick_supervisor(self, call: WaitingCall) -> Supervisor | None:
        policy = self._policies[call.queue]
        ringing = {offer.supervisor_id for offer in self._offers.values()}
        free = [
            supervisor
            for supervisor in self._supervisors.values()
            if supervisor.state is SupervisorState.AVAILABLE
            and supervisor.supervisor_id not in ringing
            and supervisor.can_take(policy, call.skills)
        ]
        fresh = [s for s in free if s.supervisor_id not in call.passed_over]
        candidates = fresh or free
        if not candidates:
            return None
        return min(candidates, key=lambda s: (s.since, s.supervisor_id))

    def _in_order(self, calls: list[WaitingCall], now: float) -> list[WaitingCall]:
        aging_s = self.config.aging_s

        def key(call: WaitingCall) -> tuple[float, float, int]:
            priority = effective_priority(call, self._policies[call.queue], now, aging_s=aging_s)
            return (-priority, call.queued_at, call.seq)

        return sorted(calls, key=key)

    # --- helpers ---------------------------------------------------------------------------

    def _return_to_queue(self, call_id: str, supervisor_id: str) -> None:
        del self._offers[call_id]
        call = self._waiting[call_id]
        self._waiting[call_id] = dataclasses.replace(
            call, passed_over=call.passed_over | {supervisor_id}
        )

    def _withdraw_offers_to(self, supervisor_id: str) -> None:
        for offer in list(self._offers.values()):
            if offer.supervisor_id == supervisor_id:
                self._return_to_queue(offer.call_id, supervisor_id)
                self._pending.append(
                    OfferWithdrawn(offer.call_id, supervisor_id, WithdrawReason.SUPERVISOR_AWAY)
                )

    def _count(self, queue: str, **add: int) -> None:
        stats = self._stats[queue]
        self._stats[queue] = dataclasses.replace(
            stats, **{field: getattr(stats, field) + count for field, count in add.items()}
        )

    def _policy(self, queue: str) -> QueuePolicy:
        policy = self._policies.get(queue)
        if policy is None:
            raise AcdError(f"unknown queue {queue!r} (known: {', '.join(sorted(self._policies))})")
        return policy

    def _supervisor(self, supervisor_id: str) -> Supervisor:
        supervisor = self._supervisors.get(supervisor_id)
        if supervisor is None:
            raise AcdError(f"unknown supervisor {supervisor_id!r}")
        return supervisor

    def _offer(self, call_id: str, supervisor_id: str) -> Offer:
        offer = self._offers.get(call_id)
        if offer is None or offer.supervisor_id != supervisor_id:
            raise AcdError(
                f"no offer of call {call_id} to supervisor {supervisor_id} is out "
                "(it timed out, was withdrawn, or went to someone else)"
            )
        return offer
