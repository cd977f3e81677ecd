"""A call's phases and their transitions: pure functions that return the actions to take.

    answering ─► disclosing ─► with agent ◄──► queued (on hold, agent detached)
                                   │  ▲             │
                                   ▼  │ hand back   ▼
                               with a human (monitor / whisper / barge / takeover)
    any live phase ─► fallback (the model failed: apology, then hang up or transfer) ─► ended
    (a line whose callers supervisors take: the apology, then queued for a person instead)

Each transition takes the call's `CallState` and returns the next state and a list of actions
the media worker carries out in order (audio connections on the pjsua2 thread, prompts, the
agent's session). A transition that makes no sense in the current phase raises `NotNow`, which
the worker turns into an error reply to whoever sent the command; the call goes on unchanged.
The mix (who hears whom) follows from the state alone: see `CallState.mix` and telephony.mixing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from telephony.mixing import Leg, Mix

__all__ = [
    "SUPERVISOR_KEYS",
    "Action",
    "AgentLink",
    "ApplyMix",
    "CallState",
    "DetachAgent",
    "DialSupervisor",
    "DropSupervisor",
    "DtmfTo",
    "EndCall",
    "Instruct",
    "Mode",
    "NotNow",
    "OpenAgent",
    "Phase",
    "PlayPrompt",
    "ReattachAgent",
    "StartDisclosure",
    "StopPrompts",
    "Transfer",
]


class Phase(enum.StrEnum):
    ANSWERING = "answering"
    DISCLOSING = "disclosing"
    WITH_AGENT = "with_agent"
    QUEUED = "queued"
    WITH_HUMAN = "with_human"
    FALLBACK = "fallback"
    ENDED = "ended"


class Mode(enum.StrEnum):
    """What a supervisor joined to the call does."""

    MONITOR = "monitor"
    WHISPER = "whisper"
    BARGE = "barge"
    TAKEOVER = "takeover"


class AgentLink(enum.StrEnum):
    NONE = "none"  # no session yet, or it failed
    ATTACHED = "attached"  # hears the caller, is heard
    DETACHED = "detached"  # out of the call, its conversation kept for its return


class DtmfTo(enum.StrEnum):
    CONSENT = "consent"
    AGENT = "agent"
    QUEUE = "queue"  # keys pressed on hold: a callback number, or 0 for "still here"
    NOBODY = "nobody"


class NotNow(ValueError):
    """The command does not apply to the call as it is now."""


# --- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApplyMix:
    mix: Mix


@dataclass(frozen=True, slots=True)
class StartDisclosure:
    pass


@dataclass(frozen=True, slots=True)
class OpenAgent:
    """Start the duplex session (the first time the agent joins)."""


@dataclass(frozen=True, slots=True)
class DetachAgent:
    close: bool = False  # close the session for good (it failed)


@dataclass(frozen=True, slots=True)
class ReattachAgent:
    note: str | None = None  # the supervisor's note, given to the agent as a fact


@dataclass(frozen=True, slots=True)
class Instruct:
    text: str


@dataclass(frozen=True, slots=True)
class PlayPrompt:
    prompt: str
    to: Leg = Leg.CALLER
    wait: bool = False  # the next action waits until the prompt has played
    loop: bool = False  # hold audio: plays until stopped


@dataclass(frozen=True, slots=True)
class StopPrompts:
    pass


@dataclass(frozen=True, slots=True)
class DropSupervisor:
    pass


@dataclass(frozen=True, slots=True)
class EndCall:
    reason: str
    status: int = 200


@dataclass(frozen=True, slots=True)
class Transfer:
    target: str
    reason: str


@dataclass(frozen=True, slots=True)
class DialSupervisor:
    """Ring a supervisor's phone; their leg joins the call when they answer."""

    uri: str


Action = (
    ApplyMix
    | StartDisclosure
    | OpenAgent
    | DetachAgent
    | ReattachAgent
    | Instruct
    | PlayPrompt
    | StopPrompts
    | DropSupervisor
    | EndCall
    | Transfer
    | DialSupervisor
)

# --- state -----------------------------------------------------------------------------------

