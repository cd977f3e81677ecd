"""What the API's routes share: the database sessions, the keys, the metrics and a few knobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from admin.api.control_plane import ControlPlane
from admin.api.metrics_registry import process_registry
from admin.erasure import Files
from admin.keyfile import Keys
from telephony.fanout import RedisChannel
from telephony.recording import RecordingStore


@dataclass(frozen=True, slots=True)
class ApiContext:
    sessions: sessionmaker[Session]
    keys: Keys
    token_minutes: int = 60
    live_poll_s: float = 0.5  # how often /live looks for newly stored events
    # What GET /metrics serves; by default this process's own figures only.
    metrics: CollectorRegistry = field(default_factory=process_registry)
    # Where call and escalation commands go; None: the API commands nothing (503).
    control: ControlPlane | None = None
    # Where the dashboard's live board follows the calls (telephony.fanout.subscribe: the run
    # directory or Redis); None: no board in this process (/board answers 1013).
    live_source: Path | RedisChannel | None = None
    # Where the audit chain's signed checkpoints are (admin/audit_checkpoint.py); None: the
    # chain is verified on its own, and a chain cut short from the end goes unnoticed.
    checkpoint_file: Path | None = None
    # Where recordings are, and their key; None: GET /calls/{id}/recording answers 404.
    recordings: RecordingStore | None = None
    # The files erasure removes from (recordings, quarantine, exports); None: no erasure here.
    data_files: Files | None = None
