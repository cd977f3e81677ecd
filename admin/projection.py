"""Turns call events into records: calls, legs, transcript segments, turn metrics, escalations.

`Projection.apply` runs in the ingester's transaction, on the events that transaction has just
inserted, so each event is projected exactly once. It reads what it needs about earlier events
from `call_events` (times are the media worker's monotonic clock, ms from `call.started`), so it
does not depend on which batch an event arrived in. Events of a call whose `call.started` is not
stored yet wait in `call_events` and are projected when it arrives.

What a caller controls (its number, the number it dialled, anything a worker copies from SIP) is
written cleaned and cut to its column (admin.display_text): PostgreSQL refuses a NUL or a value
longer than the column, and one such event must not leave its call unrecorded.

Escalations (`call.escalation`, one event per transition of escalation.lifecycle) are kept by
the escalation service's id: each transition is appended to `escalation_transitions` and to the
audit log, and the row takes the state of its latest transition. A transition for an escalation
not seen yet creates it (events of two spools arrive in any order). When the call ends, each of
its escalations still live is closed by the system: `connected` becomes `ended`, the waiting
states `abandoned`, so none outlives its call. A callback number is replaced by its keyed hash
and mask before the event is stored (`scrub`): it is never written in clear.

A `worker.reset` (admin.worker_loss) ends, as `worker_lost`, every live call of the media worker
it names: that process died or hung, and will never write their `call.ended`.

Outcome, decided at `call.ended` (or the reset):
- `escalated`: a handoff was requested or the call was transferred;
- `contained`: answered, and either the agent ended the call (end reason `agent:*`) or the call
  ended (caller hangup, lost media) after the agent had answered the caller's last words;
- `abandoned`: everything else: never answered, or ended before the caller said anything or
  while the caller's last words were still unanswered (model failure with nowhere to transfer
  to included).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, func, select
from sqlalchemy.orm import QueryableAttribute, Session

from admin import audit, display_text
from admin.models import (
    AuditEntry,
    Call,
    CallEventRecord,
    CallLeg,
    ConsentMethod,
    ConsentResult,
    Disclosure,
    DisclosurePlay,
    DisclosureVersion,
    Escalation,
    EscalationReason,
    EscalationTransition,
    LegKind,
    Line,
    Outcome,
    Recording,
    RecordingState,
    Redaction,
    Speaker,
    TranscriptSegment,
    TurnMetrics,
)
from admin.phone_numbers import is_phone_number, mask, number_hash
from admin.worker_loss import WORKER_LOST
from agent.redaction import RedactionPolicy
from escalation.lifecycle import LIVE_STATES, SYSTEM, EscalationEvent, EscalationState
from telephony.events import CallEvent, CallEventKind, keys_masked

log = logging.getLogger(__name__)

_SIP_USER = re.compile(r"(?:sips?|tel):([^@;>?]+)")
_HANDOFF_REASONS = {
    "caller_asked": EscalationReason.CALLER_REQUEST,
    "dtmf_0": EscalationReason.DTMF_ZERO,
    "repeated_misunderstanding": EscalationReason.MISUNDERSTANDING,
    "no_response": EscalationReason.MISUNDERSTANDING,  # reprompted until it gave up
}
_AGENT = CallEventKind.AGENT.value
_UUID_HEX = re.compile(r"[0-9a-f]{32}")
_CALLBACK_NUMBER = "callback_number"
_CALL_ENDED_DETAIL = "call ended"


def _width(column: QueryableAttribute[Any]) -> int:
    """How many characters a column holds: longer text from an event is cut before it is
    written (PostgreSQL refuses it; SQLite would keep it whole)."""
    column_type = column.property.columns[0].type
    if not isinstance(column_type, String) or column_type.length is None:
        raise TypeError(f"{column} is not a string column of fixed width")
    return column_type.length


_TO_NUMBER = _width(Call.to_number)
_CODEC = _width(CallLeg.codec)
_END_REASON = min(_width(Call.end_reason), _width(CallLeg.end_reason))
_QUEUE = _width(Escalation.queue)
_SUPERVISOR = _width(Escalation.supervisor)
_SUMMARY = 2000  # a briefing is a few sentences
_ACTOR = min(_width(EscalationTransition.actor), _width(AuditEntry.actor))
_DETAIL = _width(EscalationTransition.detail)


@dataclass(frozen=True, slots=True)
class _Step:
    """One transition of an escalation, as it is stored."""

    event: EscalationEvent
    from_state: EscalationState | None
    to_state: EscalationState
    actor: str
    detail: str | None
    at: dt.datetime


@dataclass(frozen=True, slots=True)
class _Seen:
    """An earlier agent-side event of the call, as stored."""

    name: str  # the session event's name (data["event"]) or the call event's kind
    t_mono_ns: int
    data: dict[str, Any]


class Projection:
    def __init__(
        self,
        *,
        number_key: bytes,
        audit_key: bytes,
        redaction: Callable[[str | None], RedactionPolicy] = lambda _line: RedactionPolicy(),
    ) -> None:
        self._number_key = number_key
        self._audit_key = audit_key
        self._redaction = redaction  # line name -> its policy

    def scrub(self, session: Session, events: Iterable[CallEvent]) -> list[CallEvent]:
        """The events as they are to be stored: what was said redacted by the line's policy
        (again: the worker did it first, unless its spool predates it or its policy differs),
        no key the caller pressed, and a callback number the caller left replaced by its keyed
        hash and masked form (or dropped, when it is no number)."""
        lines: dict[str, str | None] = {}
        agent_said: dict[str, str] = {}  # call id -> the agent's last words in this batch
        scrubbed = []
        for event in events:
            stored = event
            if event.kind is CallEventKind.STARTED:
                lines[event.call_id] = _text(event.data.get("line")) or None
            elif event.kind is CallEventKind.AGENT:
                if event.call_id not in lines:
                    lines[event.call_id] = _line_of(session, event.call_id)
                policy = self._redaction(lines[event.call_id])
                context = agent_said.get(event.call_id, "")
                if event.data.get("event") == "agent_transcript":
                    agent_said[event.call_id] = _text(event.data.get("text"))
                data = policy.agent_event(event.data, context=context)
                stored = dataclasses.replace(event, data=data)
            scrubbed.append(self._scrubbed(keys_masked(stored)))
        return scrubbed

    def _scrubbed(self, event: CallEvent) -> CallEvent:
        if event.kind is not CallEventKind.ESCALATION or _CALLBACK_NUMBER not in event.data:
            return event
        data = dict(event.data)
        number = _text(data.pop(_CALLBACK_NUMBER))
        try:
            data["callback_number_hash"] = number_hash(number, key=self._number_key)
            data["callback_number_masked"] = mask(number)
        except ValueError:
            pass  # nothing usable was typed; the transition still counts
        return dataclasses.replace(event, data=data)

    def apply(self, session: Session, events: Sequence[CallEvent]) -> list[str]:
        """Projects newly stored events; returns the ids of calls that ended among them."""
        by_call: dict[str, list[CallEvent]] = {}
        for event in events:
            if event.kind is not CallEventKind.WORKER_RESET:
                by_call.setdefault(event.call_id, []).append(event)
        batch_ids = {event.event_id for event in events}
        ended: list[str] = []
        for call_id, call_events in by_call.items():
            for event in sorted(call_events, key=lambda e: e.t_mono_ns):
                if event.kind is CallEventKind.STARTED:
                    if self._start(session, event):
                        ended += self._catch_up(session, call_id, batch_ids)
                    continue
                call = session.get(Call, call_id)
                if call is not None and self._apply(session, call, event):
                    ended.append(call_id)
        for position, event in enumerate(events):
            if event.kind is CallEventKind.WORKER_RESET:
                # Calls that started after the reset, further on in this batch, are the
                # restarted worker's own.
                later = {e.call_id for e in events[position:] if e.kind is CallEventKind.STARTED}
                ended += self._worker_lost(session, event, spare=later)
        return ended

    def _catch_up(self, session: Session, call_id: str, batch_ids: set[str]) -> list[str]:
        """Projects the call's events that were stored before its call.started."""
        earlier = session.scalars(
            select(CallEventRecord)
            .where(CallEventRecord.call_id == call_id)
            .order_by(CallEventRecord.t_mono_ns)
        ).all()
        call = session.get_one(Call, call_id)
        ended = []
        for row in earlier:
            if row.event_id in batch_ids or row.kind == CallEventKind.STARTED.value:
                continue
            event = CallEvent(
                row.call_id,
                CallEventKind(row.kind),
                row.data,
                row.t_mono_ns,
                row.occurred_at.timestamp(),
                row.event_id,
            )
            if self._apply(session, call, event):
                ended.append(call_id)
        return ended

    # --- one event -----------------------------------------------------------------------

    def _start(self, session: Session, event: CallEvent) -> bool:
        if session.get(Call, event.call_id) is not None:
            return False
        data = event.data
        caller_hash, caller_masked = self._caller(display_text.clean(_text(data.get("from"))))
        line_name = _text(data.get("line"))
        line_id = (
            session.scalar(select(Line.id).where(Line.name == line_name)) if line_name else None
        )
        started = _wall(event)
        call = Call(
            id=event.call_id,
            line_id=line_id,
            caller_hash=caller_hash,
            caller_masked=caller_masked,
            to_number=_dialled(_text(data.get("to"))),
            started_at=started,
            redaction_policy=self._redaction(line_name or None).version,
        )
        session.add(call)
        session.add(CallLeg(call=call, kind=LegKind.CALLER, started_at=started))
        session.flush()
        return True

    def _caller(self, from_uri: str) -> tuple[str | None, str | None]:
        match = _SIP_USER.search(from_uri)
        try:
            number = match.group(1) if match else ""
            return number_hash(number, key=self._number_key), mask(number)
        except ValueError:
            return None, None  # anonymous, or a SIP user name rather than a number

    def _apply(self, session: Session, call: Call, event: CallEvent) -> bool:
        """Projects one event of an existing call; True when it ended the call."""
        kind = event.kind
        if kind is CallEventKind.ANSWERED:
            self._answered(session, call, event)
        elif kind is CallEventKind.AGENT:
            self._agent_event(session, call, event)
        elif kind is CallEventKind.PLAYOUT_FLUSHED:
            self._flushed(session, call, event)
        elif kind is CallEventKind.DISCLOSURE_PLAYED:
            self._disclosure_played(session, call, event)
        elif kind is CallEventKind.RECORDING:
            self._recording(session, call, event)
        elif kind is CallEventKind.ESCALATION:
            self._escalation(session, call, event)
        elif kind is CallEventKind.TRANSFERRED and _text(event.data.get("reason")) in (
            "",
            "session_failed",
        ):  # a transfer after consent was refused is not an escalation
            self._transferred(session, call, event)
        elif kind is CallEventKind.ENDED:
            self._ended(session, call, event)
            return True
        return False

    def _recording(self, session: Session, call: Call, event: CallEvent) -> None:
        """The call's recording: started, then finished (its hashes and pauses) or failed. A
        pause or resume is kept in the events; the finished report carries them all."""
        data = event.data
        name = _text(data.get("event"))
        if name not in ("started", "finished", "failed"):
            return
        recording = session.scalar(select(Recording).where(Recording.call_id == call.id))
        if recording is None:
            recording = Recording(
                call_id=call.id,
                file=display_text.shown(_text(data.get("file")), limit=80) or f"{call.id}.prec",
                state=RecordingState.RECORDING,
                started_at=_not_before(_wall(event), call.started_at),
                pauses=[],
            )
            session.add(recording)
        if name == "finished":
            recording.state = RecordingState.FINISHED
            recording.duration_ms = _count(data.get("duration_ms"))
            recording.pcm_sha256 = _sha256(data.get("pcm_sha256"))
            recording.file_sha256 = _sha256(data.get("file_sha256"))
            recording.pauses = _pauses(data.get("pauses"))
        elif name == "failed":
            recording.state = RecordingState.FAILED
            recording.reason = display_text.shown(_text(data.get("reason")), limit=200) or None

    def _disclosure_played(self, session: Session, call: Call, event: CallEvent) -> None:
        """A disclosure_plays row for a disclosure that was played (one that was not, for want
        of its audio, is only in call_events: nobody heard it)."""
        data = event.data
        if data.get("played") is not True:
            return
        name, version = _text(data.get("disclosure")), data.get("version")
        found = session.scalar(
            select(DisclosureVersion)
            .join(Disclosure, Disclosure.id == DisclosureVersion.disclosure_id)
            .where(Disclosure.name == name, DisclosureVersion.version == version)
        )
        try:
            consent = ConsentResult(_text(data.get("consent")))
        except ValueError:
            consent = ConsentResult.NO_RESPONSE
        try:
            method: ConsentMethod | None = ConsentMethod(_text(data.get("consent_method")))
        except ValueError:
            method = None
        if method is None and consent not in (
            ConsentResult.NO_RESPONSE,
            ConsentResult.NOT_REQUIRED,
        ):
            consent = ConsentResult.NO_RESPONSE  # a consent claimed without how: not counted
        if found is None:
            log.warning(
                "a played disclosure version is not in the database; play not recorded",
                extra={"call_id": call.id, "disclosure": name, "version": version},
            )
            return
        if found.audio_sha256 != data.get("sha256"):
            log.warning(
                "played disclosure audio differs from its version's",
                extra={"call_id": call.id, "disclosure": name, "version": version},
            )
        started = _at_mono(event, data.get("start_mono_ns"), call.started_at)
        ended = _at_mono(event, data.get("end_mono_ns"), started)
        session.add(
            DisclosurePlay(
                call_id=call.id,
                version_id=found.id,
                started_at=started,
                ended_at=ended,
                interrupted=data.get("interrupted") is True,
                consent=consent,
                consent_method=method,
                circumstances=_circumstances(data),
            )
        )

    def _answered(self, session: Session, call: Call, event: CallEvent) -> None:
        answered = _not_before(_wall(event), call.started_at)
        call.answered_at = answered
        codec = display_text.shown(_text(event.data.get("codec")), limit=_CODEC) or None
        for leg in call.legs:
            if leg.kind is LegKind.CALLER:
                leg.codec = codec
        session.add(CallLeg(call=call, kind=LegKind.AGENT, started_at=answered))

    def _agent_event(self, session: Session, call: Call, event: CallEvent) -> None:
        name = _text(event.data.get("event"))
        if name == "caller_transcript":
            self._caller_segment(session, call, event)
        elif name == "agent_transcript":
            self._agent_segment(session, call, event)
        elif name == "end_of_turn":
            self._turn(session, call, event)
        elif name == "backchannel_ignored":
            self._resumed(session, call, event)
        elif name == "handoff_requested":
            self._handoff_requested(session, call, event)

    # --- escalations ---------------------------------------------------------------------

    def _escalation(self, session: Session, call: Call, event: CallEvent) -> None:
        """One transition the escalation service reported."""
        data = event.data
        ref = _text(data.get("escalation_id"))
        try:
            step = _Step(
                event=EscalationEvent(_text(data.get("event"))),
                from_state=_state(data.get("from")),
                to_state=EscalationState(_text(data.get("to"))),
                actor=display_text.shown(_text(data.get("actor")), limit=_ACTOR) or SYSTEM,
                detail=display_text.shown(_text(data.get("detail")), limit=_DETAIL) or None,
                at=_not_before(_wall(event), call.started_at),
            )
        except ValueError:
            step = None
        if not _UUID_HEX.fullmatch(ref) or step is None:
            log.warning(
                "an escalation event without a valid id, event or state; not recorded",
                extra={"call_id": call.id, "event_id": event.event_id},
            )
            return
        escalation = self._escalation_of(session, call, ref, step.at)
        if step.event is EscalationEvent.CALL_ENDED and escalation.state not in LIVE_STATES:
            return  # already closed when the call.ended was projected
        reason = _known_reason(_text(data.get("reason")))
        if reason is not None:
            escalation.reason = reason
        queue = display_text.shown(_text(data.get("queue")), limit=_QUEUE)
        if queue:
            escalation.queue = queue
        supervisor = display_text.shown(_text(data.get("supervisor")), limit=_SUPERVISOR)
        if supervisor:
            escalation.supervisor = supervisor
        summary = data.get("summary")  # the warm-handoff briefing, with each offer
        if isinstance(summary, dict):
            text = display_text.shown(_text(summary.get("text")), limit=_SUMMARY)
            if text:
                escalation.summary = text
        hashed, masked = data.get("callback_number_hash"), data.get("callback_number_masked")
        if isinstance(hashed, str) and isinstance(masked, str):
            escalation.callback_number_hash, escalation.callback_number_masked = hashed, masked
        self._step(session, escalation, step)

    def _escalation_of(self, session: Session, call: Call, ref: str, at: dt.datetime) -> Escalation:
        """The escalation `ref` names: stored, or the live one the projection made from the
        agent's handoff (the service's own record of it), or a new one."""
        found = session.scalar(select(Escalation).where(Escalation.ref == ref))
        if found is not None:
            return found
        found = session.scalar(
            select(Escalation)
            .join(CallEventRecord, CallEventRecord.event_id == Escalation.ref)
            .where(
                Escalation.call_id == call.id,
                Escalation.state.in_(LIVE_STATES),
                CallEventRecord.kind == _AGENT,
            )
            .order_by(Escalation.requested_at)
            .limit(1)
        )
        if found is not None:
            found.ref = ref
            return found
        escalation = Escalation(
            ref=ref,
            call_id=call.id,
            state=EscalationState.REQUESTED,
            queue=call.line.queue if call.line else None,
            requested_at=at,
        )
        session.add(escalation)
        return escalation

    def _handoff_requested(self, session: Session, call: Call, event: CallEvent) -> None:
        """The agent asked for a person. The escalation service reports the same escalation
        by its own id (`_escalation_of` adopts this one); without the service this is the
        only record of it, closed when the call ends."""
        live = session.scalar(
            select(func.count())
            .select_from(Escalation)
            .where(Escalation.call_id == call.id, Escalation.state.in_(LIVE_STATES))
        )
        if live:
            return  # the service's report came first
        escalation = Escalation(
            ref=event.event_id,
            call_id=call.id,
            reason=_escalation_reason(_text(event.data.get("reason"))),
            state=EscalationState.REQUESTED,
            queue=call.line.queue if call.line else None,
            requested_at=_not_before(_wall(event), call.started_at),
        )
        session.add(escalation)
        self._step(
            session,
            escalation,
            _Step(
                EscalationEvent.REQUEST,
                None,
                EscalationState.REQUESTED,
                SYSTEM,
                "the agent handed off",
                escalation.requested_at,
            ),
        )

    def _transferred(self, session: Session, call: Call, event: CallEvent) -> None:
        """The model failed and the worker put the call through to the line's fallback: a
        person has it, and the escalation ends with the call."""
        at = _not_before(_wall(event), call.started_at)
        escalation = Escalation(
            ref=event.event_id,
            call_id=call.id,
            reason=EscalationReason.MODEL_FAILURE,
            state=EscalationState.REQUESTED,
            queue=call.line.queue if call.line else None,
            requested_at=at,
        )
        session.add(escalation)
        requested = EscalationState.REQUESTED
        for step in (
            _Step(EscalationEvent.REQUEST, None, requested, SYSTEM, "model failure", at),
            _Step(
                EscalationEvent.CONNECT,
                requested,
                EscalationState.CONNECTED,
                SYSTEM,
                "transferred to the line's fallback",
                at,
            ),
        ):
            self._step(session, escalation, step)

    def _step(
        self, session: Session, escalation: Escalation, step: _Step, *, final: bool = False
    ) -> None:
        """Appends a transition, moves the escalation to its state unless a later one is
        stored already (or `final`: the call has ended, whatever clocks say), and audits it."""
        session.flush()  # the escalation's id, and the transitions stored so far
        last = session.execute(
            select(func.max(EscalationTransition.seq), func.max(EscalationTransition.at)).where(
                EscalationTransition.escalation_id == escalation.id
            )
        ).one()
        session.add(
            EscalationTransition(
                escalation_id=escalation.id,
                seq=(last[0] or 0) + 1,
                event=step.event,
                from_state=step.from_state,
                to_state=step.to_state,
                actor=step.actor,
                detail=step.detail,
                at=step.at,
            )
        )
        escalation.requested_at = min(escalation.requested_at, step.at)
        if final or last[1] is None or step.at >= last[1]:
            escalation.state = step.to_state
        if step.to_state is EscalationState.OFFERED and escalation.offered_at is None:
            escalation.offered_at = step.at
        if step.to_state is EscalationState.CONNECTED and escalation.connected_at is None:
            escalation.connected_at = step.at
        if step.to_state not in LIVE_STATES and escalation.ended_at is None:
            escalation.ended_at = step.at
        details: dict[str, Any] = {
            "escalation": escalation.ref,
            "from": step.from_state.value if step.from_state else None,
            "to": step.to_state.value,
        }
        audit.append(
            session,
            key=self._audit_key,
            actor=step.actor,
            action=f"escalation.{step.event.value}",
            target=f"call:{escalation.call_id}",
            details=details,
        )

    def _close_escalations(self, session: Session, call: Call, ended: dt.datetime) -> None:
        """Closes the call's escalations still live: nobody can be reached on an ended call."""
        live = session.scalars(
            select(Escalation)
            .where(Escalation.call_id == call.id, Escalation.state.in_(LIVE_STATES))
            .order_by(Escalation.id)
        ).all()
        for escalation in live:
            closed = (
                EscalationState.ENDED
                if escalation.state is EscalationState.CONNECTED
                else EscalationState.ABANDONED
            )
            step = _Step(
                EscalationEvent.CALL_ENDED,
                escalation.state,
                closed,
                SYSTEM,
                _CALL_ENDED_DETAIL,
                _not_before(ended, escalation.requested_at),
            )
            self._step(session, escalation, step, final=True)

    def _caller_segment(self, session: Session, call: Call, event: CallEvent) -> None:
        text = display_text.clean(_text(event.data.get("text"))).strip()
        if not text:
            return
        seen = self._seen(session, call.id, event)
        since = max(
            (s.t_mono_ns for s in seen if s.name == "caller_transcript"), default=-1
        )  # the caller's previous turn ended there
        starts = [
            s.t_mono_ns for s in seen if s.name == "caller_speech_started" and s.t_mono_ns > since
        ]
        stops = [
            s.t_mono_ns for s in seen if s.name == "caller_speech_stopped" and s.t_mono_ns > since
        ]
        start = starts[0] if starts else event.t_mono_ns
        end = stops[-1] if stops and stops[-1] >= start else event.t_mono_ns
        origin = self._origin(session, call.id)
        session.add(
            TranscriptSegment(
                call_id=call.id,
                speaker=Speaker.CALLER,
                text=text,
                start_ms=_ms(start, origin),
                end_ms=max(_ms(end, origin), _ms(start, origin)),
                redaction=_redaction_state(call),
            )
        )

    def _agent_segment(self, session: Session, call: Call, event: CallEvent) -> None:
        text = display_text.clean(_text(event.data.get("text"))).strip()
        utterance = _text(event.data.get("utterance_id"))
        if not text:
            return
        seen = [s for s in self._seen(session, call.id, event) if _utterance(s.data) == utterance]
        origin = self._origin(session, call.id)
        started = [s.t_mono_ns for s in seen if s.name == "agent_utterance_started"]
        start_ms = _ms(started[0] if started else event.t_mono_ns, origin)
        done = [s for s in seen if s.name == "agent_utterance_done"]
        flushed = [s for s in seen if s.name == CallEventKind.PLAYOUT_FLUSHED.value]
        segment = TranscriptSegment(
            call_id=call.id,
            speaker=Speaker.AGENT,
            text=text,
            start_ms=start_ms,
            redaction=_redaction_state(call),
        )
        audio_ms = _count(done[-1].data.get("audio_ms")) if done else None
        if audio_ms is not None:
            segment.end_ms = start_ms + audio_ms
        else:
            end_t = done[-1].t_mono_ns if done else event.t_mono_ns
            segment.end_ms = max(start_ms, _ms(end_t, origin))
        resumed = [s for s in seen if s.name == "backchannel_ignored"]
        # Cut short if the playout was flushed after the engine had sent all its audio, or
        # with the engine never finishing (a barge-in), unless the agent then carried on
        # (the flush paused it for a back-channel).
        cut = flushed and (not done or flushed[-1].t_mono_ns > done[-1].t_mono_ns)
        if cut and not (resumed and resumed[-1].t_mono_ns > flushed[-1].t_mono_ns):
            heard_text = display_text.clean(_text(event.data.get("heard_text"))).strip() or None
            _interrupt(segment, _count(flushed[-1].data.get("played_ms")) or 0, heard_text)
        session.add(segment)

    def _flushed(self, session: Session, call: Call, event: CallEvent) -> None:
        """A flush after the agent's transcript arrived: mark its segment as cut short."""
        found = self._projected_agent_segment(session, call, event, "utterance_id")
        if found is not None:
            _interrupt(found[0], _count(event.data.get("played_ms")) or 0, None)

    def _resumed(self, session: Session, call: Call, event: CallEvent) -> None:
        """The agent carried on after a back-channel: the flush that paused it cut nothing."""
        found = self._projected_agent_segment(session, call, event, "item_id")
        if found is None:
            return
        segment, seen = found
        done = [s for s in seen if s.name == "agent_utterance_done"]
        audio_ms = _count(done[-1].data.get("audio_ms")) if done else None
        segment.interrupted = False
        segment.heard_ms = None
        segment.heard_text = None
        if audio_ms is not None:
            segment.end_ms = segment.start_ms + audio_ms

    def _projected_agent_segment(
        self, session: Session, call: Call, event: CallEvent, key: str
    ) -> tuple[TranscriptSegment, list[_Seen]] | None:
        """The agent segment already stored for the utterance `event.data[key]` names, with
        the utterance's earlier events; None while its transcript has not arrived (the
        transcript, when it comes, sees this event)."""
        utterance = _text(event.data.get(key))
        if not utterance:
            return None
        seen = [s for s in self._seen(session, call.id, event) if _utterance(s.data) == utterance]
        started = [s.t_mono_ns for s in seen if s.name == "agent_utterance_started"]
        if not started or not any(s.name == "agent_transcript" for s in seen):
            return None
        start_ms = _ms(started[0], self._origin(session, call.id))
        segment = session.scalar(
            select(TranscriptSegment)
            .where(
                TranscriptSegment.call_id == call.id,
                TranscriptSegment.speaker == Speaker.AGENT,
                TranscriptSegment.start_ms == start_ms,
            )
            .order_by(TranscriptSegment.id.desc())
            .limit(1)
        )
        return None if segment is None else (segment, seen)

    def _turn(self, session: Session, call: Call, event: CallEvent) -> None:
        data = event.data
        index = session.scalar(
            select(func.count()).select_from(TurnMetrics).where(TurnMetrics.call_id == call.id)
        )
        parts = [_count(data.get(k)) for k in _TURN_PARTS]
        session.add(
            TurnMetrics(
                call_id=call.id,
                turn_index=index or 0,
                endpointing_ms=parts[0],
                asr_ms=_count(data.get("asr_ms")),
                responder_ms=parts[1],
                first_audio_ms=parts[2],
                voice_to_voice_ms=turn_voice_to_voice_ms(data),
                model=_text(data.get("model"))[:120] or None,
            )
        )

    def _worker_lost(self, session: Session, reset: CallEvent, *, spare: set[str]) -> list[str]:
        """Ends, as `worker_lost`, every live call of the worker a `worker.reset` names (by its
        index and host), at the last event stored for the call."""
        worker, host = reset.data.get("worker"), reset.data.get("host")
        started = session.execute(
            select(CallEventRecord.call_id, CallEventRecord.data)
            .join(Call, Call.id == CallEventRecord.call_id)
            .where(Call.ended_at.is_(None), CallEventRecord.kind == CallEventKind.STARTED.value)
        ).all()
        lost = [
            call_id
            for call_id, data in started
            if call_id not in spare
            and isinstance(data, dict)
            and data.get("worker") == worker
            and data.get("host") == host
        ]
        for call_id in lost:
            call = session.get_one(Call, call_id)
            last = session.scalar(
                select(func.max(CallEventRecord.occurred_at)).where(
                    CallEventRecord.call_id == call_id
                )
            )
            at = min(_wall(reset), last) if last is not None else _wall(reset)
            self._close(session, call, _not_before(at, call.started_at), WORKER_LOST, None)
        if lost:
            log.warning(
                "calls of a lost media worker ended",
                extra={"worker": worker, "calls": len(lost), "cause": reset.data.get("cause")},
            )
        return lost

    def _ended(self, session: Session, call: Call, event: CallEvent) -> None:
        ended = _not_before(_wall(event), call.started_at)
        reason = display_text.shown(_text(event.data.get("reason")), limit=_END_REASON) or "unknown"
        self._close(session, call, ended, reason, event)

    def _close(
        self,
        session: Session,
        call: Call,
        ended: dt.datetime,
        reason: str,
        event: CallEvent | None,
    ) -> None:
        """Ends the call and its legs and decides its outcome; `event` is the call.ended that
        says so (None: the worker was lost, and everything stored of the call counts)."""
        call.ended_at, call.end_reason = ended, reason
        for leg in call.legs:
            if leg.ended_at is None:
                leg.ended_at = _not_before(ended, leg.started_at)
                leg.end_reason = reason
        session.flush()
        self._close_escalations(session, call, ended)
        escalated = session.scalar(
            select(func.count()).select_from(Escalation).where(Escalation.call_id == call.id)
        )
        if escalated:
            call.outcome = Outcome.ESCALATED
        elif call.answered_at is not None and (
            reason.startswith("agent:") or self._caller_answered(session, call.id, event)
        ):
            call.outcome = Outcome.CONTAINED
        else:
            call.outcome = Outcome.ABANDONED

    def _caller_answered(self, session: Session, call_id: str, event: CallEvent | None) -> bool:
        seen = self._seen(session, call_id, event)
        asked = [
            s.t_mono_ns
            for s in seen
            if s.name == "caller_transcript" and _text(s.data.get("text")).strip()
        ]
        replied = [s.t_mono_ns for s in seen if s.name == "agent_transcript"]
        return bool(asked) and bool(replied) and replied[-1] > asked[-1]

    # --- what came before ----------------------------------------------------------------

    def _seen(self, session: Session, call_id: str, before: CallEvent | None) -> list[_Seen]:
        """The call's agent events and playout flushes up to `before` (None: all), oldest
        first."""
        query = select(CallEventRecord.kind, CallEventRecord.t_mono_ns, CallEventRecord.data).where(
            CallEventRecord.call_id == call_id,
            CallEventRecord.kind.in_([_AGENT, CallEventKind.PLAYOUT_FLUSHED.value]),
        )
        if before is not None:
            query = query.where(
                CallEventRecord.t_mono_ns <= before.t_mono_ns,
                CallEventRecord.event_id != before.event_id,
            )
        rows = session.execute(query.order_by(CallEventRecord.t_mono_ns)).all()
        seen = []
        for kind, t_mono_ns, data in rows:
            if not isinstance(data, dict):
                continue
            name = _text(data.get("event")) if kind == _AGENT else kind
            seen.append(_Seen(name, t_mono_ns, data))
        return seen

    def _origin(self, session: Session, call_id: str) -> int:
        """The monotonic time of the call's start, which transcript times count from."""
        origin = session.scalar(
            select(CallEventRecord.t_mono_ns).where(
                CallEventRecord.call_id == call_id,
                CallEventRecord.kind == CallEventKind.STARTED.value,
            )
        )
        return origin or 0