_MODE_MIX = {
    Mode.MONITOR: Mix.MONITOR,
    Mode.WHISPER: Mix.WHISPER,
    Mode.BARGE: Mix.BARGE,
    Mode.TAKEOVER: Mix.TAKEOVER,
}
_LIVE = frozenset(Phase) - {Phase.ENDED}


@dataclass(frozen=True, slots=True)
class CallState:
    phase: Phase = Phase.ANSWERING
    mode: Mode | None = None  # set in WITH_HUMAN only
    agent: AgentLink = AgentLink.NONE
    supervisor: bool = False  # a supervisor leg is joined
    ringing: bool = False  # a supervisor's phone is being rung for this call

    @property
    def mix(self) -> Mix:
        phase = self.phase
        if phase in (Phase.ANSWERING, Phase.ENDED):
            return Mix.SILENT
        if phase in (Phase.DISCLOSING, Phase.FALLBACK):
            return Mix.PROMPTS
        if phase is Phase.QUEUED:
            return Mix.HOLD_WITH_SUPERVISOR if self.supervisor else Mix.PROMPTS
        if phase is Phase.WITH_HUMAN:
            assert self.mode is not None
            return _MODE_MIX[self.mode]
        return Mix.BRIEFING if self.supervisor else Mix.AGENT

    @property
    def live(self) -> bool:
        return self.phase in _LIVE


Step = tuple[CallState, list[Action]]


def _expect(state: CallState, *phases: Phase, what: str) -> None:
    if state.phase not in phases:
        allowed = ", ".join(p.value for p in phases)
        raise NotNow(f"cannot {what} a call that is {state.phase.value} (only when {allowed})")


def _to(state: CallState, actions: list[Action], **changes: object) -> Step:
    """The new state, and the actions with the mix it implies appended when it changed."""
    new = replace(state, **changes)  # type: ignore[arg-type]
    if new.mix is not state.mix:
        actions = [*actions, ApplyMix(new.mix)]
    return new, actions


# --- transitions -----------------------------------------------------------------------------


def media_up(state: CallState, *, disclosure: bool) -> Step:
    """The caller's audio is flowing: the disclosure first when the line has one."""
    _expect(state, Phase.ANSWERING, what="start media on")
    if disclosure:
        return _to(state, [StartDisclosure()], phase=Phase.DISCLOSING)
    return _to(state, [OpenAgent()], phase=Phase.WITH_AGENT, agent=AgentLink.ATTACHED)


def consent_given(state: CallState) -> Step:
    _expect(state, Phase.DISCLOSING, what="bridge after consent")
    return _to(state, [OpenAgent()], phase=Phase.WITH_AGENT, agent=AgentLink.ATTACHED)


def consent_refused(
    state: CallState, *, reason: str, transfer_to: str | None, goodbye: bool
) -> Step:
    """No consent: a transfer when the line has a target, else a goodbye and the end."""
    _expect(state, Phase.DISCLOSING, what="refuse consent on")
    if transfer_to:
        return state, [Transfer(transfer_to, reason)]
    actions: list[Action] = [PlayPrompt("goodbye", wait=True)] if goodbye else []
    return state, [*actions, EndCall(reason)]


def session_failed(state: CallState, *, transfer_to: str | None, queue: bool = False) -> Step:
    """The model is gone. Never dead air: the caller hears the fallback prompt at once.

    A supervisor on the call takes it over. Otherwise the call goes to the line's
    `fallback_transfer`; without one, to a person (`queue`: the line's callers can be taken by
    supervisors, and the escalation service queues the call on hearing of the failure), with
    hold music after the prompt; only without either does it end after the prompt."""
    if not state.live or state.phase is Phase.FALLBACK:
        return state, []
    if state.phase is Phase.WITH_HUMAN and state.supervisor:
        # A person has the caller: the call goes on with them; no agent to hand back to.
        actions: list[Action] = (
            [DetachAgent(close=True)] if state.agent is not AgentLink.NONE else []
        )
        return _to(state, actions, mode=Mode.TAKEOVER, agent=AgentLink.NONE)
    if state.phase is Phase.QUEUED and queue:
        # Already waiting for a person: the agent they would go back to is gone, that is all.
        actions = [DetachAgent(close=True)] if state.agent is not AgentLink.NONE else []
        return _to(state, actions, agent=AgentLink.NONE)
    actions = [StopPrompts()]
    if state.agent is not AgentLink.NONE:
        actions.append(DetachAgent(close=True))
    if state.supervisor or state.ringing:
        actions.append(DropSupervisor())
    waits = queue and not transfer_to  # on hold for a person
    new, actions = _to(
        state,
        actions,
        phase=Phase.QUEUED if waits else Phase.FALLBACK,
        agent=AgentLink.NONE,
        mode=None,
        supervisor=False,
        ringing=False,
    )
    if waits:
        return new, [
            *actions,
            PlayPrompt("fallback_hold", wait=True),
            PlayPrompt("hold", loop=True),
        ]
    then = Transfer(transfer_to, "session_failed") if transfer_to else EndCall("session_failed")
    return new, [*actions, PlayPrompt("fallback", wait=True), then]


