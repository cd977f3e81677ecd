"""Firefox for the dashboard's tests: Debian's firefox-esr, headless, driven over Marionette.

Marionette is Firefox's own remote protocol (`--marionette`): length-prefixed JSON on a TCP
port, `[0, id, command, params]` out and `[1, id, error, result]` back, with the WebDriver
commands (`WebDriver:NewSession`, `WebDriver:Navigate`, `WebDriver:ExecuteScript`…). Nothing is
downloaded: no geckodriver, no Playwright build of Firefox. The profile's preferences give the
page a fake microphone (a tone) and let it start audio without a click; a PulseAudio server
with a null sink is its sound card (Firefox's audio does not run without one, unlike
Chromium's headless mode).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support import free_port_block

FIREFOX = ("firefox-esr", "firefox")

PREFERENCES = {
    "marionette.port": 0,  # set per run
    "media.navigator.streams.fake": True,  # a fake microphone (a tone) and camera
    "media.navigator.permission.disabled": True,  # no permission prompt
    "media.autoplay.default": 0,  # audio may start without a click
    "media.autoplay.block-webaudio": False,
    "browser.shell.checkDefaultBrowser": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "app.update.disabledForTesting": True,
    # cubeb in the content process rather than behind AudioIPC: with AudioIPC, Firefox 153's
    # PulseAudio backend deadlocked now and then as the page opened its speaker and microphone
    # together (the parent's AudioIPC server thread waiting for PulseAudio's mainloop lock, the
    # mainloop thread waiting in an AudioIPC callback; the page's main thread then never
    # answered Marionette again).
    "media.cubeb.sandbox": False,
}


def pulseaudio_path() -> str:
    found = shutil.which("pulseaudio")
    if found is None:
        raise AssertionError(
            "PulseAudio is missing: 'make deps' installs it (apt-get install pulseaudio)"
        )
    return found


@contextlib.contextmanager
def sound_card(folder: Path) -> Iterator[str]:
    """A PulseAudio server of our own whose only sink plays to nowhere, in real time; yields
    its address for PULSE_SERVER."""
    folder.mkdir(parents=True, exist_ok=True)
    sock = folder / "pulse.sock"
    env = {**os.environ, "HOME": str(folder), "PULSE_RUNTIME_PATH": str(folder / "run")}
    log = (folder / "pulseaudio.log").open("wb")
    proc = subprocess.Popen(
        [pulseaudio_path(), "--daemonize=no", "--exit-idle-time=-1", "-n", "--disallow-exit",
         "--load=module-null-sink sink_name=parley_null",
         f"--load=module-native-protocol-unix auth-anonymous=1 socket={sock}"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"PulseAudio did not start:\n{(folder / 'pulseaudio.log').read_text()}"
                )
            time.sleep(0.1)
        yield f"unix:{sock}"
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def firefox_path() -> str:
    for name in FIREFOX:
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError(
        "Firefox is missing: 'make deps' installs it (apt-get install firefox-esr)"
    )


class MarionetteError(AssertionError):
    pass


class Firefox:
    """One headless Firefox with one session."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._file = sock.makefile("rb")
        self._next = 1
        self._read()  # the server's hello: {"applicationType": "gecko", ...}
        self.command("WebDriver:NewSession", {"capabilities": {"alwaysMatch": {}}})

    def command(self, name: str, params: dict[str, Any] | None = None) -> Any:
        message_id = self._next
        self._next += 1
        body = json.dumps([0, message_id, name, params or {}]).encode()
        self._sock.sendall(str(len(body)).encode() + b":" + body)
        while True:
            reply = self._read()
            if isinstance(reply, list) and reply[0] == 1 and reply[1] == message_id:
                break
        error, result = reply[2], reply[3]
        if error:
            raise MarionetteError(f"{name}: {error.get('error')}: {error.get('message')}")
        return result.get("value") if isinstance(result, dict) else result

    def _read(self) -> Any:
        length = b""
        while not length.endswith(b":"):
            byte = self._file.read(1)
            if not byte:
                raise MarionetteError("Firefox closed the Marionette connection")
            length += byte
        return json.loads(self._file.read(int(length[:-1])))

    def navigate(self, url: str) -> None:
        self.command("WebDriver:Navigate", {"url": url})

    def script(self, body: str, *args: Any) -> Any:
        """Runs `body` (a function body: `return …`) in the page, with `arguments`."""
        return self.command("WebDriver:ExecuteScript", {"script": body, "args": list(args)})

    def wait(self, body: str, what: str, timeout_s: float = 15.0, explain: str = "") -> Any:
        """The first truthy result of the script `body`, polled every 0.1 s; on timeout, the
        failure shows what the script `explain` returns (the page's own message, say)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.script(body)
            if found:
                return found
            time.sleep(0.1)
        shown = f": {self.script(explain)}" if explain else ""
        raise AssertionError(f"{what} within {timeout_s} s (in Firefox){shown}")

    def screenshot(self, path: Path) -> Path:
        data = self.command("WebDriver:TakeScreenshot", {"full": True})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


@contextlib.contextmanager
def firefox(profile: Path) -> Iterator[Firefox]:
    with sound_card(profile.parent / "pulse") as pulse, _firefox(profile, pulse) as running:
        yield running


@contextlib.contextmanager
def _firefox(profile: Path, pulse: str) -> Iterator[Firefox]:
    port = free_port_block(1)
    profile.mkdir(parents=True, exist_ok=True)
    preferences = {**PREFERENCES, "marionette.port": port}
    (profile / "user.js").write_text(
        "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in preferences.items())
    )
    log = (profile / "firefox.log").open("wb")
    proc = subprocess.Popen(
        [firefox_path(), "--headless", "--marionette", "--no-remote", "--profile", str(profile),
         "--window-size", "1366,820", "about:blank"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PULSE_SERVER": pulse},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"Firefox did not open Marionette:\n{(profile / 'firefox.log').read_text()}"
                    ) from None
                time.sleep(0.3)
        sock.settimeout(60)
        try:
            yield Firefox(sock)
        finally:
            sock.close()
    finally:
        _stop(proc)
