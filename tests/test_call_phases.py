"""The call-phase state machine and the who-hears-whom table, on their own."""

from __future__ import annotations

import pytest

from telephony import phases
from telephony.mixing import Leg, Mix, changes, connections, hears
from telephony.phases import (
    AgentLink,
    ApplyMix,
    CallState,
    DetachAgent,
    DialSupervisor,
    DropSupervisor,
    DtmfTo,
    EndCall,
    Instruct,
    Mode,
    NotNow,
    OpenAgent,
    Phase,
    PlayPrompt,
    ReattachAgent,
    StartDisclosure,
    StopPrompts,
    Transfer,
)

C, A, P, S, B = Leg.CALLER, Leg.AGENT, Leg.PROMPT, Leg.SUPERVISOR, Leg.BRIEFING

# --- who hears whom --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mix", "listener", "expected"),
    [
        (Mix.SILENT, C, set()),
        (Mix.PROMPTS, C, {P}),
        (Mix.PROMPTS, A, set()),  # the agent hears nothing of the disclosure
        (Mix.AGENT, C, {A, P}),
        (Mix.AGENT, A, {C}),
        (Mix.BRIEFING, S, {B}),  # the summary, and nothing of the call yet
        (Mix.BRIEFING, C, {A, P}),
        (Mix.MONITOR, S, {C, A, P, B}),  # the summary goes on if a mode is picked early
        (Mix.MONITOR, C, {A, P}),  # nobody hears the supervisor
        (Mix.MONITOR, A, {C}),
        (Mix.WHISPER, C, {A, P}),
        (Mix.WHISPER, A, {C}),  # coaching is text, never the supervisor's voice in the mix
        (Mix.BARGE, C, {A, S, P}),
        (Mix.BARGE, A, {C, S}),
        (Mix.BARGE, S, {C, A, P, B}),
        (Mix.TAKEOVER, C, {S, P}),
        (Mix.TAKEOVER, S, {C, P, B}),
        (Mix.TAKEOVER, A, set()),  # the agent has left the call
        (Mix.HOLD_WITH_SUPERVISOR, C, {P}),
        (Mix.HOLD_WITH_SUPERVISOR, S, {B}),  # no hold music over the summary
    ],
)
def test_who_hears_whom(mix: Mix, listener: Leg, expected: set[Leg]) -> None:
    assert hears(mix, listener) == expected


def test_nobody_hears_themselves_and_someone_always_drains_caller_and_supervisor() -> None:
    with_supervisor = {m for m in Mix if any(S in c for c in connections(m))}
    assert with_supervisor == {
        Mix.BRIEFING,
        Mix.MONITOR,
        Mix.WHISPER,
        Mix.BARGE,
        Mix.TAKEOVER,
        Mix.HOLD_WITH_SUPERVISOR,
    }
    for mix in Mix:
        assert all(source is not to for source, to in connections(mix))
        # Only the supervisor ever hears their briefing.
        assert all(to is S for source, to in connections(mix) if source is B)
        # The prompt player takes the caller's (and the supervisor's) audio and drops it
        # exactly where nobody else listens to that leg, so no jitter buffer backs up, and
        # it costs no frame callbacks where the leg is heard anyway.
        for leg in (C, S):
            present = (leg is C and mix is not Mix.SILENT) or mix in with_supervisor
            heard_by_others = any(src is leg and to is not P for src, to in connections(mix))
            assert ((leg, P) in connections(mix)) == (present and not heard_by_others), (mix, leg)


def test_changes_stop_before_start_and_skip_absent_legs() -> None:
    now = connections(Mix.AGENT)
    stop, start = changes(now, Mix.TAKEOVER, [C, A, P, S])
    assert set(stop) == {(C, A), (A, C)}
    assert set(start) == {(C, S), (S, C), (P, S)}  # both are heard: no drain needed
    # The supervisor's leg is not up yet: nothing to or from it.
    stop, start = changes(now, Mix.TAKEOVER, [C, A, P])
    assert set(stop) == {(C, A), (A, C)}
    assert start == []
    stop, start = changes(connections(Mix.SILENT), Mix.PROMPTS, [C, A, P])
    assert (stop, start) == ([], [(C, P), (P, C)])
    assert changes(now, Mix.AGENT, [C, A, P]) == ([], [])


