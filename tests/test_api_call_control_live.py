"""Call control over HTTP end to end: a real SIP call into a real media worker process, put on
hold and taken off it through the admin API, with the call's phase events as the evidence."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from admin.api.context import ApiContext
from admin.api.control_plane import ControlPlane
from escalation.commands import escalation_inbox_path
from telephony.delivery import WorkerInboxes
from telephony.events import CallEvent, CallEventKind
from tests.api_data import Api
from tests.support import PlatformConfig, Running, chirp_noise, dial, finish_dial, write_wav

pytest_plugins = ["tests.db_support", "tests.api_support"]
pytestmark = pytest.mark.sip


@pytest.fixture
def live_api(api: Api, worker: Running, worker_config: PlatformConfig) -> Iterator[Api]:
    run_dir = worker_config.tmp / "var" / "run"
    plane = ControlPlane(WorkerInboxes(1, run_dir), escalation_inbox_path(run_dir))
    before: ApiContext = api.app.state.context
    api.app.state.context = dataclasses.replace(before, control=plane)
    yield api
    api.app.state.context = before


def _phases(config: PlatformConfig, call_id: str) -> list[str]:
    return [
        str(e.data["phase"])
        for e in config.events()
        if e.kind is CallEventKind.PHASE and e.call_id == call_id
    ]


def test_hold_and_unhold_over_http(
    live_api: Api, client: httpx.Client, worker_config: PlatformConfig, tmp: Path
) -> None:
    uri = f"sip:100@127.0.0.1:{worker_config.worker_base_port}"
    played = write_wav(tmp / "sent.wav", chirp_noise(5.0))
    proc = dial(uri, tmp, play=played, hold=0.3, background=True)
    deadline = time.monotonic() + 10
    answered: list[CallEvent] = []
    while not answered and time.monotonic() < deadline:
        answered = [e for e in worker_config.events() if e.kind is CallEventKind.ANSWERED]
        time.sleep(0.05)
    assert answered, "the call was not answered"
    call_id = answered[-1].call_id
    admin = live_api.actors["admin"].bearer()
    held = client.post(f"/calls/{call_id}/hold", headers=admin)
    assert held.status_code == 200, held.text
    assert (held.json()["phase"], held.json()["agent"]) == ("queued", "detached")
    again = client.post(f"/calls/{call_id}/hold", headers=admin)
    assert again.status_code == 409, again.text  # on hold already: the phase says no
    back = client.post(f"/calls/{call_id}/unhold", headers=admin)
    assert back.status_code == 200 and back.json()["phase"] == "with_agent", back.text
    commands = [
        e.data
        for e in worker_config.events()
        if e.kind is CallEventKind.COMMAND and e.call_id == call_id
    ]
    assert [(c["command"], c["actor"]) for c in commands][-2:] == [
        ("hold", "user:admin"),
        ("unhold", "user:admin"),
    ]
    phases = _phases(worker_config, call_id)
    assert "queued" in phases and phases[-1] == "with_agent", phases
    assert phases.index("queued") < len(phases) - 1
    finish_dial(proc, tmp / "dial.json")
