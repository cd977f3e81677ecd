"""The settings of disclosures and of a line's consent rule (part of `admin.settings`).

Imported by `admin.settings`, so it imports nothing heavy.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from telephony.consent import ConsentMode, ConsentPolicy, NextStep


class DisclosureSettings(BaseModel):
    """A disclosure declared in the settings file; `parley run` keeps the database in step
    (a new version when the text or jurisdiction changes) and renders its audio."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    text: str = Field(min_length=1, max_length=4000, description="exactly what callers hear")
    jurisdiction: str = Field(min_length=1, max_length=32, examples=["US-CA", "EU"])


class ConsentSettings(BaseModel):
    """How a line takes the caller's consent after its disclosure."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["implied", "dtmf"] = Field(
        "implied", description="implied: staying on the line is consent; dtmf: press a key"
    )
    timeout_s: float = Field(8.0, gt=0, le=60, description="dtmf: wait this long for a key")
    accept_digit: str = Field("1", pattern=r"^[0-9*#]$")
    decline_digit: str = Field("2", pattern=r"^[0-9*#]$")
    on_decline: Literal["hangup", "transfer"] = "hangup"
    on_no_response: Literal["proceed", "hangup", "transfer"] = Field(
        "hangup", description="dtmf: no key in time (proceed: on to the agent, no consent)"
    )
    transfer_to: str | None = Field(None, description="SIP URI for on_decline/on_no_response")
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
        no_response = self.on_no_response
        return ConsentPolicy(
            mode=ConsentMode(self.method),
            timeout_s=self.timeout_s,
            accept_digit=self.accept_digit,
            decline_digit=self.decline_digit,
            on_decline=NextStep(self.on_decline),
            on_no_response=NextStep.BRIDGE if no_response == "proceed" else NextStep(no_response),
            transfer_to=self.transfer_to,
        )
