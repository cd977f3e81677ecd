"""The dashboard in a real browser (Debian chromium via Playwright) against a real platform:
`parley run` with the embedded engine, SIP callers from other processes, a supervisor's
registered SIP phone. Screenshots land in var/test-artifacts/dashboard."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect
from websockets.sync.client import connect

from telephony.events import CallEvent, CallEventKind, read_events
from tests.browser_support import ARTIFACTS, browser, log_in, microphone, new_page, screenshot
from tests.engine_harness import silence, speak
from tests.firefox_support import firefox
from tests.support import (
    PARLEY,
    EngineProcess,
    PlatformConfig,
    Running,
    agent_events,
    answered_since,
    chirp_noise,
    dial,
    echo_match,
    finish_dial,
    phone_registered,
    read_wav,
    start_phone,
    start_platform,
    wait_for,
    write_wav,
)

__all__ = ["browser", "microphone"]  # the fixtures
pytestmark = [pytest.mark.sip, pytest.mark.slow, pytest.mark.serial]

PHONE_PASSWORD = "alice-phone-secret-1"
PASSWORD = "dashboard-secret-1"
USERS = {"alice": "supervisor", "bob": "supervisor", "root": "admin", "audrey": "auditor"}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, engine: EngineProcess) -> PlatformConfig:
    return PlatformConfig(
        tmp_path_factory.mktemp("dashboard"),
        capacity=4,
        sip={"phones": [{"name": "alice", "password": PHONE_PASSWORD}]},
        lines=[
            {"name": "main", "numbers": ["100"], "agent": "embedded"},
            {"name": "help", "numbers": ["101"], "agent": "echo"},
            {"name": "sales", "numbers": ["300"], "agent": "echo", "queue": "sales"},
        ],
        extra={
            "engine": {"url": engine.url},
            "queues": [
                {"name": "default", "max_wait_s": 120, "offer_timeout_s": 15, "fallback": "ai"},
                {"name": "sales", "max_wait_s": 120, "fallback": "ai"},
            ],
            "supervisors": [
                {"name": "alice", "phone": "alice", "queues": ["default"]},
                {"name": "bob", "phone": "browser", "queues": ["sales"]},
            ],
        },
    )


@pytest.fixture(scope="module")
def platform(config: PlatformConfig) -> Iterator[Running]:
    running = start_platform(config, escalation=True)
    env = {**config.env(), "PARLEY_USER_PASSWORD": PASSWORD}
    for name, role in USERS.items():
        subprocess.run(
            [*PARLEY, "users", "create", name, "--role", role],
            env=env, cwd=config.tmp, check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    wait_for(lambda: _api_up(config), "the API answering", 30)
    yield running
    assert running.stop(timeout=30) == 0, running.log()[-3000:]


def _api_up(config: PlatformConfig) -> bool:
    try:
        return httpx.get(f"{_base(config)}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _base(config: PlatformConfig) -> str:
    return f"http://127.0.0.1:{config.http_port}"


@pytest.fixture
def page(browser: Browser, platform: Running, config: PlatformConfig) -> Iterator[Page]:
    opened = new_page(browser, _base(config))
    yield opened
    opened.close()


def _answered_at(config: PlatformConfig, call_id: str) -> float:
    [answered] = [
        e for e in config.events() if e.call_id == call_id and e.kind is CallEventKind.ANSWERED
    ]
    return answered.t_wall


def _bearer(page: Page) -> dict[str, str]:
    token = page.evaluate("sessionStorage.getItem('parley.token')")
    return {"Authorization": f"Bearer {token}"}


def test_a_call_appears_within_a_second_of_answer_and_its_transcript_grows_live(
    page: Page, config: PlatformConfig, tmp: Path
) -> None:
    log_in(page, "alice", PASSWORD)
    expect(page.locator("#who")).to_have_text("alice (supervisor)")
    since = time.monotonic_ns()
    question = speak("How much does shipping cost?")
    play = np.concatenate([silence(7000), question, silence(9000)]).astype(np.float64)
    caller = dial(
        f"sip:100@127.0.0.1:{config.sip_port}", tmp, play=write_wav(tmp / "ask.wav", play),
        hold=0.5, max_s=40, background=True,
    )  # fmt: skip
    call_id = answered_since(config, since)
    row = page.locator(f'tr[data-call="{call_id}"]')
    expect(row).to_be_visible()
    first_seen = page.evaluate(f"window.parley.firstSeen['{call_id}']")
    assert first_seen - _answered_at(config, call_id) < 1.0
    expect(row).to_contain_text("main")
    expect(row).to_contain_text("AI agent")
    screenshot(page, "board")

    row.get_by_role("link").click()
    transcript = page.locator(".transcript ol li.line")
    expect(transcript.first).to_be_visible(timeout=20_000)  # the greeting
    greeting_lines = transcript.count()
    caller_line = page.locator(".transcript li.line.caller")
    expect(caller_line.first).to_contain_text(re.compile("shipping", re.I), timeout=30_000)
    expect(page.locator(".transcript li.line.agent")).to_have_count(
        greeting_lines + 1, timeout=20_000
    )  # the answer, after the question: the same page, never reloaded
    expect(page.locator("#call-state")).to_have_text("AI agent")
    expect(page.locator(".timeline li").first).to_contain_text("call on line main")
    screenshot(page, "call-view")
    finish_dial(caller, tmp / "dial.json", timeout=60)
    expect(page.locator(".current-mode")).to_have_text("The call has ended.", timeout=10_000)


def test_an_escalation_is_accepted_taken_over_and_handed_back_from_the_page(
    page: Page, config: PlatformConfig, tmp: Path
) -> None:
    phone = start_phone(
        config, tmp, "alice", "--password", PHONE_PASSWORD, "--answer-after", "0.3",
        "--hangup-after", "40", "--max", "60",
    )  # fmt: skip
    phone_registered(tmp)
    log_in(page, "alice", PASSWORD)
    # Away: the call waits in the queue for alice to take it from the page.
    page.get_by_label("Presence").select_option("away")
    expect(page.locator("#toast")).to_contain_text("away")
    since = time.monotonic_ns()
    caller = dial(
        f"sip:101@127.0.0.1:{config.sip_port}", tmp, dtmf="0", dtmf_at=1.0, hold=30,
        max_s=45, background=True,
    )  # fmt: skip
    call_id = answered_since(config, since)
    page.get_by_role("link", name="Queue").click()
    waiting = page.locator(f'article.waiting[data-call="{call_id}"]')
    expect(waiting).to_contain_text("dtmf zero", timeout=10_000)
    expect(waiting).to_contain_text("Queued")
    screenshot(page, "queue")

    waiting.get_by_role("button", name="Accept").click()
    state = page.locator("#call-state")
    expect(state).to_contain_text("alice", timeout=15_000)  # her phone rang and answered
    page.get_by_role("button", name="Take over").click()
    expect(page.get_by_role("button", name="Take over")).to_have_attribute("aria-pressed", "true")
    expect(state).to_have_text("alice · takeover")
    screenshot(page, "takeover")

    page.get_by_label("Hand back to the AI").fill("refund agreed")
    page.get_by_role("button", name="Hand back").click()
    expect(state).to_have_text("AI agent", timeout=10_000)
    commands = [
        (e.data["command"], e.data["actor"])
        for e in config.events()
        if e.call_id == call_id and e.kind is CallEventKind.COMMAND
    ]
    assert ("set_mode", "user:alice") in commands
    assert ("reattach_agent", "user:alice") in commands  # the hand-back
    finish_dial(caller, tmp / "dial.json", timeout=60)
    phone.wait(60)


def test_role_limits_hold_in_the_page_and_in_the_api_behind_it(
    browser: Browser, page: Page, config: PlatformConfig, tmp: Path
) -> None:
    since = time.monotonic_ns()
    caller = dial(
        f"sip:300@127.0.0.1:{config.sip_port}", tmp, hold=25, max_s=40, background=True
    )  # the sales line: not one of alice's queues
    call_id = answered_since(config, since)
    api = httpx.Client(base_url=_base(config), timeout=10)

    # A supervisor watches a call of another queue but may not act on it.
    log_in(page, "alice", PASSWORD)
    page.goto(f"/#/call/{call_id}")
    expect(page.locator(".not-yours")).to_contain_text("queue sales, not one of yours")
    expect(page.get_by_role("button", name="Hold")).to_be_disabled()
    assert api.post(f"/calls/{call_id}/hold", headers=_bearer(page)).status_code == 403

    # An auditor sees the board and the call, and no controls at all.
    auditor = new_page(browser, _base(config))
    log_in(auditor, "audrey", PASSWORD)
    expect(auditor.locator(f'tr[data-call="{call_id}"]')).to_be_visible()
    expect(auditor.locator("#presence-box")).to_be_hidden()
    auditor.goto(f"/#/call/{call_id}")
    expect(auditor.locator("#call-state")).to_have_text("AI agent")
    expect(auditor.locator(".controls")).to_be_hidden()
    assert api.post(f"/calls/{call_id}/hangup", headers=_bearer(auditor)).status_code == 403
    auditor.close()

    # The admin may act on it: hold, then resume, from the page.
    admin = new_page(browser, _base(config))
    log_in(admin, "root", PASSWORD)
    admin.goto(f"/#/call/{call_id}")
    admin.get_by_role("button", name="Hold").click()
    expect(admin.locator("#call-state")).to_have_text("On hold")
    admin.get_by_role("button", name="Resume").click()
    expect(admin.locator("#call-state")).to_have_text("AI agent")
    admin.close()

    # A wrong password is refused with a message, and nothing else opens.
    page.get_by_role("button", name="Log out").click()
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not her password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-error")).not_to_be_empty()
    expect(page.locator("header.top")).to_be_hidden()
    finish_dial(caller, tmp / "dial.json", timeout=60)


def test_history_opens_a_past_call_with_its_audit_trail_and_the_charts_draw_it(
    browser: Browser, page: Page, config: PlatformConfig, tmp: Path
) -> None:
    since = time.monotonic_ns()
    caller = dial(f"sip:300@127.0.0.1:{config.sip_port}", tmp, hold=4, max_s=20, background=True)
    call_id = answered_since(config, since)
    log_in(page, "root", PASSWORD)
    api = httpx.Client(base_url=_base(config), timeout=10)
    assert api.post(f"/calls/{call_id}/hold", headers=_bearer(page)).status_code == 200
    assert api.post(f"/calls/{call_id}/unhold", headers=_bearer(page)).status_code == 200
    finish_dial(caller, tmp / "dial.json", timeout=40)
    wait_for(
        lambda: api.get(f"/calls/{call_id}", headers=_bearer(page)).json().get("ended_at"),
        "the call stored as ended",
        20,
    )

    auditor = new_page(browser, _base(config))
    log_in(auditor, "audrey", PASSWORD)
    auditor.get_by_role("link", name="History").click()
    auditor.get_by_label("Outcome").select_option("")
    row = auditor.locator(f'table.history tr[data-call="{call_id}"]')
    expect(row).to_contain_text("sales")
    screenshot(auditor, "history")
    row.get_by_role("link").click()
    trail = auditor.locator("section.audit li")
    expect(trail.filter(has_text="call.hold by user:root")).to_have_count(1)
    expect(trail.filter(has_text="call.unhold by user:root")).to_have_count(1)
    expect(auditor.locator("section[aria-label=Events] li").first).to_contain_text("call.started")
    screenshot(auditor, "past-call")

    auditor.get_by_role("link", name="Charts").click()
    calls = auditor.locator("#chart-calls")
    expect(calls.locator("svg rect:not([height='0'])").first).to_be_visible()
    label = calls.locator("svg").get_attribute("aria-label") or ""
    assert int(re.search(r"(\d+) calls in all", label).group(1)) >= 1, label  # type: ignore[union-attr]
    for chart in ("containment", "reasons", "latency", "models", "queues"):
        expect(auditor.locator(f"#chart-{chart} svg")).to_be_visible()
    screenshot(auditor, "charts")
    auditor.close()


def _token(config: PlatformConfig, username: str) -> str:
    response = httpx.post(
        f"{_base(config)}/auth/token",
        data={"username": username, "password": PASSWORD},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_a_browser_leg_over_the_audio_socket_hears_the_caller_and_is_heard_on_takeover(
    config: PlatformConfig, platform: Running, tmp: Path
) -> None:
    """The audio socket the page uses, driven without a browser: what it sends reaches the
    caller once the supervisor takes over, and what the caller says reaches it."""
    caller_says = chirp_noise(20.0, seed=11)
    supervisor_says = chirp_noise(8.0, seed=12)
    since = time.monotonic_ns()
    caller = dial(
        f"sip:300@127.0.0.1:{config.sip_port}", tmp, play=write_wav(tmp / "says.wav", caller_says),
        hold=1, max_s=40, background=True,
    )  # fmt: skip
    call_id = answered_since(config, since)
    token = _token(config, "root")
    headers = {"Authorization": f"Bearer {token}"}
    api = httpx.Client(base_url=_base(config), timeout=10)
    url = f"ws://127.0.0.1:{config.http_port}/calls/{call_id}/audio"

    # Nothing rings for root yet: the socket says so and closes.
    with connect(url, open_timeout=5) as ws:
        ws.send(json.dumps({"type": "hello", "token": token}))
        refused = json.loads(ws.recv(timeout=10))
        assert refused["type"] == "error" and refused["status"] == 409, refused
        assert "no browser leg is ringing for root" in refused["message"]

    joined = api.post(f"/calls/{call_id}/supervise", json={"phone": "browser"}, headers=headers)
    assert joined.status_code == 200, joined.text
    heard = bytearray()
    with connect(url, open_timeout=5) as ws:
        ws.send(json.dumps({"type": "hello", "token": token}))
        assert json.loads(ws.recv(timeout=10)) == {
            "type": "joined", "rate": 16000, "frame_bytes": 640,
        }  # fmt: skip
        wait_for(
            lambda: (
                {"event": "answered", "browser": "root"}
                in [e.data for e in _supervisor_events(config, call_id)]
            ),
            "the browser leg answered",
            10,
        )
        # What a page may not send gets a clear error, and the leg goes on.
        ws.send(b"\x01\x02\x03")  # half a sample
        ws.send(bytes(640 * 17))  # over 320 ms in one message
        ws.send("not json")
        ws.send(json.dumps({"type": "dance"}))
        errors: list[str] = []
        while len(errors) < 4:
            message = ws.recv(timeout=5)
            if isinstance(message, str):
                errors.append(json.loads(message)["message"])
        assert "whole 16-bit samples" in errors[0] and "whole 16-bit samples" in errors[1]
        assert "JSON object" in errors[2] and "binary messages" in errors[3], errors
        mode = api.post(f"/calls/{call_id}/mode", json={"mode": "takeover"}, headers=headers)
        assert mode.status_code == 200, mode.text
        pcm = supervisor_says.astype("<i2").tobytes()
        start = time.monotonic()
        for index in range(0, len(pcm), 640):
            ws.send(pcm[index : index + 640])
            while True:  # what the supervisor hears meanwhile, without blocking the pace
                try:
                    message = ws.recv(timeout=0)
                except TimeoutError:
                    break
                if isinstance(message, bytes):
                    heard += message
            time.sleep(max(0.0, start + (index // 640 + 1) * 0.02 - time.monotonic()))
        ws.send(json.dumps({"type": "bye"}))
    # Closing the socket hangs up the leg (by the supervisor), and the AI has the call again.
    [ended] = wait_for(
        lambda: [e for e in _supervisor_events(config, call_id) if e.data["event"] == "ended"],
        "the browser leg ended",
        10,
    )
    assert ended.data == {"event": "ended", "status": 200, "by": "supervisor", "browser": "root"}
    wait_for(
        lambda: [
            e
            for e in config.events()
            if e.call_id == call_id
            and e.kind is CallEventKind.PHASE
            and e.t_mono_ns > ended.t_mono_ns
            and e.data["phase"] == "with_agent"
            and e.data["supervisor"] is False
        ],
        "the call back with the agent",
        10,
    )
    [result] = finish_dial(caller, tmp / "dial.json", timeout=60)

    received = np.frombuffer(bytes(heard), dtype="<i2").astype(np.float64)
    assert len(received) > 6 * 16000  # 20 ms frames, all the while
    score, _ = echo_match(caller_says[16000 * 6 : 16000 * 10], received)
    assert score > 0.6, score  # the page hears the caller
    recording = read_wav(Path(result["recording"]))
    score, _ = echo_match(supervisor_says[16000 : 16000 * 7], recording)
    assert score > 0.6, score  # the caller hears the page on takeover


def _supervisor_events(config: PlatformConfig, call_id: str) -> list[CallEvent]:
    return [
        e for e in config.events() if e.call_id == call_id and e.kind is CallEventKind.SUPERVISOR
    ]


def test_a_call_is_taken_over_from_the_browser_and_handed_back(
    page: Page, config: PlatformConfig, microphone: Path, tmp: Path
) -> None:
    """The browser as the supervisor's phone: its fake microphone reaches the caller on
    takeover, the caller's voice reaches the page, and after the hand-back the AI speaks."""
    question = speak("What are your opening hours?")
    gap = silence(3000)
    caller_says = np.concatenate([silence(5000), *[np.concatenate([question, gap])] * 5])
    since = time.monotonic_ns()
    caller = dial(
        f"sip:100@127.0.0.1:{config.sip_port}", tmp,
        play=write_wav(tmp / "says.wav", caller_says.astype(np.float64)),
        hold=6, max_s=60, background=True,
    )  # fmt: skip
    call_id = answered_since(config, since)
    log_in(page, "root", PASSWORD)
    page.goto(f"/#/call/{call_id}")
    page.get_by_label("Join with").select_option("browser")
    page.get_by_role("button", name="Join", exact=True).click()
    expect(page.locator(".browser-leg .leg-state")).to_have_text(
        "This browser is on the call.", timeout=15_000
    )
    state = page.locator("#call-state")
    expect(state).to_have_text("root · joined", timeout=10_000)
    page.get_by_role("button", name="Take over").click()
    expect(state).to_have_text("root · takeover")
    wait_for(
        lambda: page.evaluate("window.parley.audio.level") > 0.01, "the microphone's level", 10
    )
    screenshot(page, "browser-takeover")
    time.sleep(6)  # the supervisor talks (the fake microphone); the caller asks on
    heard = np.array(page.evaluate("window.parley.heard(10)"), dtype=np.float64)
    frames = page.evaluate("[window.parley.audio.framesIn, window.parley.audio.framesOut]")
    assert frames[0] > 300 and frames[1] > 300, frames  # 20 ms frames both ways for > 6 s

    handed_back_ns = time.monotonic_ns()
    page.get_by_label("Hand back to the AI").fill("opening hours given")
    page.get_by_role("button", name="Hand back").click()
    expect(state).to_have_text("AI agent", timeout=10_000)
    wait_for(
        lambda: agent_events(config, call_id, "agent_utterance_started", handed_back_ns),
        "the AI speaking again after the hand-back",
        20,
    )
    # Handing back ended the browser's leg (as it hangs up a phone).
    expect(page.locator("#on-call")).to_be_hidden()
    assert page.evaluate("window.parley.audio.state") == "ended"

    # Joined again, the supervisor leaves from the header: the call stays with the AI.
    page.get_by_role("button", name="Join", exact=True).click()
    expect(page.locator("#on-call")).to_be_visible(timeout=15_000)
    page.locator("#leave-browser").click()
    expect(page.locator("#on-call")).to_be_hidden()
    wait_for(
        lambda: [
            e
            for e in _supervisor_events(config, call_id)
            if e.data == {"event": "ended", "status": 200, "by": "supervisor", "browser": "root"}
        ],
        "the browser's leg ended by the supervisor",
        10,
    )
    expect(state).to_have_text("AI agent")
    [result] = finish_dial(caller, tmp / "dial.json", timeout=90)

    # The page heard the caller's question…
    score, _ = echo_match(question, heard)
    assert score > 0.5, score
    # …and the caller heard the page's microphone while the supervisor had the call.
    mic = read_wav(microphone)
    score, _ = echo_match(mic[: 2 * 16000], read_wav(Path(result["recording"])))
    assert score > 0.5, score


