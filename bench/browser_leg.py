"""The browser audio leg against a SIP phone: the round trip a supervisor's leg adds.

Real processes on loopback: `parley run` (edge, worker, API, echo line), a `parley dial` caller
talking noise without pause, and a supervisor who sends back everything they hear — either a
registered `parley phone --echo` (a SIP leg) or a client of the dashboard's audio WebSocket
(`/calls/{id}/audio`, the page's own protocol) that returns each frame as it arrives (a browser
leg without the browser's sound card). The supervisor takes the call over, so the caller hears
only the supervisor: their own voice, one leg's round trip late.

For each call, the caller's recording is matched against what they said in 250 ms pieces; the
median lag is the round trip caller → supervisor → caller (both measured from the caller's
port, so the caller's own start offset cancels in the difference). Before the takeover the
echo line's agent sends the caller's voice back too: its round trip is printed as the baseline
of the worker itself. Half the difference between the two legs is what the browser leg adds
one way; the browser's own buffering (AudioWorklet capture framing, the page's jitter buffer,
the sound card) comes on top and is listed apart.

    python bench/browser_leg.py [--calls 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import running
from bench.machine import describe
from bench.running import PARLEY
from tests.support import chirp_noise, read_wav, wait_for, write_wav

BASE_PORT = 43100
HTTP_PORT = 43180
PASSWORD = "bench-super-1"
USER_PASSWORD = "bench-admin-password-1"
CALL_S = 16.0
TAKEOVER_AT_S = 6.0  # after the answer; the echo line's agent answers until then


@contextlib.contextmanager
def platform(tmp: Path) -> Iterator[Path]:
    with running.platform(
        tmp,
        BASE_PORT,
        http_port=HTTP_PORT,
        sip={"phones": [{"name": "alice", "password": PASSWORD}]},
        lines=[{"name": "echo", "numbers": ["199"], "agent": "echo"}],
        default_line=None,
    ) as config:
        wait_for(_api_up, "the API answering", 60)
        subprocess.run(
            [*PARLEY, "users", "create", "root", "--role", "admin"],
            env={**running.env(config), "PARLEY_USER_PASSWORD": USER_PASSWORD},
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        yield config


def _api_up() -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{HTTP_PORT}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _round_trips(said: np.ndarray, heard: np.ndarray, start_s: float, end_s: float) -> list[float]:
    """The lag (ms) of each 250 ms piece said between start_s and end_s in what was heard."""
    lags = []
    piece = 4000
    for start in range(int(start_s * 16000), int(end_s * 16000) - piece, piece):
        sent = said[start : start + piece]
        window = heard[start : start + piece + 16000]  # found within a second after it was said
        if len(window) < piece + 800:
            break
        corr = np.correlate(window, sent, mode="valid")
        lag = int(np.argmax(corr))
        match = window[lag : lag + piece]
        score = corr[lag] / ((np.linalg.norm(sent) * np.linalg.norm(match)) or 1.0)
        if score > 0.5:
            lags.append(lag / 16.0)
    return lags


def one_call(tmp: Path, config: Path, n: int, leg: str) -> tuple[float, float]:
    """(echo line's round trip, the supervisor leg's round trip), medians in ms."""
    work = tmp / f"{leg}{n}"
    work.mkdir()
    env = running.env(config)
    phone = None
    if leg == "sip":
        phone = subprocess.Popen(
            [*PARLEY, "phone", "--registrar", f"sip:127.0.0.1:{BASE_PORT}", "--user", "alice",
             "--password", PASSWORD, "--answer-after", "0.1", "--echo",
             "--json", str(work / "phone.json"), "--max", "60", "-q"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(2.5)  # registered
    said = chirp_noise(CALL_S, seed=20 + n)
    since = time.monotonic_ns()
    caller = subprocess.Popen(
        [*PARLEY, "dial", f"sip:199@127.0.0.1:{BASE_PORT}", "--play",
         str(write_wav(work / "said.wav", said)), "--hold", "0.3", "--timeline",
         "--record", str(work / "heard.wav"), "--json", str(work / "caller.json"), "-q"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    call_id = running.answered_since(tmp, since).call_id
    token = httpx.post(
        f"http://127.0.0.1:{HTTP_PORT}/auth/token",
        data={"username": "root", "password": USER_PASSWORD},
        timeout=10,
    ).json()["access_token"]
    api = httpx.Client(
        base_url=f"http://127.0.0.1:{HTTP_PORT}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    time.sleep(2.0)
    joined = api.post(
        f"/calls/{call_id}/supervise", json={"phone": "alice" if phone else "browser"}
    )
    joined.raise_for_status()
    stop = threading.Event()
    echo = None
    if leg == "browser":
        echo = threading.Thread(target=_echo_client, args=(call_id, token, stop), daemon=True)
        echo.start()
    running.supervisor_answered(tmp, call_id)
    time.sleep(max(0.0, TAKEOVER_AT_S - 2.0 - 0.5))
    api.post(f"/calls/{call_id}/mode", json={"mode": "takeover"}).raise_for_status()
    caller.wait(60)
    stop.set()
    if echo is not None:
        echo.join(10)
    if phone is not None:
        phone.terminate()
        phone.wait(30)
    heard = read_wav(work / "heard.wav")
    baseline = _round_trips(said, heard, 1.0, TAKEOVER_AT_S - 2.5)
    trips = _round_trips(said, heard, TAKEOVER_AT_S + 1.5, CALL_S - 1.0)
    if not baseline or not trips:
        raise SystemExit(f"{leg} call {n}: no echo found ({len(baseline)}, {len(trips)} pieces)")
    return statistics.median(baseline), statistics.median(trips)


def _echo_client(call_id: str, token: str, stop: threading.Event) -> None:
    """The page's protocol, sending back each frame the moment it arrives."""
    url = f"ws://127.0.0.1:{HTTP_PORT}/calls/{call_id}/audio"
    with connect(url, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "hello", "token": token}))
        joined = json.loads(ws.recv(timeout=10))
        if joined.get("type") != "joined":
            raise SystemExit(f"the audio socket refused the leg: {joined}")
        while not stop.is_set():
            try:
                message = ws.recv(timeout=0.5)
            except TimeoutError:
                continue
            except Exception:
                return
            if isinstance(message, bytes):
                ws.send(message)


