"""A real browser for the dashboard's tests: Debian's chromium, driven by Playwright.

Playwright's own browsers are never downloaded; `executable_path` names the system's. The
fake media flags give the page a microphone that plays a WAV file and accept its use, so the
browser audio leg can be tested without a person.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support import ROOT, chirp_noise, write_wav

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "var" / "test-artifacts" / "dashboard"  # screenshots, to look at


def chromium_path() -> str:
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if found is None:
        raise AssertionError(
            "Debian's chromium is missing: 'make deps' installs it (apt-get install chromium)"
        )
    return found


@pytest.fixture(scope="module")
def microphone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the browser's fake microphone says, over and over (a 16 kHz WAV)."""
    path = tmp_path_factory.mktemp("microphone") / "mic.wav"
    write_wav(path, chirp_noise(4.0))
    return path


@pytest.fixture(scope="module")
def browser(microphone: Path) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path(),
            args=[
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={microphone}",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        try:
            yield launched
        finally:
            launched.close()


def new_page(browser: Browser, base_url: str) -> Page:
    page = browser.new_page(viewport={"width": 1366, "height": 820}, base_url=base_url)
    page.set_default_timeout(15_000)
    return page


def log_in(page: Page, username: str, password: str) -> None:
    page.goto("/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector("#connection[data-level=up]")


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
