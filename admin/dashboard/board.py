"""The live board: every live call as a card, folded from the live call events.

Pure: no I/O, no clock of its own (an event's `t_wall` is its time). `Board.apply` takes one
event from the fan-out and returns what changed, for the dashboard feed (admin.dashboard.feed)
to push to the browsers watching. Nothing here reads the database: a card is what the events
said, as they said it.

What a card shows is safe to show: the caller's number masked, every string cleaned and cut
(admin.api.event_redaction), digits of keypad presses never kept. The frustration indicator
is the escalation trigger detector's own score, fed the same observations as the service's.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from admin import display_text, phone_numbers
from admin.api.event_redaction import mask_digit_runs
from admin.projection import turn_voice_to_voice_ms
from escalation.observations import observation_for
from escalation.triggers import TriggerDetector, TriggerPolicy
from telephony.events import CallEvent, CallEventKind

TEXT_LIMIT = 500  # characters of one transcript line
TRANSCRIPT_KEPT = 200  # lines of a live call kept for a page that opens it late
TIMELINE_KEPT = 200
RECENT_ENDED = 50  # ended calls kept, so a page that had one open can show how it ended

_LIVE_ESCALATION = frozenset({"requested", "queued", "offered", "accepted", "connected"})


@dataclass(slots=True)
class TranscriptLine:
    id: str
    speaker: str  # caller | agent
    text: str
    at: float
    cut: bool = False  # the caller stopped hearing it (a barge-in)
    heard_ms: int | None = None
    heard_text: str | None = None


@dataclass(slots=True)
class TimelineItem:
    at: float
    kind: str
    text: str


@dataclass(slots=True)
class Escalation:
    ref: str
    state: str
    reason: str | None
    queue: str | None
    since: float  # when it entered its current state
    requested_at: float
    supervisor: str | None = None
    summary: str | None = None


@dataclass(slots=True)
class Card:
    call_id: str
    line: str | None
    caller: str
    started_at: float
    worker: int | None = None
    line_queue: str | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    phase: str = "answering"
    mode: str | None = None
    agent: str = "none"
    supervisor_on: bool = False  # a supervisor's leg is joined (with or without a mode yet)
    # The user whose dashboard tab is the supervisor's leg (telephony/browserleg.py): being
    # rung until browser_joined, then on the call.
    browser: str | None = None
    browser_joined: bool = False
    escalation: Escalation | None = None
    last_speaker: str | None = None
    last_text: str | None = None
    latency_ms: int | None = None  # the last turn's voice-to-voice (the engine's share)
    frustration: float = 0.0  # the trigger detector's score over its threshold (1: escalates)
    disclosure: str | None = None  # played | interrupted | missing
    consent: str | None = None

    @property
    def supervisor(self) -> str | None:
        """Who the supervisor is (or is being rung), as the escalation service named them, or
        as their browser leg does."""
        named = self.escalation.supervisor if self.escalation is not None else None
        return named or self.browser

    @property
    def queue(self) -> str | None:
        if self.escalation is not None and self.escalation.queue:
            return self.escalation.queue
        return self.line_queue

    @property
    def state(self) -> str:
        """What the board shows: ai, queued, ringing, supervisor, fallback, ended…"""
        if self.ended_at is not None:
            return "ended"
        if self.supervisor_on or self.phase == "with_human":
            return "supervisor"
        live = self.escalation is not None and self.escalation.state in _LIVE_ESCALATION
        if live and self.escalation is not None:
            if self.escalation.state == "offered":
                return "ringing"
            if self.escalation.state in ("queued", "requested"):
                return "queued"
        if self.phase == "queued":
            return "on_hold"
        if self.phase in ("with_agent", "disclosing"):
            return "ai"
        return self.phase

    def shown(self) -> dict[str, Any]:
        card = asdict(self)
        card["queue"] = self.queue
        card["state"] = self.state
        card["supervisor"] = self.supervisor
        return card


@dataclass(slots=True)
class _Live:
    card: Card
    detector: TriggerDetector
    transcript: deque[TranscriptLine] = field(default_factory=lambda: deque(maxlen=TRANSCRIPT_KEPT))
    timeline: deque[TimelineItem] = field(default_factory=lambda: deque(maxlen=TIMELINE_KEPT))
    flushed: dict[str, int] = field(default_factory=dict)  # utterance -> ms heard, before its text


@dataclass(frozen=True, slots=True)
class Change:
    """What one event changed: the card (None: nothing shown changed), and for a page that has
    the call open, the transcript lines added or changed and the timeline items added."""

    call_id: str
    card: dict[str, Any] | None = None
    lines: tuple[dict[str, Any], ...] = ()
    timeline: tuple[dict[str, Any], ...] = ()
    ended: bool = False


class Board:
    """The live calls, as cards; ended ones are kept a while (RECENT_ENDED) for open pages."""

    def __init__(
        self,
        *,
        queue_of_line: Callable[[str | None], str | None] = lambda line: None,
        policy_of_line: Callable[[str | None], TriggerPolicy] = lambda line: TriggerPolicy(),
    ) -> None:
        self._queue_of_line = queue_of_line
        self._policy_of_line = policy_of_line
        self._live: dict[str, _Live] = {}
        self._ended: OrderedDict[str, _Live] = OrderedDict()

    def cards(self) -> list[dict[str, Any]]:
        """Every live call, oldest first."""
        calls = sorted(self._live.values(), key=lambda c: c.card.started_at)
        return [call.card.shown() for call in calls]

    def detail(self, call_id: str) -> dict[str, Any] | None:
        """A call's card, transcript and timeline; None for a call the board does not know."""
        call = self._live.get(call_id) or self._ended.get(call_id)
        if call is None:
            return None
        return {
            "call": call.card.shown(),
            "transcript": [asdict(line) for line in call.transcript],
            "timeline": [asdict(item) for item in call.timeline],
        }

    def apply(self, event: CallEvent) -> list[Change]:
        if event.kind is CallEventKind.WORKER_RESET:
            return self._worker_reset(event)
        if event.kind is CallEventKind.STARTED:
            return [self._start(event)]
        call = self._live.get(event.call_id)
        if call is None:
            return []  # a call that started before the board, or one already over
        before = call.card.shown()
        lines: list[TranscriptLine] = []
        items: list[TimelineItem] = []
        self._fold(call, event, lines, items)
        ended = event.kind is CallEventKind.ENDED
        if ended:
            self._end(event.call_id)
        after = call.card.shown()
        return [
            Change(
                event.call_id,
                card=after if after != before else None,
                lines=tuple(asdict(line) for line in lines),
                timeline=tuple(asdict(item) for item in items),
                ended=ended,
            )
        ]

    # --- one event ---------------------------------------------------------------------

    def _start(self, event: CallEvent) -> Change:
        data = event.data
        line = _str(data.get("line")) or None
        worker = data.get("worker")
        card = Card(
            call_id=event.call_id,
            line=line,
            caller=_caller(_str(data.get("from"))),
            started_at=event.t_wall,
            worker=worker if isinstance(worker, int) and not isinstance(worker, bool) else None,
            line_queue=self._queue_of_line(line),
        )
        call = _Live(card, TriggerDetector(self._policy_of_line(line)))
        call.timeline.append(TimelineItem(event.t_wall, "started", f"call on line {line or '?'}"))
        self._live[event.call_id] = call
        return Change(event.call_id, card=card.shown(), timeline=(asdict(call.timeline[-1]),))

    def _fold(
        self,
        call: _Live,
        event: CallEvent,
        lines: list[TranscriptLine],
        items: list[TimelineItem],
    ) -> None:
        card, data, at = call.card, event.data, event.t_wall

        def note(kind: str, text: str) -> None:
            words = text.replace("_", " ")
            item = TimelineItem(at, kind, display_text.shown(words, limit=TEXT_LIMIT))
            call.timeline.append(item)
            items.append(item)

        kind = event.kind
        self._observe(call, event)
        if kind is CallEventKind.ANSWERED:
            card.answered_at = at
            note("answered", f"answered ({_str(data.get('codec')) or 'codec unknown'})")
        elif kind is CallEventKind.PHASE:
            card.phase = _str(data.get("phase")) or card.phase
            card.mode = _str(data.get("mode")) or None
            card.agent = _str(data.get("agent")) or card.agent
            card.supervisor_on = data.get("supervisor") is True
            mode = f" ({card.mode})" if card.mode else ""
            joined = ", supervisor on the call" if card.supervisor_on else ""
            note("phase", f"{card.phase.replace('_', ' ')}{mode}{joined}")
        elif kind is CallEventKind.ESCALATION:
            self._escalation(card, data, at)
            escalation = card.escalation
            if escalation is not None:
                detail = f": {escalation.reason}" if data.get("event") == "request" else ""
                note("escalation", f"escalation {_str(data.get('event'))}{detail}")
        elif kind is CallEventKind.SUPERVISOR:
            what = _str(data.get("event"))
            browser = _shown(data.get("browser")) or None
            # Which browser is on or ringing: none once a leg ends or a phone rings instead (a
            # briefing playing says nothing of whose leg it is).
            if what == "ended" or (what == "ringing" and browser is None):
                card.browser, card.browser_joined = None, False
            elif browser is not None:
                card.browser, card.browser_joined = browser, what == "answered"
            leg = browser or card.browser  # a briefing names no leg: the browser on, if any
            who = (
                f"{leg}'s browser"
                if leg
                else f"{_shown(data.get('supervisor')) or 'supervisor'}'s phone"
            )
            note("supervisor", f"{who}: {what}")
        elif kind is CallEventKind.COMMAND:
            actor = _shown(data.get("actor")) or "someone"
            note("command", f"{_str(data.get('command'))} by {actor}")
        elif kind is CallEventKind.DISCLOSURE_PLAYED:
            played = data.get("played") is True
            card.disclosure = (
                ("interrupted" if data.get("interrupted") is True else "played")
                if played
                else "missing"
            )
            card.consent = _str(data.get("consent")) or None
            consent = f", consent {card.consent}" if card.consent else ""
            name = _shown(data.get("disclosure"))
            note("disclosure", f"disclosure {name}: {card.disclosure}{consent}")
        elif kind is CallEventKind.DTMF:
            note("dtmf", "keypad press")  # never the digit: it may be part of a number
        elif kind is CallEventKind.PLAYOUT_FLUSHED:
            self._flushed(call, data, lines)
        elif kind is CallEventKind.SESSION_FAILED:
            note("failure", "the agent's model failed")
        elif kind is CallEventKind.TRANSFERRED:
            note("transfer", f"transferred ({_str(data.get('reason')) or 'transfer'})")
        elif kind is CallEventKind.ENDED:
            card.ended_at = at
            card.end_reason = _str(data.get("reason")) or None
            note("ended", f"ended: {card.end_reason or 'unknown'}")
        elif kind is CallEventKind.AGENT:
            self._agent(call, event, lines, note)

    def _agent(
        self,
        call: _Live,
        event: CallEvent,
        lines: list[TranscriptLine],
        note: Callable[[str, str], None],
    ) -> None:
        card, data, at = call.card, event.data, event.t_wall
        what = data.get("event")
        if what == "caller_transcript" and data.get("final", True) is not False:
            text = _shown(data.get("text")).strip()
            if text:
                line = TranscriptLine(event.event_id, "caller", text, at)
                call.transcript.append(line)
                lines.append(line)
                card.last_speaker, card.last_text = "caller", text
        elif what == "agent_transcript":
            text = _shown(data.get("text")).strip()
            if not text:
                return
            utterance = _str(data.get("utterance_id")) or event.event_id
            line = TranscriptLine(utterance, "agent", text, at)
            heard = _shown(data.get("heard_text")).strip()
            if utterance in call.flushed or heard:
                line.cut = True
                line.heard_ms = call.flushed.get(utterance)
                line.heard_text = heard or None
            call.transcript.append(line)
            lines.append(line)
            card.last_speaker, card.last_text = "agent", text
        elif what == "backchannel_ignored":
            utterance = _str(data.get("item_id") or data.get("utterance_id"))
            call.flushed.pop(utterance, None)
            for line in call.transcript:
                if line.id == utterance and line.cut:
                    line.cut, line.heard_ms, line.heard_text = False, None, None
                    lines.append(line)
        elif what == "end_of_turn":
            latency = turn_voice_to_voice_ms(data)
            if latency is not None:
                card.latency_ms = latency
        elif what == "barge_in":
            note("barge_in", "the caller barged in")
        elif what == "handoff_requested":
            note("handoff", f"the agent asked for a person ({_str(data.get('reason'))})")
        elif what == "agent_resumed":
            note("agent", "the agent is back on the call")

    def _flushed(self, call: _Live, data: dict[str, object], lines: list[TranscriptLine]) -> None:
        utterance = _str(data.get("utterance_id"))
        played = data.get("played_ms")
        heard_ms = played if isinstance(played, int) and not isinstance(played, bool) else None
        for line in call.transcript:
            if line.id == utterance and line.speaker == "agent":
                line.cut, line.heard_ms = True, heard_ms
                lines.append(line)
                return
        if utterance:  # the transcript comes after the flush: mark it when it does
            call.flushed[utterance] = heard_ms or 0
            while len(call.flushed) > TRANSCRIPT_KEPT:
                call.flushed.pop(next(iter(call.flushed)))

    def _escalation(self, card: Card, data: dict[str, object], at: float) -> None:
        ref, state = _str(data.get("escalation_id")), _str(data.get("to"))
        if not ref or not state:
            return
        escalation = card.escalation
        if escalation is None or escalation.ref != ref:
            escalation = Escalation(ref, state, None, None, at, at)
            card.escalation = escalation
        if escalation.state != state:
            escalation.state, escalation.since = state, at
        escalation.reason = _shown(data.get("reason")) or escalation.reason
        escalation.queue = _shown(data.get("queue")) or escalation.queue
        escalation.supervisor = _shown(data.get("supervisor")) or escalation.supervisor
        summary = data.get("summary")
        if isinstance(summary, dict):
            escalation.summary = _shown(summary.get("text")) or escalation.summary

    def _observe(self, call: _Live, event: CallEvent) -> None:
        try:
            observation = observation_for(event)
        except ValueError:
            return
        if observation is not None:
            call.detector.observe(observation, event.t_wall)
        score = call.detector.frustration(event.t_wall)
        threshold = call.detector.policy.frustration_threshold
        call.card.frustration = round(min(score / threshold, 2.0), 2) if threshold else 0.0

    def _end(self, call_id: str) -> None:
        call = self._live.pop(call_id)
        self._ended[call_id] = call
        while len(self._ended) > RECENT_ENDED:
            self._ended.popitem(last=False)

    def _worker_reset(self, event: CallEvent) -> list[Change]:
        """A worker started afresh: every call it held is gone."""
        worker = event.data.get("worker")
        changes = []
        for call_id, call in list(self._live.items()):
            if call.card.worker == worker:
                call.card.ended_at = event.t_wall
                call.card.end_reason = "worker_lost"
                item = TimelineItem(event.t_wall, "ended", "ended: the media worker was lost")
                call.timeline.append(item)
                self._end(call_id)
                changes.append(
                    Change(call_id, card=call.card.shown(), timeline=(asdict(item),), ended=True)
                )
        return changes


_URI_USER = re.compile(r"(?:sips?|tel):([^@;>\s]+)")


def _caller(from_uri: str) -> str:
    """Who calls, as the board shows it: the number masked ('+1******4567'), else the SIP user
    name (long digit runs masked), else 'anonymous'. Never the display name: the caller sets
    it to anything."""
    match = _URI_USER.search(display_text.clean(from_uri))
    user = match.group(1) if match else ""
    if phone_numbers.is_phone_number(user):
        return phone_numbers.mask(user)
    return display_text.shown(mask_digit_runs(user), limit=64) or "anonymous"


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _shown(value: object) -> str:
    """A caller-controlled string as it may be shown: cleaned, long digit runs masked, cut."""
    text = _str(value)
    if not text:
        return ""
    return display_text.shown(mask_digit_runs(display_text.clean(text)), limit=TEXT_LIMIT)
