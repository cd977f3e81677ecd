"""The jurisdiction rules: each place's rule, the caller's place from their number, the
stricter rule winning, what a call may record, and rules files an operator supplies."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from admin.settings import Settings
from telephony.consent import ConsentMode, ConsentPolicy, DisclosurePlan, Notice
from telephony.jurisdiction import BUNDLED_RULES, Recording, RuleBook, RulesError
from telephony.lines import Line

RULES = RuleBook.load()

# A number from each all-party-consent state (by area code), and from one-party states.
ALL_PARTY = {
    "US-CA": "+14155550123",
    "US-DE": "+13025550123",
    "US-FL": "+13055550123",
    "US-IL": "+13125550123",
    "US-MD": "+14105550123",
    "US-MA": "+16175550123",
    "US-MT": "+14065550123",
    "US-NV": "+17025550123",
    "US-NH": "+16035550123",
    "US-PA": "+12155550123",
    "US-WA": "+12065550123",
}
ONE_PARTY = {"US-NY": "+12125550123", "US-TX": "+12145550123", "US-OR": "+15035550123"}


@pytest.mark.parametrize(("place", "number"), sorted(ALL_PARTY.items()))
def test_a_caller_from_an_all_party_state_needs_the_notice_and_consent(
    place: str, number: str
) -> None:
    needs = RULES.requirements("US", number, region="US")
    assert needs.places == ("US", place)
    assert needs.rules == ("US", place)  # each state has a rule of its own
    assert needs.recording is Recording.ALL_PARTY
    assert needs.recording_allowed(notice_played=False, consent="granted", method="implied") == (
        f"{place} requires a recording notice, and none was played"
    )
    assert needs.recording_allowed(notice_played=True, consent="granted", method="implied") is None


@pytest.mark.parametrize(("place", "number"), sorted(ONE_PARTY.items()))
def test_a_caller_from_a_one_party_state_needs_nothing_to_be_recorded(
    place: str, number: str
) -> None:
    needs = RULES.requirements("US", number, region="US")
    assert needs.places == ("US", place) and needs.rules == ("US", "US")
    assert needs.recording is Recording.ONE_PARTY and needs.ai_notice is False
    assert needs.recording_allowed(notice_played=False, consent="granted", method="implied") is None


def test_california_also_requires_the_bot_disclosure() -> None:
    assert RULES.requirements("US", ALL_PARTY["US-CA"], region="US").ai_notice is True
    assert RULES.requirements("US", ALL_PARTY["US-FL"], region="US").ai_notice is False


@pytest.mark.parametrize("number", ["+4930123456", "+33142685300", "+390612345678"])
def test_a_caller_from_the_eu_needs_the_ai_notice_and_an_explicit_yes(number: str) -> None:
    needs = RULES.requirements("US", number, region="US")
    assert needs.rules[1] == "EU"
    assert needs.ai_notice is True and needs.recording is Recording.EXPLICIT
    implied = needs.recording_allowed(notice_played=True, consent="granted", method="implied")
    assert implied == "EU requires an explicit yes to recording, and the line asks for none"
    for method in ("dtmf", "speech"):
        assert needs.recording_allowed(notice_played=True, consent="granted", method=method) is None


def test_the_stricter_rule_wins_whichever_side_it_comes_from() -> None:
    # A California line: a one-party caller still needs the notice, consent and the AI notice.
    needs = RULES.requirements("US-CA", ONE_PARTY["US-NY"], region="US")
    assert needs.rules == ("US-CA", "US")
    assert needs.recording is Recording.ALL_PARTY and needs.ai_notice is True
    # An EU line called from New York: explicit consent, as for its EU callers.
    assert RULES.requirements("DE", ONE_PARTY["US-NY"], region="DE").recording is (
        Recording.EXPLICIT
    )


@pytest.mark.parametrize(
    "caller",
    [
        None,
        "",
        "sip:anonymous@anonymous.invalid",
        "<sip:parley-dial@127.0.0.1:5062>",
        "sip:+18005550100@carrier.example",  # toll-free: no place
        "sip:12@pbx",  # too short to be a number
        "sip:%00%ff@x",
        "+1999",
    ],
)
def test_when_the_callers_place_cannot_be_told_the_stricter_rule_applies(
    caller: str | None,
) -> None:
    needs = RULES.requirements("US", caller, region="US")
    assert needs.places[1] == "unknown" and needs.rules[1] == "unknown"
    assert needs.recording is Recording.ALL_PARTY and needs.ai_notice is True


def test_the_callers_number_is_read_from_a_sip_uri_and_as_dialled_on_the_line() -> None:
    assert RULES.place_of("<sip:+14155550123@carrier.example;user=phone>") == "US-CA"
    assert RULES.place_of("sip:6175550123@10.0.0.1", region="US") == "US-MA"
    assert RULES.place_of("sip:030123456@pbx.example", region="DE") == "DE"
    assert RULES.rule_for("DE") == "EU" and RULES.rule_for("GB") == "default"
    assert RULES.rule_for("US-TX") == "US" and RULES.rule_for("US-WA") == "US-WA"


def test_a_declined_or_unanswered_consent_never_records() -> None:
    for number in (ONE_PARTY["US-NY"], ALL_PARTY["US-CA"]):
        needs = RULES.requirements("US", number, region="US")
        for consent in ("declined", "no_response"):
            why = needs.recording_allowed(notice_played=True, consent=consent, method="dtmf")
            assert why == f"consent {consent}"


def test_the_rules_version_travels_with_each_call() -> None:
    version = yaml.safe_load(BUNDLED_RULES.read_text())["version"]
    needs = RULES.requirements("US", ALL_PARTY["US-PA"], region="US")
    assert needs.as_dict() == {
        "rules_version": version,
        "places": ["US", "US-PA"],
        "rules": ["US", "US-PA"],
        "ai_notice_required": False,
        "recording": "all_party",
    }


def test_an_operators_rules_file_replaces_the_bundled_one(tmp_path: Path) -> None:
    data = yaml.safe_load(BUNDLED_RULES.read_text())
    data["version"] = "acme-2027-01"
    data["rules"]["US-NY"] = {"ai_notice": True, "recording": "explicit", "basis": "counsel"}
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data))
    settings = Settings(compliance={"rules_file": str(path)})
    needs = settings.compliance.rule_book().requirements("US", ONE_PARTY["US-NY"], region="US")
    assert needs.version == "acme-2027-01"
    assert needs.rules == ("US", "US-NY") and needs.recording is Recording.EXPLICIT


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("version: 1\nrules: {}\nus_states: {}\n", "must include 'default'"),
        ("[1, 2]", "not a rules file"),
        ("version: 1\n", "not a rules file"),
        (
            "version: 1\nus_states: {}\nrules:\n  default: {ai_notice: true, recording: maybe}\n"
            "  unknown: {ai_notice: true, recording: all_party}\n",
            "one_party, all_party, explicit",
        ),
        (
            "version: 1\nus_states: {}\nrules:\n  default: {ai_notice: yes please, "
            "recording: all_party}\n  unknown: {ai_notice: true, recording: all_party}\n",
            "ai_notice must be true or false",
        ),
        (
            "version: 1\nus_states: {}\nrules:\n  default: {ai_notice: true, recording: "
            "all_party, fine: 3}\n  unknown: {ai_notice: true, recording: all_party}\n",
            "unknown keys",
        ),
        ("version: [\n", "not YAML"),
    ],
)
def test_a_bad_rules_file_is_refused_at_start_saying_why(
    tmp_path: Path, text: str, error: str
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(RulesError, match=error):
        RuleBook.load(path)
    with pytest.raises(ValidationError, match=error):
        Settings(compliance={"rules_file": str(path)})
    with pytest.raises(RulesError, match=r"rules\.yaml"):
        RuleBook.load(tmp_path / "missing" / "rules.yaml")


def _plan(*, covers: frozenset[str], mode: ConsentMode) -> DisclosurePlan:
    return DisclosurePlan(
        name="ai",
        version=1,
        sha256="0" * 64,
        audio_path=None,
        policy=ConsentPolicy(mode=mode),
        covers=covers,
        recording_notice=Notice("rec", 1, "1" * 64, None, frozenset({"recording"})),
        rules=RULES,
    )


def test_the_recording_notice_plays_only_where_it_can_lead_to_a_recording() -> None:
    recorded = Line("main", ("100",), record_calls=True)
    not_recorded = Line("main", ("100",), record_calls=False)
    ai_only = _plan(covers=frozenset({"ai"}), mode=ConsentMode.IMPLIED)
    both = _plan(covers=frozenset({"ai", "recording"}), mode=ConsentMode.IMPLIED)
    keyed = _plan(covers=frozenset({"ai"}), mode=ConsentMode.DTMF)
    us = ai_only.requirements(recorded, ONE_PARTY["US-NY"])
    eu = ai_only.requirements(recorded, "+4930123456")
    assert ai_only.recording_notice_for(recorded, us) is not None
    assert ai_only.recording_notice_for(not_recorded, us) is None  # nothing to disclose
    assert both.recording_notice_for(recorded, us) is None  # the first said it already
    # An EU caller needs an explicit yes that an implied-consent line never asks for: the
    # notice would announce a recording that cannot happen.
    assert ai_only.recording_notice_for(recorded, eu) is None
    assert keyed.recording_notice_for(recorded, eu) is not None


def test_the_default_line_has_separate_ai_and_recording_notices() -> None:
    settings = Settings()
    [main] = [line for line in settings.lines if line.name == "main"]
    notices = {d.name: d for d in settings.disclosures}
    assert main.disclosure is not None and main.recording_notice is not None
    assert notices[main.disclosure].covers == ["ai"]
    assert notices[main.recording_notice].covers == ["recording"]
    assert main.place() == "US"
    assert settings.lines_config()[0].jurisdiction == "US"
