"""A whole platform (`parley run`) on loopback for a benchmark, and its calls' events."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from telephony.events import CallEvent, CallEventKind, read_events
from telephony.sipprobe import wait_answering
from tests.support import wait_for

ROOT = Path(__file__).resolve().parent.parent
PARLEY = [sys.executable, "-m", "admin.cli"]


def env(config: Path) -> dict[str, str]:
    """The environment for a Parley process of this platform (no PARLEY_* from outside)."""
    found = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    found["PYTHONPATH"] = str(ROOT)
    found["PARLEY_CONFIG"] = str(config)
    return found


@contextlib.contextmanager
def platform(tmp: Path, base_port: int, **settings: Any) -> Iterator[Path]:
    """Runs `parley run` with its data in `tmp`, SIP at `base_port` (its worker at +2, RTP from
    +10) and `settings` on top (`sip` merged); yields the settings file once SIP answers."""
    sip = {
        "host": "127.0.0.1",
        "port": base_port,
        "call_capacity": 4,
        "worker_base_port": base_port + 2,
        "rtp_base_port": base_port + 10,
        "tls": {"enabled": False},
        **settings.pop("sip", {}),
    }
    config = tmp / "parley.yaml"
    config.write_text(
        json.dumps({"data_dir": str(tmp / "var"), "log_level": "WARNING", "sip": sip, **settings})
    )
    log = (tmp / "platform.log").open("wb")
    proc = subprocess.Popen([*PARLEY, "run"], env=env(config), stdout=log, stderr=log)
    try:
        wait_answering("127.0.0.1", base_port, timeout_s=60)
        wait_answering("127.0.0.1", base_port + 2, timeout_s=60)
        yield config
    finally:
        proc.terminate()
        proc.wait(30)


def events(tmp: Path) -> list[CallEvent]:
    """Every worker's call events so far, in time order."""
    found: list[CallEvent] = []
    for path in sorted((tmp / "var" / "events").glob("worker-*.jsonl")):
        found.extend(read_events(path))
    return sorted(found, key=lambda e: e.t_mono_ns)


def answered_since(tmp: Path, since_ns: int) -> CallEvent:
    """The last call answered after `since_ns` (monotonic), waited for."""
    return wait_for(
        lambda: [
            e for e in events(tmp) if e.kind is CallEventKind.ANSWERED and e.t_mono_ns > since_ns
        ],
        "the call answered",
        20.0,
    )[-1]


def supervisor_answered(tmp: Path, call_id: str) -> None:
    """Waits for the call's supervisor leg to answer."""
    wait_for(
        lambda: [
            e
            for e in events(tmp)
            if e.call_id == call_id
            and e.kind is CallEventKind.SUPERVISOR
            and e.data["event"] == "answered"
        ],
        "the supervisor answered",
        20.0,
    )
