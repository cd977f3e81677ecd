"""Who hears whom on a call: the legs and, for each mix, the audio connections between them.

A call's audio parties are legs in pjmedia's conference bridge:
  caller      the caller's SIP call
  agent       the duplex session's media port (what it hears in, what it says out)
  prompt      the prompt player's media port (disclosures, hold audio, queue announcements)
  supervisor  a supervisor's SIP call (or browser leg) joined to this call
  briefing    the warm-handoff summary, spoken into the supervisor's ear only (a file player
              made when their phone answers; the caller never hears it)

The prompt player listens to the caller, and to a supervisor on the call, whenever nobody else
does: pjmedia pulls a call's audio out of its jitter buffer only while something listens to
it, and a caller nobody heard for a while (on hold, through a disclosure) would come back
seconds late, then sped up while the buffer sheds the backlog; a supervisor nobody heard
(monitoring) would start a takeover with 200 ms of silence. The player drops what it hears.
Where the agent (or a person) hears the leg anyway, the player does not: every connection to
or from it is a Python callback per 20 ms frame on the media clock.

A connection is (source, listener): audio from `source` is transmitted to `listener`. The
worker applies a mix as the difference between the connections it has and the ones the table
asks for, on the pjsua2 thread; this module only says what they should be.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

__all__ = ["Connection", "Leg", "Mix", "changes", "connections", "hears"]


class Leg(enum.StrEnum):
    CALLER = "caller"
    AGENT = "agent"
    PROMPT = "prompt"
    SUPERVISOR = "supervisor"
    BRIEFING = "briefing"


class Mix(enum.StrEnum):
    """The audio arrangement of a call at one moment (its phase and supervisor mode)."""

    SILENT = "silent"  # answered, media not yet up, or ended
    PROMPTS = "prompts"  # the caller hears prompts only: disclosure, hold, fallback, goodbye
    AGENT = "agent"  # caller and agent talk; prompts still reach the caller
    BRIEFING = "briefing"  # the caller is with the agent; the supervisor hears the summary
    MONITOR = "monitor"  # the supervisor hears caller and agent; nobody hears the supervisor
    WHISPER = "whisper"  # as monitor; the supervisor coaches the agent in text
    BARGE = "barge"  # all three hear each other
    TAKEOVER = "takeover"  # caller and supervisor talk; the agent is out of the call
    HOLD_WITH_SUPERVISOR = "hold_with_supervisor"  # the caller on hold; briefing the supervisor
    # In the two briefing mixes the supervisor hears only their briefing (no hold audio).


Connection = tuple[Leg, Leg]  # (source, listener)

_C, _A, _P, _S, _B = Leg.CALLER, Leg.AGENT, Leg.PROMPT, Leg.SUPERVISOR, Leg.BRIEFING
# The supervisor hears their briefing until it ends, whatever mode they pick meanwhile.
_SUPERVISOR = {(_B, _S)}
_CALLER_AND_AGENT = {(_C, _A), (_A, _C), (_P, _C)}

_HEARD: dict[Mix, frozenset[Connection]] = {
    Mix.SILENT: frozenset(),
    Mix.PROMPTS: frozenset({(_P, _C)}),
    Mix.AGENT: frozenset(_CALLER_AND_AGENT),
    Mix.BRIEFING: frozenset(_CALLER_AND_AGENT | _SUPERVISOR),
    Mix.MONITOR: frozenset(_CALLER_AND_AGENT | _SUPERVISOR | {(_C, _S), (_A, _S), (_P, _S)}),
    Mix.WHISPER: frozenset(_CALLER_AND_AGENT | _SUPERVISOR | {(_C, _S), (_A, _S), (_P, _S)}),
    Mix.BARGE: frozenset(
        _CALLER_AND_AGENT | _SUPERVISOR | {(_C, _S), (_A, _S), (_P, _S), (_S, _C), (_S, _A)}
    ),
    Mix.TAKEOVER: frozenset({(_C, _S), (_S, _C), (_P, _C), (_P, _S), *_SUPERVISOR}),
    Mix.HOLD_WITH_SUPERVISOR: frozenset({(_P, _C), *_SUPERVISOR}),
}


def _with_drains(heard: frozenset[Connection], *, supervisor: bool) -> frozenset[Connection]:
    """`heard`, plus the prompt player listening to the caller (and the supervisor) where
    nobody else does (see the module docstring)."""
    drains = set()
    for leg in (_C, _S) if supervisor else (_C,):
        if not any(source is leg for source, _ in heard):
            drains.add((leg, _P))
    return heard | drains


_SUPERVISED = {Mix.BRIEFING, Mix.MONITOR, Mix.WHISPER, Mix.BARGE, Mix.TAKEOVER}
_TABLE: dict[Mix, frozenset[Connection]] = {
    mix: heard
    if mix is Mix.SILENT
    else _with_drains(heard, supervisor=mix in _SUPERVISED or mix is Mix.HOLD_WITH_SUPERVISOR)
    for mix, heard in _HEARD.items()
}


def connections(mix: Mix) -> frozenset[Connection]:
    """Every (source, listener) connection the mix asks for."""
    return _TABLE[mix]


def hears(mix: Mix, listener: Leg) -> frozenset[Leg]:
    """The legs `listener` hears in `mix`."""
    return frozenset(source for source, to in _TABLE[mix] if to is listener)


def changes(
    current: Iterable[Connection], mix: Mix, present: Iterable[Leg]
) -> tuple[list[Connection], list[Connection]]:
    """(to stop, to start): what turns the connections in place into the mix's, among the legs
    present (a leg not yet joined, or gone, takes part in no connection).

    Stops come first in the worker: a leg switched from one party to another is never heard
    by both at once.
    """
    here = set(present)
    wanted = {(s, t) for s, t in _TABLE[mix] if s in here and t in here}
    have = set(current)
    order = list(Leg)
    key = lambda c: (order.index(c[0]), order.index(c[1]))  # noqa: E731
    return sorted(have - wanted, key=key), sorted(wanted - have, key=key)
