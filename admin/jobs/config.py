"""The `jobs` section of Parley's settings: schedules, retention, redaction policy, exports.

Imported by `admin.settings`, so it imports nothing heavy (no Celery).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.pii import PiiKind

_CRON_FIELD = re.compile(r"[0-9*/,\-]+")


class LineJobPolicy(BaseModel):
    """What the jobs do with one line's calls; unset fields take the `jobs` defaults."""

    model_config = ConfigDict(extra="forbid")  # a misspelt policy must not pass unnoticed

    retention_days: int | None = Field(
        None, ge=1, description="delete this line's calls this many days after they started"
    )
    keep_forever: bool = Field(False, description="never purge this line's calls")
    recordings_days: int | None = Field(
        None, ge=1, description="delete this line's recordings (files too) sooner than its calls"
    )
    transcripts_days: int | None = Field(
        None, ge=1, description="delete this line's transcripts sooner than its calls"
    )
    events_days: int | None = Field(
        None, ge=1, description="delete this line's call events sooner than its calls"
    )
    metrics_days: int | None = Field(
        None, ge=1, description="delete this line's call and turn metrics sooner than its calls"
    )
    redact: list[PiiKind] | None = Field(
        None, description="what to redact in this line's transcripts; [] redacts nothing"
    )


class JobsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="parley run starts a jobs worker")
    queue: str = Field("parley", min_length=1, description="the Celery queue the jobs use")
    concurrency: int = Field(1, ge=1, le=32, description="jobs run at once by one worker")
    beat: bool = Field(
        True, description="the worker also runs the schedule (only one worker may do this)"
    )
    purge_schedule: str = Field(
        "30 3 * * *", description="when the retention purge runs: crontab fields, UTC"
    )
    purge_batch: int = Field(500, ge=1, le=5000, description="calls purged per transaction")
    heal_interval_s: float = Field(
        300.0,
        ge=5,
        description="how often the schedule rolls up ended calls still without metrics "
        "(their post-call job was lost)",
    )
    retention_days: int = Field(365, ge=1, description="default retention of a call, in days")
    export_retention_days: int = Field(
        30, ge=1, description="delete export files this many days after they were written"
    )
    redact: list[PiiKind] = Field(
        default_factory=lambda: list(PiiKind), description="default redaction policy"
    )
    lines: dict[str, LineJobPolicy] = Field(
        default_factory=dict, description="per-line retention and redaction, by line name"
    )
    export_dir: Path | None = Field(None, description="where exports go; default data_dir/exports")
    embedded_dir: Path | None = Field(
        None, description="the no-server broker's folders; default data_dir/jobs"
    )
    max_retries: int = Field(5, ge=0, description="retries of a job after a transient error")
    retry_backoff_s: float = Field(2.0, gt=0, description="first retry delay; doubles each time")
    retry_backoff_max_s: float = Field(300.0, gt=0)

    @field_validator("purge_schedule")
    @classmethod
    def _crontab(cls, value: str) -> str:
        fields = value.split()
        if len(fields) != 5 or not all(_CRON_FIELD.fullmatch(field) for field in fields):
            raise ValueError(
                f"{value!r} is not a crontab schedule: give five fields, "
                "minute hour day-of-month month day-of-week (e.g. '30 3 * * *')"
            )
        return value

    def part_retention_for(self, line: str | None, part: str) -> int | None:
        """Days one part of a call (recordings, transcripts, events, metrics) is kept; None
        when it lives as long as the call (or the call forever). Never longer than the call."""
        call_days = self.retention_for(line)
        policy = self.lines.get(line) if line is not None else None
        days: int | None = getattr(policy, f"{part}_days") if policy is not None else None
        if days is None or (call_days is not None and days >= call_days):
            return None
        return days

    def retention_for(self, line: str | None) -> int | None:
        """Days a call of `line` is kept, or None when its calls are kept forever."""
        policy = self.lines.get(line) if line is not None else None
        if policy is None:
            return self.retention_days
        if policy.keep_forever:
            return None
        return policy.retention_days or self.retention_days

    def redaction_for(self, line: str | None) -> frozenset[PiiKind]:
        policy = self.lines.get(line) if line is not None else None
        if policy is None or policy.redact is None:
            return frozenset(self.redact)
        return frozenset(policy.redact)
