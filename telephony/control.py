"""Commands from other processes, turned into call-phase transitions.

A command names what someone wants (telephony.commands); the transition decides whether the
call can take it now (telephony.phases). A supervisor's leg is rung by the worker (AttachLeg
with the phone's URI, which goes through the edge) and joins when the phone answers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from telephony import commands, phases
from telephony.mixing import Leg
from telephony.phases import Action, CallState, Mode, NotNow

__all__ = ["SPEECH", "transition"]

SPEECH = "speech:"  # a prompt made for this call: "speech:<sha256>" (telephony.commands)

Transition = Callable[[CallState], tuple[CallState, list[Action]]]


def transition(command: commands.Command) -> Transition:
    """The transition `command` asks for. Raises NotNow for a command no call can take yet."""
    match command:
        case commands.Hangup(reason=reason):
            return functools.partial(phases.hang_up, reason=f"command:{reason}")
        case commands.Hold() | commands.DetachAgent():
            # Never dead air: an agent leaving the caller leaves them on hold.
            return phases.hold
        case commands.Unhold():
            return phases.unhold
        case commands.ReattachAgent(note=note):
            return functools.partial(_reattach, note=note)
        case commands.SetMode(mode=mode):
            return functools.partial(phases.set_mode, mode=Mode(mode.value))
        case commands.Whisper(text=text):
            return functools.partial(phases.whisper, text=text)
        case commands.Transfer(target=target, actor=actor):
            return functools.partial(phases.transfer, target=target, reason=f"command:{actor}")
        case commands.PlayPrompt(prompt=prompt, to=to, speech=speech):
            # Speech for the supervisor is a briefing (the worker keeps it for their answer);
            # for the caller it plays like any prompt.
            named = f"{SPEECH}{speech}" if speech else prompt
            return functools.partial(phases.play_prompt, prompt=named, to=Leg(to.value))
        case commands.AttachLeg(uri=uri):
            if uri is None:
                raise NotNow(
                    "a supervisor leg that calls in is not supported: give the uri to ring"
                )
            return functools.partial(phases.call_supervisor, uri=uri)
        case commands.DetachLeg():
            return phases.dismiss_supervisor
        case commands.Status():
            return _unchanged
    raise NotNow(f"unknown command {type(command).__name__}")


def _unchanged(state: CallState) -> tuple[CallState, list[Action]]:
    return state, []


def _reattach(state: CallState, *, note: str | None) -> tuple[CallState, list[Action]]:
    if state.phase is phases.Phase.QUEUED:
        return phases.unhold(state, note=note)
    return phases.hand_back(state, note=note)
