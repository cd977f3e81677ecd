"""A heartbeat file: a loop touches it as it turns; the supervisor reads its age.

For a process with no network port to probe (the ingester): a loop stuck inside a call that
never returns stops touching the file, and the supervisor restarts the process.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

TOUCH_EVERY_S = 1.0


class Heartbeat:
    """Touches `path` at most once a second; never raises (a full disk is not a hang)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last = 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last < TOUCH_EVERY_S:
            return
        self._last = now
        try:
            self.path.touch()
        except OSError:
            pass


def fresh(path: Path, *, max_age_s: float) -> bool:
    """Whether `path` was touched within the last `max_age_s` seconds."""
    try:
        return time.time() - os.stat(path).st_mtime <= max_age_s
    except OSError:
        return False