# --- phases ----------------------------------------------------------------------------------


def _with_agent() -> CallState:
    state, _ = phases.media_up(CallState(), disclosure=False)
    return state


def _rung(state: CallState) -> CallState:
    state, actions = phases.call_supervisor(state, uri="sip:alice@127.0.0.1")
    assert actions == [DialSupervisor("sip:alice@127.0.0.1")] and state.ringing
    return state


def _with_supervisor(mode: Mode) -> CallState:
    state, _ = phases.hold(_with_agent())
    state, _ = phases.supervisor_joined(_rung(state))
    state, _ = phases.set_mode(state, mode)
    return state


def test_a_call_with_a_disclosure_bridges_to_the_agent_on_consent() -> None:
    state, actions = phases.media_up(CallState(), disclosure=True)
    assert state.phase is Phase.DISCLOSING
    assert actions == [StartDisclosure(), ApplyMix(Mix.PROMPTS)]
    assert phases.dtmf_to(state) is DtmfTo.CONSENT
    state, actions = phases.consent_given(state)
    assert (state.phase, state.agent) == (Phase.WITH_AGENT, AgentLink.ATTACHED)
    assert actions == [OpenAgent(), ApplyMix(Mix.AGENT)]
    assert phases.dtmf_to(state) is DtmfTo.AGENT


def test_refused_consent_says_goodbye_or_transfers() -> None:
    state, _ = phases.media_up(CallState(), disclosure=True)
    _, actions = phases.consent_refused(state, reason="consent_no", transfer_to=None, goodbye=True)
    assert actions == [PlayPrompt("goodbye", wait=True), EndCall("consent_no")]
    _, actions = phases.consent_refused(
        state, reason="consent_no", transfer_to="sip:desk@pbx", goodbye=True
    )
    assert actions == [Transfer("sip:desk@pbx", "consent_no")]


def test_model_failure_plays_the_fallback_then_ends_or_transfers() -> None:
    state, actions = phases.session_failed(_with_agent(), transfer_to=None)
    assert state.phase is Phase.FALLBACK
    assert actions == [
        StopPrompts(),
        DetachAgent(close=True),
        ApplyMix(Mix.PROMPTS),
        PlayPrompt("fallback", wait=True),
        EndCall("session_failed"),
    ]
    # Only once, however many times the session reports it.
    assert phases.session_failed(state, transfer_to=None) == (state, [])
    _, actions = phases.session_failed(_with_agent(), transfer_to="sip:desk@pbx")
    assert actions[-1] == Transfer("sip:desk@pbx", "session_failed")


def test_model_failure_during_a_takeover_leaves_the_human_call_alone() -> None:
    state, actions = phases.session_failed(_with_supervisor(Mode.TAKEOVER), transfer_to=None)
    assert (state.phase, state.mode, state.agent) == (
        Phase.WITH_HUMAN,
        Mode.TAKEOVER,
        AgentLink.NONE,
    )
    assert actions == [DetachAgent(close=True)]
    with pytest.raises(NotNow, match="nobody to hand it back to"):
        phases.hand_back(state, note="done")


def test_hold_detaches_the_agent_and_plays_hold_audio() -> None:
    state, actions = phases.hold(_with_agent())
    assert (state.phase, state.agent) == (Phase.QUEUED, AgentLink.DETACHED)
    assert actions == [DetachAgent(), ApplyMix(Mix.PROMPTS), PlayPrompt("hold", loop=True)]
    assert phases.dtmf_to(state) is DtmfTo.QUEUE
    state, actions = phases.unhold(state, note="Nobody could answer; apologise.")
    assert (state.phase, state.agent) == (Phase.WITH_AGENT, AgentLink.ATTACHED)
    assert actions == [
        StopPrompts(),
        ReattachAgent("Nobody could answer; apologise."),
        ApplyMix(Mix.AGENT),
    ]


