"""What the API's routes share: the database sessions, the keys and a few knobs."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from admin.keyfile import Keys


@dataclass(frozen=True, slots=True)
class ApiContext:
    sessions: sessionmaker[Session]
    keys: Keys
    token_minutes: int = 60
    live_poll_s: float = 0.5  # how often /live looks for newly stored events
