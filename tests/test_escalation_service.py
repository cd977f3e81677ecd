"""Escalation end to end: real processes on loopback (a caller, Parley with its escalation
service, a registered supervisor phone). The caller presses 0 on the echo line; the service
puts the call on hold, queues it and rings the supervisor, or falls back to the agent, or
records the caller giving up.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from admin.api.app import create_app_from_settings
from admin.settings import Settings
from telephony.events import CallEvent, CallEventKind
from tests.support import (
    PARLEY,
    PlatformConfig,
    Running,
    answered_since,
    best_correlation,
    chirp_noise,
    dial,
    echo_match,
    escalation_steps,
    finish_dial,
    heard_in,
    phone_registered,
    read_wav,
    received_between,
    start_phone,
    start_platform,
    wait_for,
    write_wav,
)

pytestmark = pytest.mark.sip

PASSWORD = "alice-secret-1"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> PlatformConfig:
    return PlatformConfig(
        tmp_path_factory.mktemp("escalation"),
        capacity=4,
        sip={"phones": [{"name": "alice", "password": PASSWORD}]},
        lines=[
            {"name": "main", "numbers": ["100"], "agent": "echo"},
            # Nobody serves this queue: after 2 s the caller leaves a number to be called on.
            {"name": "callbacks", "numbers": ["101"], "agent": "echo", "queue": "callbacks"},
        ],
        extra={
            "queues": [
                {
                    "name": "callbacks",
                    "max_wait_s": 2,
                    "service_level_target_s": 1,
                    "fallback": "callback",
                },
                {
                    "name": "default",
                    "max_wait_s": 6,
                    "announce_interval_s": 1.5,
                    "service_level_target_s": 2,
                    "offer_timeout_s": 3,
                    "fallback": "ai",
                },
            ],
            "supervisors": [{"name": "alice", "phone": "alice"}],
        },
    )


@pytest.fixture(scope="module")
def platform(config: PlatformConfig) -> Iterator[Running]:
    running = start_platform(config, escalation=True)
    yield running
    assert running.stop(timeout=30) == 0, running.log()[-3000:]


def _steps(config: PlatformConfig, call_id: str) -> list[str]:
    return [str(e.data["event"]) for e in escalation_steps(config, call_id)]


def _of_call(config: PlatformConfig, call_id: str, kind: CallEventKind) -> list[CallEvent]:
    return [e for e in config.events() if e.call_id == call_id and e.kind is kind]


def test_dtmf_zero_reaches_the_supervisor_who_hears_the_summary(
    platform: Running, config: PlatformConfig, tmp: Path
) -> None:
    phone = start_phone(
        config, tmp, "alice", "--password", PASSWORD, "--answer-after", "0.3",
        "--hangup-after", "8", "--max", "30",
    )  # fmt: skip
    phone_registered(tmp)
    since = time.monotonic_ns()
    caller = dial(
        f"sip:100@127.0.0.1:{config.sip_port}", tmp, dtmf="0", dtmf_at=0.8, hold=12.0,
        background=True,
    )  # fmt: skip
    call_id = answered_since(config, since)
    wait_for(lambda: "connect" in _steps(config, call_id), "the supervisor connected", 15)
    assert phone.wait(30) == 0, (tmp / "phone.log").read_text()[-2000:]
    [heard_by_caller] = finish_dial(caller, tmp / "dial.json")

    # The warm-handoff summary: with the offer (for the API), and spoken into the supervisor's
    # ear, never the caller's.
    offer = next(e for e in escalation_steps(config, call_id) if e.data["event"] == "offer")
    summary: dict[str, Any] = offer.data["summary"]  # type: ignore[assignment]
    assert summary["reason"] == "dtmf_zero" and summary["queue"] == "default", summary
    assert summary["mood"] == "calm", summary
    # Synthesised while the phone rang (a second or two on a busy machine), then played.
    briefs = [
        e for e in _of_call(config, call_id, CallEventKind.COMMAND) if e.data["command"] == "brief"
    ]
    assert len(briefs) == 1, (tmp / "phone.log").read_text()[-2000:]
    [brief] = briefs
    spoken = read_wav(config.tmp / "var" / "speech" / f"{brief.data['speech']}.wav")
    assert len(spoken) > 3 * 16000  # reason, mood and the keypad's map take a while to say
    opening = spoken[:32000]
    # Piece by piece: a busy machine may slip a frame, which breaks one long correlation.
    assert echo_match(opening, read_wav(tmp / "phone.wav"))[0] > 0.7
    assert best_correlation(opening, read_wav(Path(heard_by_caller["recording"])))[0] < 0.3

    # The whole timeline in the admin API, as stored by the platform's own ingester.
    detail = _api_call(
        config,
        call_id,
        lambda d: (
            [e["state"] for e in d["escalations"]] == ["returned_to_ai"]
            and "call.supervisor" in {e["kind"] for e in d["events"]}
        ),
    )
    [escalation] = detail["escalations"]
    assert [t["event"] for t in escalation["transitions"]] == [
        "request", "enqueue", "offer", "accept", "connect", "hand_back",
    ]  # fmt: skip
    assert escalation["supervisor"] == "alice" and escalation["reason"] == "dtmf_zero"
    assert escalation["summary"] == summary["text"]
    kinds = [e["kind"] for e in detail["events"]]
    assert {"call.phase", "call.command", "call.escalation", "call.dtmf"} <= set(kinds), kinds


def _api_call(
    config: PlatformConfig, call_id: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """GET /calls/{call_id} from an API on the platform's database, once `done` holds."""
    made = subprocess.run(
        [*PARLEY, "users", "create", "boss", "--role", "admin"],
        env=config.env() | {"PARLEY_USER_PASSWORD": "boss-password-1"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert made.returncode == 0 or "exists already" in made.stderr, made.stderr
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PARLEY_CONFIG", str(config.write()))
        settings = Settings()
    with TestClient(create_app_from_settings(settings)) as client:
        login = client.post("/auth/token", data={"username": "boss", "password": "boss-password-1"})
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        detail: dict[str, Any] = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = client.get(f"/calls/{call_id}", headers=headers)
            if got.status_code == 200:
                detail = got.json()
                if done(detail):
                    return detail
            time.sleep(0.3)
    raise AssertionError(f"the call's timeline never completed in the API: {detail}")

    steps = escalation_steps(config, call_id)
    assert [e.data["event"] for e in steps][:5] == [
        "request",
        "enqueue",
        "offer",
        "accept",
        "connect",
    ]
    assert {e.data["reason"] for e in steps} == {"dtmf_zero"}
    assert steps[2].data["supervisor"] == "alice" and steps[2].data["queue"] == "default"
    assert steps[3].data["actor"] == "supervisor:alice"
    # The supervisor hung up during the briefing: the call went back to the agent.
    assert [e.data["to"] for e in steps][5:6] == ["returned_to_ai"], steps
    phases = [e.data["phase"] for e in _of_call(config, call_id, CallEventKind.PHASE)]
    assert "queued" in phases and phases[-1] == "with_agent", phases
    sup = [e.data["event"] for e in _of_call(config, call_id, CallEventKind.SUPERVISOR)]
    assert sup[:2] == ["ringing", "answered"], sup


def test_nobody_answers_and_the_agent_takes_the_caller_back(
    platform: Running, config: PlatformConfig, tmp: Path
) -> None:
    # Alice is in wrap-up after the first test, or not registered: nobody answers.
    caller_says = chirp_noise(11.0, seed=5)
    since = time.monotonic_ns()
    caller = dial(
        f"sip:100@127.0.0.1:{config.sip_port}", tmp, dtmf="0", dtmf_at=0.5, hold=0.5,
        play=write_wav(tmp / "caller.wav", caller_says), background=True,
    )  # fmt: skip
    call_id = answered_since(config, since)
    [heard] = finish_dial(caller, tmp / "dial.json", timeout=40)

    steps = escalation_steps(config, call_id)
    assert [e.data["event"] for e in steps][:2] == ["request", "enqueue"], steps
    assert steps[-1].data["event"] == "hand_back" and steps[-1].data["to"] == "returned_to_ai"
    # On hold, the caller heard where they stand in the queue.
    [announced, *_] = [
        e for e in _of_call(config, call_id, CallEventKind.COMMAND) if e.data.get("speech")
    ]
    announcement = read_wav(config.tmp / "var" / "speech" / f"{announced.data['speech']}.wav")
    recording = read_wav(Path(heard["recording"]))
    assert best_correlation(announcement[:16000], recording)[0] > 0.7
    assert steps[-1].data["actor"] == "system"
    phases = _of_call(config, call_id, CallEventKind.PHASE)
    assert [e.data["phase"] for e in phases][-2:] == ["queued", "with_agent"], phases
    back = phases[-1].t_mono_ns
    [ended] = _of_call(config, call_id, CallEventKind.ENDED)
    # The echo again, after the hold: what the caller says comes back.
    after = received_between(
        recording, heard["frame_times_ns"], back + 300_000_000, ended.t_mono_ns
    )
    assert len(after) > 50 * 320, len(after)
    assert heard_in(caller_says, after) > 0.8


def test_a_caller_who_hangs_up_in_the_queue_abandoned_it(
    platform: Running, config: PlatformConfig, tmp: Path
) -> None:
    since = time.monotonic_ns()
    dial(f"sip:100@127.0.0.1:{config.sip_port}", tmp, dtmf="0", dtmf_at=0.5, hold=2.0)
    call_id = answered_since(config, since)
    wait_for(lambda: "call_ended" in _steps(config, call_id), "the escalation ended with the call")
    steps = escalation_steps(config, call_id)
    assert [e.data["event"] for e in steps][:2] == ["request", "enqueue"]
    assert steps[-1].data["to"] == "abandoned", steps


def test_nobody_free_the_caller_leaves_a_callback_number_and_parley_says_goodbye(
    platform: Running, config: PlatformConfig, tmp: Path
) -> None:
    since = time.monotonic_ns()
    caller = dial(
        f"sip:101@127.0.0.1:{config.sip_port}", tmp, hold=20.0, max_s=40, background=True,
        options=("--keys", "0.5:0,5:5551234#"),
    )  # fmt: skip
    call_id = answered_since(config, since)
    finish_dial(caller, tmp / "dial.json", timeout=60)

    steps = escalation_steps(config, call_id)
    assert [e.data["event"] for e in steps] == ["request", "enqueue", "take_callback"], steps
    assert steps[1].data["queue"] == "callbacks"
    assert steps[-1].data["to"] == "callback" and steps[-1].data["actor"] == "caller"
    # Parley hung up after its goodbye; the caller would have stayed on for 20 s.
    [ended] = _of_call(config, call_id, CallEventKind.ENDED)
    assert (ended.t_mono_ns - since) / 1e9 < 15, ended.data
    # Stored by the platform, the number only as a mask (its keyed hash beside it).
    detail = _api_call(
        config, call_id, lambda d: [e["state"] for e in d["escalations"]] == ["callback"]
    )
    [escalation] = detail["escalations"]
    masked = escalation["callback_number"]
    assert masked and masked.endswith("34") and "5551234" not in masked, masked