def hold(state: CallState) -> Step:
    """The caller waits for a person: the agent steps out, hold audio plays. A call already
    on hold (its model failed and put it there) stays as it is."""
    if state.phase is Phase.QUEUED and state.agent is AgentLink.NONE:
        return state, []
    _expect(state, Phase.WITH_AGENT, what="put on hold")
    actions: list[Action] = [DetachAgent()]
    new, actions = _to(state, actions, phase=Phase.QUEUED, agent=AgentLink.DETACHED)
    return new, [*actions, PlayPrompt("hold", loop=True)]


def unhold(state: CallState, *, note: str | None = None) -> Step:
    """Back to the agent from the queue (nobody answered, or the caller asked)."""
    _expect(state, Phase.QUEUED, what="take off hold")
    return _back_to_agent(state, note)


def supervisor_joined(state: CallState) -> Step:
    """The supervisor's leg is up: they hear the briefing first; the caller hears no change."""
    _expect(state, Phase.QUEUED, Phase.WITH_AGENT, what="join a supervisor to")
    if state.supervisor:
        raise NotNow("a supervisor is already on this call")
    if not state.ringing:
        raise NotNow("no supervisor's phone is ringing for this call (it was called off)")
    return _to(state, [], supervisor=True, ringing=False)


def supervisor_unreached(state: CallState) -> Step:
    """The supervisor's phone never answered (declined, timed out, failed, called off)."""
    return _to(state, [], ringing=False)


def set_mode(state: CallState, mode: Mode) -> Step:
    if not state.supervisor:
        raise NotNow("no supervisor is on this call")
    _expect(state, Phase.QUEUED, Phase.WITH_AGENT, Phase.WITH_HUMAN, what="change the mode of")
    if state.phase is Phase.WITH_HUMAN and state.mode is mode:
        return state, []
    actions: list[Action] = []
    if state.phase is Phase.QUEUED:
        actions.append(StopPrompts())
    agent = state.agent
    if mode is Mode.TAKEOVER:
        if agent is AgentLink.ATTACHED:
            actions.append(DetachAgent())
            agent = AgentLink.DETACHED
    elif agent is AgentLink.DETACHED:
        actions.append(ReattachAgent())
        agent = AgentLink.ATTACHED
    elif agent is AgentLink.NONE:
        raise NotNow(f"{mode.value} needs the agent on the call, and it has failed")
    return _to(state, actions, phase=Phase.WITH_HUMAN, mode=mode, agent=agent)


def whisper(state: CallState, text: str) -> Step:
    """A supervisor's instruction to the agent; the caller hears none of it."""
    if state.agent is not AgentLink.ATTACHED or state.phase is not Phase.WITH_HUMAN:
        raise NotNow("whisper needs a supervisor on the call with the agent in it")
    return state, [Instruct(text)]


def hand_back(state: CallState, *, note: str | None) -> Step:
    """The supervisor leaves the call to the agent, with a note the agent takes as a fact."""
    _expect(state, Phase.WITH_HUMAN, Phase.QUEUED, Phase.WITH_AGENT, what="hand back")
    if state.agent is AgentLink.NONE:
        raise NotNow("the agent has failed on this call: there is nobody to hand it back to")
    drop: list[Action] = [DropSupervisor()] if state.supervisor else []
    new, actions = _back_to_agent(replace(state, supervisor=False), note, was=state)
    return new, [*drop, *actions]


