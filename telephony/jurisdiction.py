"""Which notices a call needs, and what recording it allows, by jurisdiction.

The rules are data (`telephony/rules/jurisdictions.yaml`, or an operator's copy named by
`compliance.rules_file`), versioned; this module only reads them. A call is subject to its
line's jurisdiction and to the caller's (a US number's area code gives the state, another
country's code the country); the stricter rule wins on each point, and a caller whose place
cannot be told gets the `unknown` rule.

Pure: no I/O past loading the file; the media worker asks `RuleBook.requirements` once a call
is answered and acts on the answer (telephony/consent.py).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import phonenumbers
import yaml

BUNDLED_RULES = Path(__file__).parent / "rules" / "jurisdictions.yaml"
UNKNOWN = "unknown"
DEFAULT = "default"
_SIP_USER = re.compile(r"sips?:([^@;>]+)")
_STATE_SUFFIX = re.compile(r",\s*([A-Z]{2})$")


class Recording(enum.IntEnum):
    """What recording a call needs from the caller; a higher value is stricter."""

    ONE_PARTY = 0  # nothing: the business is a party
    ALL_PARTY = 1  # the recording notice, and consent (staying on the line may be enough)
    EXPLICIT = 2  # the recording notice, and an affirmative answer (a key, or "yes")

    @property
    def label(self) -> str:
        return self.name.lower()


class RulesError(ValueError):
    """A rules file that cannot be used, saying where."""


@dataclass(frozen=True, slots=True)
class Rule:
    ai_notice: bool
    recording: Recording
    basis: str


@dataclass(frozen=True, slots=True)
class Requirements:
    """What a call needs: the union of its places' rules, the stricter on each point."""

    version: str  # the rules file's version
    places: tuple[str, ...]  # e.g. ("US", "US-CA"): the line's, then the caller's
    rules: tuple[str, ...]  # the rule applied for each place (e.g. "US-CA", "EU", "unknown")
    ai_notice: bool
    recording: Recording
    strictest: tuple[str, ...] = ()  # the rules that set `recording`

    def as_dict(self) -> dict[str, object]:
        return {
            "rules_version": self.version,
            "places": list(self.places),
            "rules": list(self.rules),
            "ai_notice_required": self.ai_notice,
            "recording": self.recording.label,
        }

    def recording_allowed(self, *, notice_played: bool, consent: str, method: str) -> str | None:
        """None when the call may be recorded; else why not, in words for the event log.

        `notice_played`: a notice covering recording was heard; `consent`/`method`: the
        decision's (granted/declined/no_response; implied/dtmf/spoken).
        """
        if consent != "granted":
            return f"consent {consent}"
        if self.recording is Recording.ONE_PARTY:
            return None
        rule = " and ".join(self.strictest) or "the rules"
        if self.recording is Recording.EXPLICIT and method == "implied":
            return f"{rule} requires an explicit yes to recording, and the line asks for none"
        if not notice_played:
            return f"{rule} requires a recording notice, and none was played"
        return None


# A call no rules apply to (a line without a rule book): recorded on the caller's yes alone.
NO_RULES = Requirements(
    version="", places=(), rules=(), ai_notice=False, recording=Recording.ONE_PARTY
)


class RuleBook:
    """A loaded rules file."""

    def __init__(self, data: dict[str, Any], *, source: str) -> None:
        try:
            self.version = str(data["version"])
            self.rules = {
                name.upper() if name not in (DEFAULT, UNKNOWN) else name: _rule(name, body)
                for name, body in data["rules"].items()
            }
            self.eu_members = frozenset(code.upper() for code in data.get("eu_members", []))
            self.us_states = {str(k): str(v).upper() for k, v in data["us_states"].items()}
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise RulesError(
                f"{source}: not a rules file ({type(error).__name__}: {error})"
            ) from None
        for needed in (DEFAULT, UNKNOWN):
            if needed not in self.rules:
                raise RulesError(f"{source}: rules must include {needed!r}")
        self.source = source
        # The geocoder's data takes 0.4 s and tens of MB to load: only a process that applies
        # rules (a media worker, at start) pays for it, never one that merely reads settings.
        from phonenumbers import geocoder

        self._describe = geocoder.description_for_number

    @classmethod
    def load(cls, path: Path | None = None) -> RuleBook:
        path = path or BUNDLED_RULES
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise RulesError(f"{path}: {error.strerror}") from None
        except yaml.YAMLError as error:
            raise RulesError(f"{path}: not YAML ({error})") from None
        if not isinstance(data, dict):
            raise RulesError(f"{path}: not a rules file")
        return cls(data, source=str(path))

    def place_of(self, caller: str | None, *, region: str = "US") -> str:
        """The caller's place from a number or a SIP URI: 'US-CA', 'DE', or 'unknown'.

        A national number reads as dialled in `region` (the line's country).
        """
        if not caller:
            return UNKNOWN
        match = _SIP_USER.search(caller)
        number = match.group(1) if match else caller
        number = re.sub(r"[\s().-]", "", number)
        if not re.fullmatch(r"\+?[0-9]{4,16}", number):
            return UNKNOWN  # a SIP user name, "anonymous", or garbage
        try:
            parsed = phonenumbers.parse(number, None if number.startswith("+") else region)
        except phonenumbers.NumberParseException:
            return UNKNOWN
        if not phonenumbers.is_possible_number(parsed):
            return UNKNOWN
        country = phonenumbers.region_code_for_number(parsed)
        if not country:
            return UNKNOWN
        if country != "US":
            return str(country)
        description = self._describe(parsed, "en")
        suffix = _STATE_SUFFIX.search(description)
        state = suffix.group(1) if suffix else self.us_states.get(description)
        return f"US-{state}" if state else UNKNOWN  # toll-free, or an area code not placed

    def rule_for(self, place: str) -> str:
        """The rule's name that applies to a place: itself, its country, the EU, or default."""
        place = place.upper() if place != UNKNOWN else place
        if place in self.rules:
            return place
        country = place.split("-", 1)[0]
        if country in self.rules:
            return country
        if country in self.eu_members and "EU" in self.rules:
            return "EU"
        return DEFAULT

    def requirements(self, line_place: str, caller: str | None, *, region: str) -> Requirements:
        """What a call on a line in `line_place` from `caller` needs."""
        places = (line_place, self.place_of(caller, region=region))
        names = tuple(self.rule_for(place) for place in places)
        rules = [self.rules[name] for name in names]
        recording = max(rule.recording for rule in rules)
        setting = (n for n, rule in zip(names, rules, strict=True) if rule.recording == recording)
        return Requirements(
            version=self.version,
            places=places,
            rules=names,
            ai_notice=any(rule.ai_notice for rule in rules),
            recording=recording,
            strictest=tuple(dict.fromkeys(setting)),
        )


def _rule(name: str, body: Any) -> Rule:
    if not isinstance(body, dict):
        raise ValueError(f"rule {name!r} is not a mapping")
    unknown = set(body) - {"ai_notice", "recording", "basis"}
    if unknown:
        raise ValueError(f"rule {name!r} has unknown keys {sorted(unknown)}")
    try:
        recording = Recording[str(body["recording"]).upper()]
    except KeyError:
        raise ValueError(
            f"rule {name!r}: recording must be one of one_party, all_party, explicit"
        ) from None
    if not isinstance(body.get("ai_notice"), bool):
        raise ValueError(f"rule {name!r}: ai_notice must be true or false")
    return Rule(ai_notice=body["ai_notice"], recording=recording, basis=str(body.get("basis", "")))
