"""Lines: which agent profile, disclosure and queue answer a dialled number."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent.redaction import RedactionPolicy

_NON_DIGITS = re.compile(r"[^0-9*#a-zA-Z]")


@dataclass(frozen=True, slots=True)
class Line:
    name: str
    numbers: tuple[str, ...]
    agent: str = "echo"
    disclosure: str | None = None
    queue: str | None = None
    fallback_transfer: str | None = None  # SIP URI to transfer to when the model fails
    # Supervisors can take this line's calls (the escalation service runs): a call whose model
    # fails waits for one of them instead of ending.
    escalates: bool = False
    supervisor_hangup: str = "agent"  # a supervisor's leg ended: "agent" or "queue"
    # What is redacted from the call's words before they leave the worker (agent/redaction.py).
    redaction: RedactionPolicy = field(default_factory=RedactionPolicy)
    # Recorded once the caller consented (telephony/recording.py); never without consent.
    record_calls: bool = False
    # A key that pauses the recording and the transcript for a card number, and resumes them.
    pci_pause_key: str | None = None
    # Where the line's business is (US-CA, DE, EU): with the caller's place, it picks the
    # rules for notices and recording consent (telephony/jurisdiction.py).
    jurisdiction: str = "US"


def normalize_number(number: str) -> str:
    """Dialled numbers compare without '+', spaces, dashes or dots."""
    return _NON_DIGITS.sub("", number)


class LineRouter:
    """Maps a dialled number to its line; unknown numbers go to the default line, if any."""

    def __init__(self, lines: tuple[Line, ...], default_line: str | None) -> None:
        self._by_number: dict[str, Line] = {}
        names = {line.name: line for line in lines}
        for line in lines:
            for number in line.numbers:
                key = normalize_number(number)
                if key in self._by_number:
                    raise ValueError(f"number {number!r} is on two lines")
                self._by_number[key] = line
        if default_line is not None and default_line not in names:
            raise ValueError(f"default line {default_line!r} is not among the configured lines")
        self._default = names[default_line] if default_line is not None else None

    def route(self, dialled: str) -> Line | None:
        return self._by_number.get(normalize_number(dialled), self._default)


def request_uri_user(sip_message: str) -> str:
    """The user part of a SIP request's Request-URI ('100' in 'INVITE sip:100@host SIP/2.0').

    Raises ValueError for a message that is not a SIP request.
    """
    first_line = sip_message.split("\r\n", 1)[0].split("\n", 1)[0]
    parts = first_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("SIP/"):
        raise ValueError("not a SIP request line")
    uri = parts[1]
    scheme, _, rest = uri.partition(":")
    if scheme.lower() not in ("sip", "sips", "tel") or not rest:
        raise ValueError("unsupported Request-URI scheme")
    if scheme.lower() == "tel":
        return rest.split(";", 1)[0]
    user, at, _host = rest.partition("@")
    return user.split(";", 1)[0] if at else ""