def test_a_supervisor_is_briefed_then_takes_over_and_hands_back() -> None:
    state, _ = phases.hold(_with_agent())
    state, actions = phases.supervisor_joined(_rung(state))
    assert actions == [ApplyMix(Mix.HOLD_WITH_SUPERVISOR)]
    state, actions = phases.set_mode(state, Mode.TAKEOVER)
    assert (state.phase, state.mode, state.agent) == (
        Phase.WITH_HUMAN,
        Mode.TAKEOVER,
        AgentLink.DETACHED,
    )
    assert actions == [StopPrompts(), ApplyMix(Mix.TAKEOVER)]
    assert phases.dtmf_to(state) is DtmfTo.NOBODY
    state, actions = phases.hand_back(state, note="Refund approved")
    assert (state.phase, state.agent, state.supervisor) == (
        Phase.WITH_AGENT,
        AgentLink.ATTACHED,
        False,
    )
    assert actions == [
        DropSupervisor(),
        StopPrompts(),
        ReattachAgent("Refund approved"),
        ApplyMix(Mix.AGENT),
    ]


def test_switching_modes_moves_the_agent_in_and_out() -> None:
    state = _with_supervisor(Mode.MONITOR)
    assert state.agent is AgentLink.ATTACHED
    state, actions = phases.set_mode(state, Mode.BARGE)
    assert actions == [ApplyMix(Mix.BARGE)]
    state, actions = phases.set_mode(state, Mode.TAKEOVER)
    assert actions == [DetachAgent(), ApplyMix(Mix.TAKEOVER)]
    state, actions = phases.set_mode(state, Mode.WHISPER)
    assert actions == [ReattachAgent(), ApplyMix(Mix.WHISPER)]
    assert phases.set_mode(state, Mode.WHISPER) == (state, [])
    _, actions = phases.whisper(state, "Offer the 10% discount")
    assert actions == [Instruct("Offer the 10% discount")]


def test_whisper_needs_the_agent_in_the_call() -> None:
    with pytest.raises(NotNow):
        phases.whisper(_with_agent(), "hello")
    with pytest.raises(NotNow):
        phases.whisper(_with_supervisor(Mode.TAKEOVER), "hello")


def test_a_supervisor_who_hangs_up_mid_takeover_never_drops_the_caller() -> None:
    state, actions = phases.supervisor_left(_with_supervisor(Mode.TAKEOVER), then="agent")
    assert (state.phase, state.agent, state.supervisor) == (
        Phase.WITH_AGENT,
        AgentLink.ATTACHED,
        False,
    )
    assert isinstance(actions[1], ReattachAgent) and actions[1].note
    assert actions[-1] == ApplyMix(Mix.AGENT)
    assert not any(isinstance(a, EndCall) for a in actions)
    state, actions = phases.supervisor_left(_with_supervisor(Mode.BARGE), then="queue")
    assert (state.phase, state.agent) == (Phase.QUEUED, AgentLink.DETACHED)
    assert actions == [DetachAgent(), ApplyMix(Mix.PROMPTS), PlayPrompt("hold", loop=True)]


def test_commands_that_do_not_fit_the_phase_are_refused() -> None:
    with pytest.raises(NotNow, match="answering"):
        phases.hold(CallState())
    with pytest.raises(NotNow, match="no supervisor"):
        phases.set_mode(_with_agent(), Mode.MONITOR)
    state, _ = phases.supervisor_joined(_rung(_with_agent()))
    with pytest.raises(NotNow, match="already"):
        phases.supervisor_joined(_rung(state))
    done, _ = phases.ended(state)
    with pytest.raises(NotNow, match="ended"):
        phases.hang_up(done, reason="x")
    assert done.mix is Mix.SILENT


