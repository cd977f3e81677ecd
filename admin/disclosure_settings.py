"""The settings of disclosures and of a line's consent rule (part of `admin.settings`).

Imported by `admin.settings`, so it imports nothing heavy.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from telephony.consent import ConsentMode, ConsentPolicy, NextStep

Covered = Literal["ai", "recording"]


class DisclosureSettings(BaseModel):
    """A disclosure declared in the settings file; `parley run` keeps the database in step
    (a new version when the text or jurisdiction changes) and renders its audio."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    text: str = Field(min_length=1, max_length=4000, description="exactly what callers hear")
    jurisdiction: str = Field(min_length=1, max_length=32, examples=["US-CA", "EU"])
    covers: list[Covered] = Field(
        default_factory=lambda: list[Covered](["ai"]),
        min_length=1,
        description="what the text discloses: ai (callers talk with an automated system), "
        "recording (the call may be recorded); a call is recorded only where a played notice "
        "covers recording, if the caller's place requires one",
    )


class ConsentSettings(BaseModel):
    """How a line takes the caller's consent after its disclosure."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["implied", "dtmf", "spoken"] = Field(
        "implied",
        description="implied: staying on the line is consent; dtmf: press a key; spoken: say "
        "yes or no (heard by the engine's speech recognition), or press a key",
    )
    timeout_s: float = Field(
        8.0, gt=0, le=60, description="dtmf, spoken: wait this long for an answer"
    )
    accept_digit: str = Field("1", pattern=r"^[0-9*#]$")
    decline_digit: str = Field("2", pattern=r"^[0-9*#]$")
    on_decline: Literal["hangup", "transfer", "agent"] = Field(
        "hangup",
        description="hangup: a polite goodbye; transfer: to a person (transfer_to); agent: on "
        "to the agent, never recorded, its words kept or not as `transcripts` says",
    )
    on_no_response: Literal["proceed", "hangup", "transfer"] = Field(
        "hangup", description="dtmf: no key in time (proceed: on to the agent, no consent)"
    )
    transfer_to: str | None = Field(None, description="SIP URI for on_decline/on_no_response")
    barge_in: bool = Field(
        False,
        description="the caller's speech (heard where the engine listens: spoken consent) or a "
        "key cuts a notice short, recorded as such; off: every notice plays in full",
    )
    transcripts: Literal["keep", "drop"] = Field(
        "drop",
        description="a call that goes on without consent (on_decline: agent, on_no_response: "
        "proceed): keep its transcript (redacted), or store none of its words",
    )
    goodbye: str = Field(
        "Thank you for calling. Goodbye.",
        min_length=1,
        max_length=500,
        description="said before hanging up on a caller who declined or did not answer",
    )

    @model_validator(mode="after")
    def _rule_is_whole(self) -> ConsentSettings:
        self.policy()  # raises on equal digits or a transfer with nowhere to go
        return self

    def policy(self) -> ConsentPolicy:
        no_response, decline = self.on_no_response, self.on_decline
        return ConsentPolicy(
            mode=ConsentMode(self.method),
            timeout_s=self.timeout_s,
            accept_digit=self.accept_digit,
            decline_digit=self.decline_digit,
            on_decline=NextStep.BRIDGE if decline == "agent" else NextStep(decline),
            on_no_response=NextStep.BRIDGE if no_response == "proceed" else NextStep(no_response),
            transfer_to=self.transfer_to,
            keep_words=self.transcripts == "keep",
            barge_in=self.barge_in,
        )