def in_chromium(tmp: Path, config: Path) -> tuple[dict[str, float], list[float], int]:
    """One call joined from Debian's Chromium (fake microphone) for 10 s in takeover: what the
    page's own buffering was (its jitter buffer, once a second) and the sound card's latency
    as the browser reports it."""
    from playwright.sync_api import sync_playwright

    from tests.browser_support import chromium_path, log_in

    work = tmp / "chromium"
    work.mkdir()
    mic = write_wav(work / "mic.wav", chirp_noise(4.0, seed=3))
    since = time.monotonic_ns()
    caller = subprocess.Popen(
        [*PARLEY, "dial", f"sip:199@127.0.0.1:{BASE_PORT}", "--play",
         str(write_wav(work / "said.wav", chirp_noise(CALL_S + 4, seed=4))), "--hold", "0.3",
         "--json", str(work / "caller.json"), "-q"],
        env=running.env(config), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    call_id = running.answered_since(tmp, since).call_id
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(),
            args=["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                  f"--use-file-for-fake-audio-capture={mic}",
                  "--autoplay-policy=no-user-gesture-required"],
        )  # fmt: skip
        page = browser.new_page(base_url=f"http://127.0.0.1:{HTTP_PORT}")
        log_in(page, "root", USER_PASSWORD)
        page.goto(f"/#/call/{call_id}")
        page.get_by_label("Join with").select_option("browser")
        page.get_by_role("button", name="Join", exact=True).click()
        wait_for(lambda: page.evaluate("window.parley.audio.state") == "on", "joined", 20)
        page.get_by_role("button", name="Take over").click()
        time.sleep(10)
        card = page.evaluate("window.parley.audio.soundCard")
        buffered = page.evaluate("window.parley.audio.buffered")
        underruns = page.evaluate("window.parley.audio.buffer.underruns")
        browser.close()
    caller.wait(60)
    return card, [float(b) for b in buffered], int(underruns)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument(
        "--no-chromium", action="store_true", help="skip the call joined from a real Chromium"
    )
    args = parser.parse_args()
    print(describe())
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as name, platform(Path(name)) as cfg:
        tmp = Path(name)
        page = None if args.no_chromium else in_chromium(tmp, cfg)
        results: dict[str, list[tuple[float, float]]] = {"sip": [], "browser": []}
        for n in range(args.calls):
            for leg in ("sip", "browser"):
                base, trip = one_call(tmp, cfg, n, leg)
                results[leg].append((base, trip))
                print(
                    f"call {n + 1} {leg:>7}: echo line {base:.0f} ms, supervisor leg {trip:.0f} ms"
                )
    print()
    base = statistics.median(b for rows in results.values() for b, _ in rows)
    print(f"round trip through the echo line's agent (the worker alone): p50 {base:.0f} ms")
    medians = {}
    for leg, rows in results.items():
        trips = [t for _, t in rows]
        medians[leg] = statistics.median(trips)
        print(
            f"round trip through a {leg} supervisor leg: p50 {medians[leg]:.0f} ms, "
            f"min {min(trips):.0f}, max {max(trips):.0f} (n={len(trips)})"
        )
    added = (medians["browser"] - medians["sip"]) / 2
    print(f"the browser leg's added mouth-to-ear latency, one way: {added:+.0f} ms")
    print(
        "plus, in the browser itself: up to 20 ms capture framing (20 ms frames), the page's "
        "playback jitter buffer (it starts at 60 ms) and the sound card's latency"
    )
    if page is not None:
        card, buffered, underruns = page
        print(
            f"measured in Chromium (headless, fake devices): AudioContext at {card['rate']:.0f} "
            f"Hz, baseLatency {card['base_ms']:.1f} ms, outputLatency {card['output_ms']:.1f} ms;"
            f" playback buffer once a second: median {statistics.median(buffered):.0f} ms, "
            f"max {max(buffered):.0f} ms; underruns {underruns}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
