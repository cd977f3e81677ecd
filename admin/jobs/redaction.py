"""Redacting a call's transcript by its line's policy (agent.pii does the finding).

Every segment's `text` and `heard_text` are rewritten with typed placeholders and its state set
to `redacted` (the policy has been applied to it). A line whose policy is empty is left alone,
state included. Placeholders hold no digits or addresses, so running it again changes nothing;
segments already redacted are scanned again, so a policy widened later still applies.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.jobs.calls import load_call
from admin.models import Line, Redaction, TranscriptSegment
from agent.pii import PiiKind, Redacted, redact

Policy = Callable[[str | None], frozenset[PiiKind]]  # line name -> what to redact


@dataclass(frozen=True, slots=True)
class RedactionReport:
    call_id: str
    policy: tuple[str, ...]
    segments: int
    changed: int
    found: dict[str, int] = field(default_factory=dict)  # kind -> how many

    def as_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "policy": list(self.policy),
            "segments": self.segments,
            "changed": self.changed,
            "found": dict(self.found),
        }


def redact_call(session: Session, *, call_id: str, policy: Policy) -> RedactionReport:
    call = load_call(session, call_id)
    line = session.get(Line, call.line_id) if call.line_id is not None else None
    kinds = policy(line.name if line else None)
    segments = session.scalars(
        select(TranscriptSegment)
        .where(TranscriptSegment.call_id == call.id)
        .order_by(TranscriptSegment.start_ms, TranscriptSegment.id)
    ).all()
    found: Counter[str] = Counter()
    changed = 0
    if kinds:
        for segment in segments:
            results = _redact_segment(segment, kinds)
            for result in results:
                found.update(finding.kind.value for finding in result.findings)
            changed += any(result.changed for result in results)
    return RedactionReport(
        call_id=call.id,
        policy=tuple(sorted(kind.value for kind in kinds)),
        segments=len(segments),
        changed=changed,
        found=dict(found),
    )


def _redact_segment(segment: TranscriptSegment, kinds: frozenset[PiiKind]) -> list[Redacted]:
    text = redact(segment.text, kinds)
    results = [text]
    if text.changed:
        segment.text = text.text
    if segment.heard_text is not None:
        heard = redact(segment.heard_text, kinds)
        results.append(heard)
        if heard.changed:
            segment.heard_text = heard.text
    if segment.redaction is not Redaction.REDACTED:
        segment.redaction = Redaction.REDACTED
    return results
