"""A line's redaction policy, and the said words in agent events it applies to.

Redaction happens where the words are first written down: the media worker's bridge redacts an
agent event before it reaches the spool, the live fan-out or any log, and the ingester does it
again (for spools written before, or by a worker with another policy) before the database. Both
use `RedactionPolicy.agent_event`, so what a call's events hold and what its transcript
segments hold are redacted alike. `RedactionPolicy.version` is recorded with every call: an
auditor can tell which detector and which kinds a call's text went through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from agent.pii import ALL_KINDS, DEFAULT_REGION, PiiKind, Redacted, redact
from agent.session import EventKind

# The detector's own version: raise it whenever agent/pii.py or agent/numbers.py find more or
# less, so calls redacted before and after can be told apart.
DETECTOR_VERSION = "pii-3"

# What each agent event holds of what was said (agent.session.EventKind data).
_SAID: Mapping[str, tuple[str, ...]] = {
    EventKind.CALLER_TRANSCRIPT.value: ("text",),
    EventKind.AGENT_TRANSCRIPT.value: ("text", "heard_text"),
    EventKind.BARGE_IN.value: ("text",),
    EventKind.BACKCHANNEL_IGNORED.value: ("text",),
    EventKind.INSTRUCTION_APPLIED.value: ("text",),
    EventKind.ERROR.value: ("message",),
}
_FACTS = "facts"  # parley.reply: the slot values the caller gave (email, callback number...)


@dataclass(frozen=True, slots=True)
class RedactionPolicy:
    """What is redacted on a line, and in which country its national phone numbers are read."""

    kinds: frozenset[PiiKind] = field(default=ALL_KINDS)
    region: str = DEFAULT_REGION

    @classmethod
    def of(cls, kinds: Iterable[str | PiiKind], region: str = DEFAULT_REGION) -> RedactionPolicy:
        return cls(frozenset(PiiKind(kind) for kind in kinds), region.upper())

    @property
    def version(self) -> str:
        """'pii-3:card,email,...;US', or 'off' for a line that redacts nothing."""
        if not self.kinds:
            return "off"
        return f"{DETECTOR_VERSION}:{','.join(sorted(self.kinds))};{self.region}"

    def text(self, text: str, *, context: str = "") -> Redacted:
        return redact(text, self.kinds, context=context, region=self.region)

    def agent_event(self, data: Mapping[str, object], *, context: str = "") -> dict[str, object]:
        """A copy of an agent event's data (`{"event": ..., ...}`) with what was said redacted;
        `context` is the agent's last words before it (the question a caller answers)."""
        redacted = dict(data)
        if not self.kinds:
            return redacted
        for name in _SAID.get(str(data.get("event")), ()):
            value = redacted.get(name)
            if isinstance(value, str):
                redacted[name] = self.text(value, context=context).text
        facts = redacted.get(_FACTS)
        if isinstance(facts, dict):
            redacted[_FACTS] = {
                # the slot's name is the question ("security_code", "date_of_birth")
                key: self.text(value, context=str(key).replace("_", " ")).text
                if isinstance(value, str)
                else value
                for key, value in facts.items()
            }
        return redacted


def withheld(data: Mapping[str, object], why: str = "pci_paused") -> dict[str, object]:
    """A copy of an agent event's data without anything that was said (a PCI pause, a caller
    who did not consent): the words are empty, the slot values gone, and `why` (a flag set to
    true: pci_paused, no_consent) says why."""
    kept = dict(data)
    said = _SAID.get(str(data.get("event")), ())
    if not said and _FACTS not in data:
        return kept
    for name in said:
        if name in kept:
            kept[name] = ""
    if _FACTS in kept:
        kept[_FACTS] = {}
    kept[why] = True
    return kept
