"""Automatic call distribution on timelines: who gets offered what, and when."""

from __future__ import annotations

import math
from collections.abc import Iterable

import pytest

from escalation.acd import (
    AcdConfig,
    AcdError,
    Action,
    Announce,
    Distributor,
    Fallback,
    FallbackKind,
    OfferCall,
    OfferWithdrawn,
    QueuePolicy,
    ServiceLevel,
    SupervisorState,
    WaitingCall,
    WithdrawReason,
    effective_priority,
)

BILLING = QueuePolicy(
    name="billing",
    skills=frozenset({"billing"}),
    service_level_target_s=20.0,
    max_wait_s=120.0,
    offer_timeout_s=15.0,
    announce_interval_s=30.0,
)
SALES = QueuePolicy(name="sales", priority_weight=2.0, max_wait_s=300.0)
QUIET = AcdConfig(wrap_up_s=30.0, aging_s=60.0)


def acd(*policies: QueuePolicy, config: AcdConfig = QUIET) -> Distributor:
    return Distributor(policies or (BILLING, SALES), config)


def join(
    distributor: Distributor,
    supervisor_id: str,
    at: float,
    *,
    skills: Iterable[str] = ("billing",),
    queues: Iterable[str] = ("billing", "sales"),
) -> None:
    distributor.supervisor_joined(supervisor_id, skills=skills, queues=queues, now=at)


def offers(actions: list[Action]) -> list[tuple[str, str]]:
    return [(a.call_id, a.supervisor_id) for a in actions if isinstance(a, OfferCall)]


def announcements(actions: list[Action]) -> list[Announce]:
    return [a for a in actions if isinstance(a, Announce)]


# --- who gets the call ---------------------------------------------------------------------


def test_the_longest_idle_supervisor_gets_the_offer() -> None:
    distributor = acd()
    join(distributor, "cat", at=30.0)
    join(distributor, "ann", at=10.0)
    join(distributor, "bob", at=20.0)
    distributor.call_queued("c1", queue="billing", now=40.0)
    actions = distributor.tick(40.0)
    assert actions == [OfferCall("c1", "ann", "billing", expires_at=55.0)]
    assert distributor.offer("c1") is not None


def test_idle_time_restarts_when_a_supervisor_comes_back() -> None:
    distributor = acd()
    join(distributor, "ann", at=0.0)
    join(distributor, "bob", at=20.0)
    distributor.supervisor_state_changed("ann", SupervisorState.AWAY, now=25.0)
    distributor.supervisor_state_changed("ann", SupervisorState.AVAILABLE, now=30.0)
    distributor.call_queued("c1", queue="billing", now=40.0)
    assert offers(distributor.tick(40.0)) == [("c1", "bob")]


def test_supervisors_without_the_skills_or_the_queue_are_passed_by() -> None:
    distributor = acd()
    join(distributor, "ann", at=0.0, skills=())  # longest idle, but no billing skill
    join(distributor, "bob", at=5.0, queues=("sales",))  # skilled, but not on billing
    join(distributor, "cat", at=10.0, skills=("billing", "es"))
    join(distributor, "dan", at=1.0)
    distributor.call_queued("c1", queue="billing", now=20.0, skills=("es",))  # needs Spanish
    distributor.call_queued("c2", queue="billing", now=21.0)
    assert offers(distributor.tick(21.0)) == [("c1", "cat"), ("c2", "dan")]


def test_a_call_nobody_can_take_does_not_block_the_calls_behind_it() -> None:
    distributor = acd()
    join(distributor, "ann", at=0.0, skills=(), queues=("sales",))
    distributor.call_queued("c1", queue="billing", now=1.0, priority=5)
    distributor.call_queued("c2", queue="sales", now=2.0)
    assert offers(distributor.tick(2.0)) == [("c2", "ann")]