def test_the_dashboard_and_its_browser_leg_work_in_firefox(
    config: PlatformConfig, platform: Running, tmp: Path
) -> None:
    """Firefox (Debian's firefox-esr over Marionette): log in, see a call on the board, open
    it, join it from the browser and take it over; the caller hears Firefox's fake
    microphone (a tone) and the page hears the caller."""
    caller_says = chirp_noise(20.0, seed=5) * 0.5
    since = time.monotonic_ns()
    caller = dial(
        f"sip:101@127.0.0.1:{config.sip_port}", tmp,
        play=write_wav(tmp / "says.wav", np.concatenate([silence(3000), caller_says])),
        hold=1, max_s=40, background=True,
    )  # fmt: skip
    call_id = answered_since(config, since)
    with firefox(tmp / "firefox") as ff:
        ff.navigate(_base(config) + "/")
        ff.wait("return document.querySelector('#login-form') !== null", "the login form")
        ff.script(
            """const form = document.querySelector('#login-form');
            form.username.value = arguments[0]; form.password.value = arguments[1];
            form.requestSubmit();""",
            "root", PASSWORD,
        )  # fmt: skip
        ff.wait("return document.querySelector('#connection').dataset.level === 'up'", "login")
        row = f"tr[data-call='{call_id}']"
        ff.wait(f'return document.querySelector("{row}") !== null', "the call on the board", 10)
        ff.navigate(f"{_base(config)}/#/call/{call_id}")
        ff.wait("return document.querySelector('#call-state') !== null", "the call view")
        ff.script(
            """document.querySelector('#join-phone').value = 'browser';
            document.querySelector('[data-action=listen]').click();"""
        )
        ff.wait(
            "return window.parley.audio.state === 'on'",
            "the browser leg in Firefox",
            20,
            explain="return [window.parley.audio, document.querySelector('#toast').textContent]",
        )
        ff.script("document.querySelector('[data-mode=takeover]').click();")
        ff.wait(
            "return document.querySelector('#call-state').textContent === 'root · takeover'",
            "takeover",
        )
        took_over_ns = time.monotonic_ns()
        time.sleep(5)
        audio = ff.script(
            "const a = window.parley.audio;return [a.framesIn, a.framesOut, a.level, a.micRefused];"
        )
        heard = np.array(ff.script("return window.parley.heard(4);"), dtype=np.float64)
        screenshot_path = ff.screenshot(ARTIFACTS / "firefox-call.png")
        ff.script("document.querySelector('#leave-browser').click();")
        ff.wait("return window.parley.audio.state === 'ended'", "leaving in Firefox")
    [result] = finish_dial(caller, tmp / "dial.json", timeout=60)

    frames_in, frames_out, level, refused = audio
    assert refused is None and level > 0.001, audio
    assert frames_in > 200 and frames_out > 200, audio  # 20 ms frames both ways
    # The page's last 4 s lie somewhere in the caller's 20 s, wherever a slow Firefox start put
    # them: each piece of what it heard is looked for in all the caller said.
    heard = np.trim_zeros(heard)
    assert len(heard) > 16000, len(heard)
    score, _ = echo_match(heard, caller_says)
    assert score > 0.5, score  # the page heard the caller
    recording = read_wav(Path(result["recording"]))
    times = np.array(result["frame_times_ns"], dtype=np.int64)
    during = recording[: len(times) * 320].reshape(-1, 320)[
        (times > took_over_ns + 1_000_000_000) & (times < took_over_ns + 4_000_000_000)
    ]
    assert len(during) > 100
    spectrum = np.abs(np.fft.rfft(during.reshape(-1)))
    peak_hz = float(np.argmax(spectrum[1:]) + 1) * 16000 / len(during.reshape(-1))
    assert np.sqrt(np.mean(during**2)) > 300, "the caller heard no tone from Firefox"
    assert 900 < peak_hz < 1100, peak_hz  # Firefox's fake microphone plays 1 kHz
    assert screenshot_path.stat().st_size > 10_000