_TURN_PARTS = ("endpointing_ms", "responder_ms", "first_audio_ms")


def turn_voice_to_voice_ms(data: dict[str, Any]) -> int | None:
    """A turn's voice-to-voice time from its `end_of_turn` event, the engine's share: from the
    caller's end of speech as its VAD saw it to the first agent audio (the network and the
    caller's jitter buffer come on top). None unless every part was measured."""
    parts = [_count(data.get(key)) for key in _TURN_PARTS]
    if any(part is None for part in parts):
        return None
    return sum(part for part in parts if part is not None)


def _dialled(to: str) -> str:
    """The dialled number as stored: in clear when it is a phone number (one of our lines', as a
    rule), else masked like a caller's (what a caller dials may be anything)."""
    if is_phone_number(to):
        return display_text.shown(to, limit=_TO_NUMBER)
    return mask(to)


def _utterance(data: dict[str, Any]) -> str:
    """The agent utterance an event belongs to: the worker says `utterance_id`, events passed
    through from the model (a back-channel ignored) the Realtime protocol's `item_id`."""
    return _text(data.get("utterance_id") or data.get("item_id"))


def _interrupt(segment: TranscriptSegment, played_ms: int, heard_text: str | None) -> None:
    segment.interrupted = True
    segment.end_ms = segment.start_ms + played_ms
    segment.heard_ms = played_ms
    segment.heard_text = heard_text