def test_a_supervisor_with_a_ringing_offer_gets_no_second_one() -> None:
    distributor = acd()
    join(distributor, "ann", at=0.0)
    distributor.call_queued("c1", queue="billing", now=1.0)
    distributor.call_queued("c2", queue="billing", now=2.0)
    assert offers(distributor.tick(2.0)) == [("c1", "ann")]
    assert offers(distributor.tick(3.0)) == []


# --- priority and aging --------------------------------------------------------------------


def test_effective_priority_is_weighted_priority_plus_minutes_waited() -> None:
    call = WaitingCall("c1", queue="sales", queued_at=100.0, priority=3)
    assert effective_priority(call, SALES, 100.0, aging_s=60.0) == 6.0
    assert effective_priority(call, SALES, 190.0, aging_s=60.0) == 7.5
    assert effective_priority(call, SALES, 50.0, aging_s=60.0) == 6.0  # never negative aging


def test_higher_priority_goes_first_then_the_longest_waiting() -> None:
    distributor = acd()
    distributor.call_queued("old", queue="billing", now=0.0)
    distributor.call_queued("vip", queue="billing", now=10.0, priority=1)
    distributor.call_queued("new", queue="billing", now=20.0)
    assert [c.call_id for c in distributor.waiting("billing", 20.0)] == ["vip", "old", "new"]
    join(distributor, "ann", at=0.0)
    join(distributor, "bob", at=1.0)
    assert offers(distributor.tick(20.0)) == [("vip", "ann"), ("old", "bob")]


def test_a_waiting_call_ends_up_ahead_of_every_newer_higher_priority_call() -> None:
    distributor = acd()
    distributor.call_queued("low", queue="billing", now=0.0)
    # At 100 s the low call is worth 100/60 = 1.67: a new priority-2 call goes first.
    distributor.call_queued("p2-early", queue="billing", now=100.0, priority=2)
    # At 130 s it is worth 2.17: it now goes before a new priority-2 call.
    distributor.call_queued("p2-late", queue="billing", now=130.0, priority=2)
    order = [c.call_id for c in distributor.waiting("billing", 130.0)]
    assert order == ["p2-early", "low", "p2-late"]


def test_a_queue_weight_scales_its_calls_priority() -> None:
    distributor = acd()
    join(distributor, "ann", at=0.0)
    distributor.call_queued("b", queue="billing", now=0.0, priority=1)  # 1 + 0.5 at 30 s
    distributor.call_queued("s", queue="sales", now=30.0, priority=1)  # weight 2: 2
    assert offers(distributor.tick(30.0)) == [("s", "ann")]


def test_aging_gets_the_long_waiting_call_offered_first() -> None:
    distributor = acd(BILLING, config=AcdConfig(aging_s=10.0))
    join(distributor, "ann", at=0.0, queues=("billing",))
    distributor.supervisor_state_changed("ann", SupervisorState.BUSY, now=0.0)
    distributor.call_queued("low", queue="billing", now=0.0)
    distributor.call_queued("urgent", queue="billing", now=25.0, priority=2)
    distributor.supervisor_state_changed("ann", SupervisorState.AVAILABLE, now=30.0)
    # At 30 s: low = 30/10 = 3.0, urgent = 2 + 5/10 = 2.5.
    assert offers(distributor.tick(30.0)) == [("low", "ann")]


# --- offers that are not taken -------------------------------------------------------------


def test_an_unanswered_offer_moves_to_the_next_supervisor_at_its_timeout() -> None:
    distributor = acd()
    join(distributor, "ann", at=0.0)
    join(distributor, "bob", at=5.0)
    distributor.call_queued("c1", queue="billing", now=10.0)
    assert offers(distributor.tick(10.0)) == [("c1", "ann")]
    assert distributor.tick(24.9) == []
    assert distributor.tick(25.0) == [
        OfferWithdrawn("c1", "ann", WithdrawReason.TIMED_OUT),
        OfferCall("c1", "bob", "billing", expires_at=40.0),
    ]