def test_the_supervisor_keypad_maps_to_modes_and_hand_back() -> None:
    assert phases.SUPERVISOR_KEYS["4"] is Mode.TAKEOVER
    assert phases.SUPERVISOR_KEYS["5"] == "hand_back"
    assert set(phases.SUPERVISOR_KEYS) == {"1", "2", "3", "4", "5"}


def test_one_phone_rings_at_a_time_and_a_ringing_phone_can_be_called_off() -> None:
    ringing = _rung(phases.hold(_with_agent())[0])
    with pytest.raises(NotNow, match="already ringing"):
        phases.call_supervisor(ringing, uri="sip:bob@127.0.0.1")
    # Called off (the offer timed out): the ringing stops, the caller hears no change.
    off, actions = phases.dismiss_supervisor(ringing)
    assert actions == [DropSupervisor()] and not off.ringing and off.mix is Mix.PROMPTS
    with pytest.raises(NotNow, match="called off"):
        phases.supervisor_joined(off)  # it answered as it was being cancelled
    # The next supervisor can be rung; one who never answers frees the call for another.
    again = _rung(off)
    unreached, actions = phases.supervisor_unreached(again)
    assert actions == [] and not unreached.ringing and unreached.phase is Phase.QUEUED
    joined, _ = phases.supervisor_joined(_rung(unreached))
    assert joined.supervisor and not joined.ringing


def test_on_a_line_supervisors_take_a_failed_model_puts_the_caller_on_hold_for_them() -> None:
    """No fallback_transfer, but people can take the line's calls: the apology that says so,
    then hold music, queued; the escalation service's hold is then no change at all."""
    state, actions = phases.session_failed(_with_agent(), transfer_to=None, queue=True)
    assert (state.phase, state.agent) == (Phase.QUEUED, AgentLink.NONE)
    assert actions == [
        StopPrompts(),
        DetachAgent(close=True),
        ApplyMix(Mix.PROMPTS),
        PlayPrompt("fallback_hold", wait=True),
        PlayPrompt("hold", loop=True),
    ]
    assert phases.hold(state) == (state, [])
    with pytest.raises(NotNow, match="nobody to hand it back to"):
        phases.hand_back(state, note="back to you")
    # A person's number on the line still wins: the call goes there.
    _, actions = phases.session_failed(_with_agent(), transfer_to="sip:desk@pbx", queue=True)
    assert actions[-1] == Transfer("sip:desk@pbx", "session_failed")
    # A caller already on hold stays there; only the agent they would go back to is gone.
    held, _ = phases.hold(_with_agent())
    state, actions = phases.session_failed(held, transfer_to=None, queue=True)
    assert (state.phase, state.agent, actions) == (
        Phase.QUEUED,
        AgentLink.NONE,
        [DetachAgent(close=True)],
    )


@pytest.mark.parametrize("mode", [Mode.MONITOR, Mode.WHISPER, Mode.BARGE])
def test_a_supervisor_on_the_call_takes_it_over_when_the_model_fails(mode: Mode) -> None:
    state, actions = phases.session_failed(_with_supervisor(mode), transfer_to=None)
    assert (state.phase, state.mode, state.agent, state.supervisor) == (
        Phase.WITH_HUMAN,
        Mode.TAKEOVER,
        AgentLink.NONE,
        True,
    )
    assert actions[0] == DetachAgent(close=True)
    assert state.mix is _with_supervisor(Mode.TAKEOVER).mix  # caller and supervisor, as one


def test_a_model_failure_calls_off_a_ringing_phone() -> None:
    state, actions = phases.session_failed(_rung(_with_agent()), transfer_to=None)
    assert DropSupervisor() in actions and not state.ringing