def _escalation_reason(reason: str) -> EscalationReason:
    if reason in _HANDOFF_REASONS:
        return _HANDOFF_REASONS[reason]
    try:
        return EscalationReason(reason)
    except ValueError:
        log.warning("unknown handoff reason; recorded as low confidence")
        return EscalationReason.LOW_CONFIDENCE


def _known_reason(reason: str) -> EscalationReason | None:
    if reason in _HANDOFF_REASONS:
        return _HANDOFF_REASONS[reason]
    try:
        return EscalationReason(reason)
    except ValueError:
        return None


def _state(value: Any) -> EscalationState | None:
    try:
        return EscalationState(_text(value))
    except ValueError:
        return None


def _redaction_state(call: Call) -> Redaction:
    """A segment projected from events `scrub` redacted is redacted when it is written."""
    policy = call.redaction_policy
    return Redaction.REDACTED if policy is not None and policy != "off" else Redaction.NONE


def _line_of(session: Session, call_id: str) -> str | None:
    """The line name of a call already stored (None: unknown call, or a call with no line)."""
    return session.scalar(
        select(Line.name).join(Call, Call.line_id == Line.id).where(Call.id == call_id)
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _sha256(value: Any) -> str | None:
    text = _text(value)
    return text if re.fullmatch(r"[0-9a-f]{64}", text) else None


def _circumstances(data: Mapping[str, Any]) -> dict[str, Any]:
    """How a disclosure was played, from its event, kept only in the shapes the worker sends
    (the spool is the worker's, but a field that is not what it should be is dropped)."""
    kept: dict[str, Any] = {}
    rules = data.get("jurisdiction")
    if isinstance(rules, dict):
        kept["rules"] = {
            "rules_version": display_text.shown(_text(rules.get("rules_version")), limit=64),
            "places": _names(rules.get("places")),
            "rules": _names(rules.get("rules")),
            "ai_notice_required": rules.get("ai_notice_required") is True,
            "recording": display_text.shown(_text(rules.get("recording")), limit=16),
        }
    kept["covers"] = [c for c in _names(data.get("covers")) if c in ("ai", "recording")]
    barged = _text(data.get("barged_in"))
    if barged in ("speech", "dtmf"):
        kept["barged_in"] = barged
        kept["heard_ms"] = _count(data.get("heard_ms"))
    talked = _count(data.get("talked_over"))
    if talked:
        kept["talked_over"] = talked
    answer = display_text.shown(_text(data.get("answer")), limit=200)
    if answer:
        kept["answer"] = answer
    return kept


def _names(value: Any) -> list[str]:
    items = value if isinstance(value, list) else []
    return [display_text.shown(_text(item), limit=16) for item in items[:8] if _text(item)]


def _pauses(value: Any) -> list[dict[str, Any]]:
    """PCI pauses as the worker reported them, kept only where they are whole."""
    pauses: list[dict[str, Any]] = []
    for item in value if isinstance(value, list) else []:
        if not isinstance(item, dict):
            continue
        start, end = _count(item.get("start_ms")), _count(item.get("end_ms"))
        if start is None:
            continue
        by = display_text.shown(_text(item.get("by")), limit=80)
        pauses.append({"start_ms": start, "end_ms": end, "by": by})
    return pauses


def _count(value: Any) -> int | None:
    """A non-negative whole number of ms from an event field, or None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        return None
    return max(0, min(round(value), 2**31 - 1))


def _ms(t_mono_ns: int, origin_ns: int) -> int:
    return max(0, (t_mono_ns - origin_ns) // 1_000_000)


def _wall(event: CallEvent) -> dt.datetime:
    return dt.datetime.fromtimestamp(event.t_wall, dt.UTC)


def _at_mono(event: CallEvent, t_mono_ns: Any, floor: dt.datetime) -> dt.datetime:
    """The wall time of a monotonic instant the event reports, from the event's own pair."""
    if isinstance(t_mono_ns, bool) or not isinstance(t_mono_ns, int):
        return _not_before(_wall(event), floor)
    offset_s = (event.t_mono_ns - t_mono_ns) / 1e9
    return _not_before(_wall(event) - dt.timedelta(seconds=offset_s), floor)


def _not_before(when: dt.datetime, floor: dt.datetime) -> dt.datetime:
    # Wall clocks step (NTP); an ordering CHECK must not turn a record into a lost event.
    return max(when, floor)