def test_the_one_who_let_it_pass_gets_it_again_only_when_nobody_else_can() -> None:
    distributor = acd()
    join(distributor, "ann", at=0.0)
    join(distributor, "bob", at=5.0)
    distributor.call_queued("c1", queue="billing", now=10.0)
    distributor.tick(10.0)
    distributor.offer_declined("c1", supervisor_id="ann", now=11.0)
    assert offers(distributor.tick(11.0)) == [("c1", "bob")]
    assert offers(distributor.tick(26.0)) == [("c1", "ann")]  # bob let it ring out too


def test_a_lone_supervisor_who_declined_is_offered_it_again() -> None:
    distributor = acd()
    join(distributor, "ann", at=0.0)
    distributor.call_queued("c1", queue="billing", now=1.0)
    distributor.tick(1.0)
    distributor.offer_declined("c1", supervisor_id="ann", now=2.0)
    assert offers(distributor.tick(2.0)) == [("c1", "ann")]


def test_a_supervisor_going_away_while_it_rings_withdraws_the_offer() -> None:
    distributor = acd()
    join(distributor, "ann", at=0.0)
    join(distributor, "bob", at=5.0)
    distributor.call_queued("c1", queue="billing", now=10.0)
    distributor.tick(10.0)
    distributor.supervisor_state_changed("ann", SupervisorState.AWAY, now=12.0)
    assert distributor.tick(12.0) == [
        OfferWithdrawn("c1", "ann", WithdrawReason.SUPERVISOR_AWAY),
        OfferCall("c1", "bob", "billing", expires_at=27.0),
    ]


def test_a_caller_hanging_up_while_it_rings_withdraws_the_offer() -> None:
    distributor = acd()
    join(distributor, "ann", at=0.0)
    distributor.call_queued("c1", queue="billing", now=1.0)
    distributor.tick(1.0)
    distributor.caller_hung_up("c1", now=3.0)
    distributor.caller_hung_up("c1", now=3.5)  # teardown may say it twice
    assert distributor.tick(4.0) == [OfferWithdrawn("c1", "ann", WithdrawReason.CALLER_HUNG_UP)]
    assert distributor.service_level("billing").abandoned == 1


def test_an_accept_for_an_offer_no_longer_out_is_refused() -> None:
    distributor = acd()
    join(distributor, "ann", at=0.0)
    join(distributor, "bob", at=1.0)
    distributor.call_queued("c1", queue="billing", now=2.0)
    distributor.tick(2.0)
    distributor.tick(17.0)  # ann's offer timed out; bob's rings
    with pytest.raises(AcdError, match="no offer of call c1 to supervisor ann"):
        distributor.offer_accepted("c1", supervisor_id="ann", now=17.5)
    distributor.offer_accepted("c1", supervisor_id="bob", now=18.0)
    assert distributor.supervisor("bob").state is SupervisorState.BUSY
    assert distributor.waiting("billing", 18.0) == []


# --- fallback ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [FallbackKind.AI, FallbackKind.CALLBACK])
def test_the_fallback_comes_at_the_max_wait(kind: FallbackKind) -> None:
    policy = QueuePolicy(name="billing", max_wait_s=90.0, fallback=kind)
    distributor = acd(policy)
    distributor.call_queued("c1", queue="billing", now=10.0)
    assert [a for a in distributor.tick(99.9) if isinstance(a, Fallback)] == []
    assert distributor.tick(100.0) == [Fallback("c1", "billing", kind, waited_s=90.0)]
    assert distributor.tick(200.0) == []  # once
    assert distributor.service_level("billing").fell_back == 1


def test_an_offer_ringing_at_the_max_wait_is_left_to_finish() -> None:
    policy = QueuePolicy(name="billing", max_wait_s=60.0, offer_timeout_s=15.0)
    distributor = acd(policy)
    distributor.call_queued("c1", queue="billing", now=0.0)
    join(distributor, "ann", at=50.0, skills=(), queues=("billing",))
    assert offers(distributor.tick(50.0)) == [("c1", "ann")]
    assert distributor.tick(60.0) == []
    assert distributor.tick(65.0) == [
        OfferWithdrawn("c1", "ann", WithdrawReason.TIMED_OUT),
        Fallback("c1", "billing", FallbackKind.AI, waited_s=65.0),
    ]


