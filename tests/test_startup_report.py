"""What `parley run` says while it starts, and when it says it is ready."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest

from admin.settings import Settings
from admin.startup_report import Progress, StartupReport, ready_line, waiting_for


def test_ready_only_when_edge_workers_and_a_needed_engine_answer() -> None:
    assert Progress(edge=True, workers_up=5, workers=5, engine=None).ready
    assert Progress(edge=True, workers_up=5, workers=5, engine=True).ready
    assert not Progress(edge=True, workers_up=5, workers=5, engine=False).ready
    assert not Progress(edge=True, workers_up=4, workers=5, engine=True).ready
    assert not Progress(edge=False, workers_up=5, workers=5, engine=None).ready


def test_the_progress_line_says_what_is_missing() -> None:
    assert (
        waiting_for(Progress(edge=False, workers_up=3, workers=5, engine=False))
        == "engine loading models; media workers 3/5 answering; SIP edge not answering yet"
    )
    assert waiting_for(Progress(edge=True, workers_up=5, workers=5, engine=False)) == (
        "engine loading models"
    )


def test_the_ready_line_offers_a_number_of_the_default_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PARLEY_CONFIG", raising=False)
    settings = Settings(
        lines=[
            {"name": "sales", "numbers": ["555"], "agent": "echo"},
            {"name": "main", "numbers": ["100"], "agent": "echo"},
        ],
        sip={"port": 5090},
    )
    line = ready_line(settings)
    assert line.startswith("Parley is ready: SIP on 0.0.0.0:5090")
    assert "Try: parley dial sip:100@127.0.0.1:5090" in line
    assert f"Dashboard: http://127.0.0.1:{settings.http_port}/ " in line


def test_the_report_repeats_progress_until_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PARLEY_CONFIG", raising=False)
    monkeypatch.setattr("admin.startup_report.POLL_S", 0.01)
    states = iter(
        [
            Progress(edge=False, workers_up=0, workers=1, engine=False),
            Progress(edge=False, workers_up=0, workers=1, engine=False),  # unchanged: not again
            Progress(edge=True, workers_up=1, workers=1, engine=False),
            Progress(edge=True, workers_up=1, workers=1, engine=True),
        ]
    )
    out = io.StringIO()
    settings = Settings(data_dir=tmp_path)
    report = StartupReport(settings, threading.Event(), out=out)
    monkeypatch.setattr(report, "check", lambda: next(states))
    report.run()
    assert out.getvalue().splitlines() == [
        "Parley is starting… (engine loading models; media workers 0/1 answering; "
        "SIP edge not answering yet)",
        "Parley is starting… (engine loading models)",
        ready_line(settings),
    ]


def test_not_ready_until_the_api_answers() -> None:
    # The ready line names the dashboard: it must answer by then.
    starting = Progress(edge=True, workers_up=5, workers=5, engine=None, api=False)
    assert not starting.ready
    assert waiting_for(starting) == "admin API starting"