def supervisor_left(state: CallState, *, then: str) -> Step:
    """The supervisor's leg ended on its own. `then`: "agent" (back to the agent with a note)
    or "queue" (back on hold for the next person). Never dropped."""
    if not state.supervisor:
        return state, []
    if state.phase is not Phase.WITH_HUMAN:
        return _to(state, [], supervisor=False)  # left during the briefing
    if then == "queue" or state.agent is AgentLink.NONE:
        actions: list[Action] = []
        agent = state.agent
        if agent is AgentLink.ATTACHED:
            actions.append(DetachAgent())
            agent = AgentLink.DETACHED
        new, actions = _to(
            state, actions, phase=Phase.QUEUED, mode=None, supervisor=False, agent=agent
        )
        return new, [*actions, PlayPrompt("hold", loop=True)]
    note = "The supervisor's line dropped; you are handling the call again."
    return _back_to_agent(replace(state, supervisor=False), note, was=state)


def call_supervisor(state: CallState, *, uri: str) -> Step:
    """Rings a supervisor for this call (an accepted offer, or a supervisor's own initiative)."""
    _expect(state, Phase.QUEUED, Phase.WITH_AGENT, what="call a supervisor for")
    if state.supervisor:
        raise NotNow("a supervisor is already on this call")
    if state.ringing:
        raise NotNow("a supervisor's phone is already ringing for this call")
    return _to(state, [DialSupervisor(uri)], ringing=True)


def dismiss_supervisor(state: CallState) -> Step:
    """Takes the supervisor off the call (the API, or their own hang-up on the keypad): the
    call goes back to the agent, never dropped. A phone still ringing stops ringing."""
    if state.ringing and not state.supervisor:
        return _to(state, [DropSupervisor()], ringing=False)
    if not state.supervisor:
        raise NotNow("no supervisor is on this call")
    new, actions = supervisor_left(state, then="agent")
    return new, [DropSupervisor(), *actions]


def hang_up(state: CallState, *, reason: str, status: int = 200) -> Step:
    if not state.live:
        raise NotNow("the call has ended")
    return state, [EndCall(reason, status)]


def transfer(state: CallState, *, target: str, reason: str) -> Step:
    if not state.live:
        raise NotNow("the call has ended")
    return state, [Transfer(target, reason)]


def play_prompt(state: CallState, *, prompt: str, to: Leg) -> Step:
    """A prompt for the caller or the supervisor; the mix decides who hears the player."""
    if state.phase in (Phase.ANSWERING, Phase.ENDED):
        raise NotNow(f"cannot play a prompt on a call that is {state.phase.value}")
    if to is Leg.SUPERVISOR and not state.supervisor:
        raise NotNow("no supervisor is on this call")
    return state, [PlayPrompt(prompt, to)]


def ended(state: CallState) -> Step:
    """The call is gone (either side hung up): no more audio for anybody."""
    return CallState(phase=Phase.ENDED, agent=AgentLink.NONE), []


def dtmf_to(state: CallState) -> DtmfTo:
    """Where a caller's key goes in this phase."""
    if state.phase is Phase.DISCLOSING:
        return DtmfTo.CONSENT
    if state.phase is Phase.QUEUED:
        return DtmfTo.QUEUE
    if state.agent is AgentLink.ATTACHED and state.phase in (Phase.WITH_AGENT, Phase.WITH_HUMAN):
        return DtmfTo.AGENT
    return DtmfTo.NOBODY


# A supervisor's keypad, like ChanSpy's and eavesdrop's DTMF modes (docs/operators.md).
SUPERVISOR_KEYS: dict[str, Mode | str] = {
    "1": Mode.MONITOR,
    "2": Mode.WHISPER,
    "3": Mode.BARGE,
    "4": Mode.TAKEOVER,
    "5": "hand_back",
}


def _back_to_agent(state: CallState, note: str | None, *, was: CallState | None = None) -> Step:
    actions: list[Action] = [StopPrompts()]
    if state.agent is AgentLink.DETACHED:
        actions.append(ReattachAgent(note))
    elif note:
        actions.append(Instruct(note))
    return _to(
        was or state,
        actions,
        phase=Phase.WITH_AGENT,
        mode=None,
        supervisor=state.supervisor,
        agent=AgentLink.ATTACHED,
    )