# --- announcements -------------------------------------------------------------------------


def test_announcements_come_every_interval_from_the_queue_time() -> None:
    distributor = acd()
    distributor.call_queued("c1", queue="billing", now=5.0)
    heard = []
    for t in (5.0, 20.0, 34.9, 35.0, 36.0, 64.0, 65.0, 80.0):
        heard += [(t, a.position) for a in announcements(distributor.tick(t))]
    assert heard == [(35.0, 1), (65.0, 1)]


def test_a_late_tick_announces_once_and_restarts_the_cadence() -> None:
    distributor = acd()
    distributor.call_queued("c1", queue="sales", now=0.0)  # falls back only at 300 s
    assert len(announcements(distributor.tick(100.0))) == 1  # three were due; one is said
    assert announcements(distributor.tick(129.0)) == []
    assert len(announcements(distributor.tick(130.0))) == 1


def test_positions_follow_the_offer_order_and_a_ringing_call_is_not_announced() -> None:
    distributor = acd()
    join(distributor, "ann", at=0.0)
    distributor.supervisor_state_changed("ann", SupervisorState.BUSY, now=0.0)
    distributor.call_queued("a", queue="billing", now=0.0)
    distributor.call_queued("b", queue="billing", now=1.0, priority=2)
    distributor.call_queued("c", queue="billing", now=2.0)
    assert distributor.position("b", 31.0) == 1
    assert [(a.call_id, a.position) for a in announcements(distributor.tick(32.0))] == [
        ("b", 1),
        ("a", 2),
        ("c", 3),
    ]
    distributor.supervisor_state_changed("ann", SupervisorState.AVAILABLE, now=40.0)
    assert offers(distributor.tick(40.0)) == [("b", "ann")]
    assert distributor.position("b", 40.0) is None
    assert [(a.call_id, a.position) for a in announcements(distributor.tick(62.0))] == [
        ("a", 1),
        ("c", 2),
    ]


def test_the_expected_wait_is_unknown_without_handle_times() -> None:
    distributor = acd()
    join(distributor, "ann", at=0.0)
    distributor.supervisor_state_changed("ann", SupervisorState.BUSY, now=0.0)
    distributor.call_queued("c1", queue="billing", now=0.0)
    (announce,) = announcements(distributor.tick(30.0))
    assert announce == Announce("c1", position=1, expected_wait_s=None)


def test_the_expected_wait_comes_from_recent_handle_times_and_staffing() -> None:
    distributor = acd()
    join(distributor, "ann", at=0.0)
    join(distributor, "bob", at=1.0)
    join(distributor, "cat", at=2.0)
    # Two handled calls: 100 s and 140 s, a mean of 120 s, plus 30 s wrap-up: a 150 s cycle.
    for call_id, supervisor, handle_s in (("h1", "ann", 100.0), ("h2", "bob", 140.0)):
        distributor.call_queued(call_id, queue="billing", now=10.0)
        distributor.tick(10.0)
        distributor.offer_accepted(call_id, supervisor_id=supervisor, now=10.0)
        distributor.supervisor_finished_call(supervisor, now=10.0 + handle_s)
    distributor.supervisor_state_changed("cat", SupervisorState.AWAY, now=10.0)  # not staffed
    for supervisor in ("ann", "bob"):
        distributor.supervisor_state_changed(supervisor, SupervisorState.BUSY, now=200.0)
    distributor.call_queued("c1", queue="billing", now=200.0)
    distributor.call_queued("c2", queue="billing", now=201.0)
    # Two staffed supervisors: position 1 waits 150/2, position 2 waits 2 * 150 / 2.
    assert distributor.expected_wait_s("billing", 1) == 75.0
    assert announcements(distributor.tick(231.0)) == [
        Announce("c1", 1, 75.0),
        Announce("c2", 2, 150.0),
    ]
    for supervisor in ("ann", "bob"):
        distributor.supervisor_state_changed(supervisor, SupervisorState.AWAY, now=240.0)
    assert distributor.expected_wait_s("billing", 1) is None  # nobody is there to answer