def test_a_supervisor_whose_phone_is_the_browser_answers_an_escalation_in_the_page(
    page: Page, config: PlatformConfig, tmp: Path
) -> None:
    """bob's phone is his dashboard tab: a caller who presses 0 on his queue's line rings it
    (a banner on any view), he answers there, takes over and hands back."""
    log_in(page, "bob", PASSWORD)
    since = time.monotonic_ns()
    caller = dial(
        f"sip:300@127.0.0.1:{config.sip_port}", tmp, dtmf="0", dtmf_at=1.0,
        play=write_wav(tmp / "says.wav", chirp_noise(30.0, seed=9) * 0.3),
        hold=1, max_s=45, background=True,
    )  # fmt: skip
    call_id = answered_since(config, since)
    ringing = page.locator("#ringing")
    expect(ringing).to_contain_text("dtmf zero", timeout=15_000)
    expect(ringing).to_contain_text("sales")
    screenshot(page, "ringing-browser")
    ringing.get_by_role("button", name="Answer").click()
    expect(page.locator("#on-call")).to_be_visible(timeout=15_000)
    expect(ringing).to_be_hidden()
    state = page.locator("#call-state")
    expect(state).to_have_text(re.compile("^bob · "), timeout=10_000)
    page.get_by_role("button", name="Take over").click()
    expect(state).to_have_text("bob · takeover")
    time.sleep(3)
    frames = page.evaluate("[window.parley.audio.framesIn, window.parley.audio.framesOut]")
    assert frames[0] > 100 and frames[1] > 100, frames
    page.get_by_role("button", name="Hand back").click()
    expect(state).to_have_text("AI agent", timeout=10_000)
    expect(page.locator("#on-call")).to_be_hidden()
    finish_dial(caller, tmp / "dial.json", timeout=60)
    supervisor = [e.data for e in _supervisor_events(config, call_id)]
    assert {"event": "answered", "browser": "bob"} in supervisor, supervisor
    steps = [
        e.data["event"]
        for path in sorted((config.tmp / "var" / "events").glob("escalation*.jsonl"))
        for e in read_events(path)
        if e.call_id == call_id
    ]
    assert "offer" in steps and "connect" in steps, steps  # the escalation service's own