# --- wrap-up -------------------------------------------------------------------------------


def test_wrap_up_ends_after_the_wrap_up_time_and_counts_as_idle_from_then() -> None:
    distributor = acd()
    join(distributor, "ann", at=0.0)
    join(distributor, "bob", at=50.0)
    distributor.call_queued("c1", queue="billing", now=1.0)
    distributor.tick(1.0)
    distributor.offer_accepted("c1", supervisor_id="ann", now=2.0)
    distributor.supervisor_finished_call("ann", now=40.0)
    assert distributor.supervisor("ann").state is SupervisorState.WRAP_UP
    distributor.tick(69.9)
    assert distributor.supervisor("ann").state is SupervisorState.WRAP_UP
    distributor.tick(100.0)  # noticed late
    ann = distributor.supervisor("ann")
    assert (ann.state, ann.since) == (SupervisorState.AVAILABLE, 70.0)
    distributor.call_queued("c2", queue="billing", now=100.0)
    assert offers(distributor.tick(100.0)) == [("c2", "bob")]  # idle since 50, ann since 70


def test_a_call_waits_out_the_wrap_up_and_then_is_offered() -> None:
    distributor = acd()
    join(distributor, "ann", at=0.0)
    distributor.call_queued("c1", queue="billing", now=1.0)
    distributor.tick(1.0)
    distributor.offer_accepted("c1", supervisor_id="ann", now=2.0)
    distributor.supervisor_finished_call("ann", now=10.0)
    distributor.call_queued("c2", queue="billing", now=11.0)
    assert offers(distributor.tick(39.9)) == []
    assert offers(distributor.tick(40.0)) == [("c2", "ann")]


def test_no_wrap_up_time_makes_the_supervisor_available_at_once() -> None:
    distributor = acd(BILLING, config=AcdConfig(wrap_up_s=0.0))
    join(distributor, "ann", at=0.0, queues=("billing",))
    distributor.call_queued("c1", queue="billing", now=1.0)
    distributor.tick(1.0)
    distributor.offer_accepted("c1", supervisor_id="ann", now=2.0)
    distributor.supervisor_finished_call("ann", now=10.0)
    assert distributor.supervisor("ann").state is SupervisorState.AVAILABLE


# --- service level -------------------------------------------------------------------------


def test_service_level_is_the_share_of_callers_answered_within_the_target() -> None:
    distributor = acd()
    assert distributor.service_level("billing").share is None
    join(distributor, "ann", at=0.0)
    join(distributor, "bob", at=1.0)
    distributor.call_queued("fast", queue="billing", now=0.0)
    distributor.call_queued("slow", queue="billing", now=0.0)
    distributor.call_queued("gone", queue="billing", now=0.0)
    distributor.tick(0.0)
    distributor.offer_accepted("fast", supervisor_id="ann", now=20.0)  # at the target: within
    distributor.offer_declined("slow", supervisor_id="bob", now=5.0)
    distributor.caller_hung_up("gone", now=6.0)
    distributor.tick(6.0)
    distributor.offer_accepted("slow", supervisor_id="bob", now=20.5)
    level = distributor.service_level("billing")
    assert level == ServiceLevel(answered=2, answered_within_target=1, abandoned=1, fell_back=0)
    assert level.share == pytest.approx(1 / 3)


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": " "}, "needs a name"),
        ({"priority_weight": 0.0}, "priority_weight must be a positive number"),
        ({"offer_timeout_s": -1.0}, "offer_timeout_s must be a positive number"),
        ({"announce_interval_s": math.nan}, "announce_interval_s must be a positive number"),
        ({"max_wait_s": 10.0}, r"service_level_target_s \(20.0\) must not exceed max_wait_s"),
        ({"skills": frozenset({""})}, "skills must be non-empty"),
    ],
)
def test_a_bad_queue_policy_is_refused_with_what_is_wrong(
    changes: dict[str, object], message: str
) -> None:
    fields: dict[str, object] = {"name": "billing", **changes}
    with pytest.raises(ValueError, match=message):
        QueuePolicy(**fields)  # type: ignore[arg-type]


def test_a_queue_policy_from_a_plain_dict() -> None:
    policy = QueuePolicy.from_dict(
        {
            "name": "billing",
            "skills": ["billing", "es"],
            "priority_weight": 2,
            "service_level_target_s": 20,
            "max_wait_s": 180,
            "offer_timeout_s": 15,
            "announce_interval_s": 45,
            "fallback": "callback",
        }
    )
    assert policy == QueuePolicy(
        name="billing",
        skills=frozenset({"billing", "es"}),
        priority_weight=2.0,
        max_wait_s=180.0,
        announce_interval_s=45.0,
        fallback=FallbackKind.CALLBACK,
    )
    assert QueuePolicy.from_dict({"name": "sales"}) == QueuePolicy(name="sales")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"name": "b", "max_wait": 60, "colour": "red"},
            "unknown queue policy keys: colour, max_wait",
        ),
        ({"skills": ["billing"]}, "needs a name"),
        ({"name": "b", "skills": "billing"}, "skills must be a list"),
        ({"name": "b", "skills": ["billing", 3]}, "every skill must be a string"),
        ({"name": "b", "max_wait_s": "60"}, "max_wait_s must be a number"),
        ({"name": "b", "offer_timeout_s": True}, "offer_timeout_s must be a number"),
        ({"name": "b", "fallback": "voicemail"}, "fallback must be one of ai, callback"),
        ({"name": "b", "offer_timeout_s": 0}, "offer_timeout_s must be a positive number"),
    ],
)
def test_a_bad_queue_policy_dict_is_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QueuePolicy.from_dict(data)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"wrap_up_s": -1.0}, "wrap_up_s must be zero or more"),
        ({"aging_s": 0.0}, "aging_s must be a positive number"),
        ({"handle_time_samples": 0}, "handle_time_samples must be at least 1"),
    ],
)
def test_a_bad_acd_config_is_refused(changes: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AcdConfig(**changes)  # type: ignore[arg-type]


def test_events_that_do_not_fit_are_refused() -> None:
    distributor = acd()
    with pytest.raises(AcdError, match="unknown queue 'support'"):
        distributor.call_queued("c1", queue="support", now=0.0)
    with pytest.raises(AcdError, match="serves unknown queues: support"):
        distributor.supervisor_joined("ann", skills=(), queues=("support",), now=0.0)
    with pytest.raises(AcdError, match="unknown supervisor 'zed'"):
        distributor.supervisor_state_changed("zed", SupervisorState.AWAY, now=0.0)
    distributor.call_queued("c1", queue="billing", now=0.0)
    with pytest.raises(AcdError, match="already waiting"):
        distributor.call_queued("c1", queue="billing", now=1.0)
    with pytest.raises(ValueError, match="two queue policies are named billing"):
        Distributor([BILLING, BILLING])


def test_the_clock_must_not_go_backwards() -> None:
    distributor = acd()
    distributor.tick(10.0)
    with pytest.raises(ValueError, match="before the last tick"):
        distributor.tick(9.0)


def test_a_supervisor_leaving_while_it_rings_passes_the_call_on() -> None:
    distributor = acd()
    join(distributor, "ann", at=0.0)
    join(distributor, "bob", at=1.0)
    distributor.call_queued("c1", queue="billing", now=2.0)
    distributor.tick(2.0)
    distributor.supervisor_left("ann", now=3.0)
    assert distributor.tick(3.0) == [
        OfferWithdrawn("c1", "ann", WithdrawReason.SUPERVISOR_AWAY),
        OfferCall("c1", "bob", "billing", expires_at=18.0),
    ]
    with pytest.raises(AcdError, match="unknown supervisor 'ann'"):
        distributor.supervisor("ann")
