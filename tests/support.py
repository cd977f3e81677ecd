"""Shared helpers for tests that run real Parley processes and real SIP calls."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml

from telephony.edge import CTL_SOCKET_NAME
from telephony.edge_stats import find_kamcmd
from telephony.events import CallEvent, CallEventKind, read_events
from telephony.sipprobe import wait_answering

ROOT = Path(__file__).resolve().parent.parent
PARLEY = [sys.executable, "-m", "admin.cli"]


def parley_command(
    env: dict[str, str], *args: str, stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`parley <args>` in its own process, as a person runs it; its output as text."""
    return subprocess.run(
        [*PARLEY, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


T = TypeVar("T")


def _free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port_block(size: int) -> int:
    """The first port of `size` consecutive ports free on UDP and TCP."""
    for _ in range(200):
        base = random.randrange(30000, 60000 - size)
        if all(_free(port) for port in range(base, base + size)):
            return base
    raise RuntimeError("no free port block")


@dataclass
class PlatformConfig:
    """Settings for a test's own Parley: its own ports, folder and lines."""

    tmp: Path
    capacity: int = 4
    rtp_timeout_s: float = 30.0
    lines: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"name": "main", "numbers": ["100"], "agent": "echo"},
            {"name": "delayed", "numbers": ["200"], "agent": "echo-delayed"},
        ]
    )
    default_line: str | None = "main"
    extra: dict[str, Any] = field(default_factory=dict)
    sip: dict[str, Any] = field(default_factory=dict)  # more `sip:` settings (trunks, hosts…)

    def __post_init__(self) -> None:
        workers = -(-self.capacity // 4)
        block = free_port_block(3 + workers + workers * 40)
        self.sip_port = block
        self.tls_port = block + 1
        self.http_port = block + 2  # another test's platform may hold the default 8000
        self.worker_base_port = block + 3
        self.rtp_base_port = block + 3 + workers

    def write(self) -> Path:
        settings = {
            "data_dir": str(self.tmp / "var"),
            "log_level": "INFO",
            "sip": {
                "host": "127.0.0.1",
                "port": self.sip_port,
                "call_capacity": self.capacity,
                "worker_base_port": self.worker_base_port,
                "rtp_base_port": self.rtp_base_port,
                "rtp_timeout_s": self.rtp_timeout_s,
                "stats_interval_s": 1.0,
                "probe_interval_s": 1,
                "tls": {"port": self.tls_port},
                **self.sip,
            },
            "lines": self.lines,
            "default_line": self.default_line,
            "restart_backoff_s": 0.5,
            "http_port": self.http_port,
            # No background jobs unless a test asks (extra={"jobs": …}): the Celery worker
            # costs a busy 2-core machine seconds to start and five to stop.
            "jobs": {"enabled": False},
            **self.extra,
        }
        path = self.tmp / "parley.yaml"
        path.write_text(yaml.safe_dump(settings))
        return path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
        env["PARLEY_CONFIG"] = str(self.write())
        env["PYTHONPATH"] = str(ROOT)
        return env

    def events(self) -> list[CallEvent]:
        events: list[CallEvent] = []
        for path in sorted((self.tmp / "var" / "events").glob("worker-*.jsonl")):
            events.extend(read_events(path))
        return sorted(events, key=lambda e: e.t_mono_ns)


def events_from(config: PlatformConfig, caller: str) -> list[CallEvent]:
    """The events of the one call placed with `parley dial --caller <caller>`."""
    events = config.events()
    [call_id] = [
        e.call_id
        for e in events
        if e.kind is CallEventKind.STARTED and f"sip:{caller}@" in str(e.data["from"])
    ]
    return [e for e in events if e.call_id == call_id]


class Running:
    """A Parley process (worker or the whole platform) started by a test."""

    def __init__(self, argv: list[str], config: PlatformConfig, log_name: str) -> None:
        self.config = config
        self.log_path = config.tmp / log_name
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv,
            env=config.env(),
            cwd=config.tmp,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError(
                    f"process did not stop on SIGTERM:\n{self.log()[-3000:]}"
                ) from None
        self._log.close()
        return int(self.proc.returncode)


def sync_disclosures(config: PlatformConfig) -> None:
    """`parley db upgrade` and `parley sync`: the disclosures versioned and their audio rendered."""
    for command in (["db", "upgrade"], ["sync"]):
        done = subprocess.run(
            [*PARLEY, *command],
            env=config.env(),
            cwd=config.tmp,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")


def start_worker(config: PlatformConfig, index: int = 0) -> Running:
    running = Running([*PARLEY, "worker", "--index", str(index)], config, f"worker-{index}.log")
    try:
        wait_answering("127.0.0.1", config.worker_base_port + index, timeout_s=20)
    except TimeoutError:
        running.stop()
        raise AssertionError(f"worker did not start:\n{running.log()[-3000:]}") from None
    return running


def start_platform(config: PlatformConfig, *, escalation: bool = False) -> Running:
    """`parley run` on `config`, once its edge and workers answer (and, with `escalation`,
    once the escalation service follows the workers' live events)."""
    running = Running([*PARLEY, "run"], config, "platform.log")
    try:
        wait_answering("127.0.0.1", config.sip_port, timeout_s=30)
        for index in range(-(-config.capacity // 4)):
            wait_answering("127.0.0.1", config.worker_base_port + index, timeout_s=30)
    except TimeoutError:
        running.stop()
        raise AssertionError(f"platform did not start:\n{running.log()[-5000:]}") from None
    wait_edge_sees_workers(config)
    if escalation:
        escalation_following(running)
    return running


async def port_open(port: int, timeout_s: float = 5.0) -> None:
    """Waits (in an event loop) until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"nothing listening on port {port} within {timeout_s} s"
                ) from None
            await asyncio.sleep(0.05)


def escalation_following(running: Running) -> None:
    """Waits until the platform's escalation service follows the workers' live events."""
    wait_for(
        lambda: re.search(r"escalation +live events: connected", running.log()),
        "the escalation service following the worker's events",
        20,
    )


def escalation_steps(config: PlatformConfig, call_id: str) -> list[CallEvent]:
    """The escalation service's events for a call (request, enqueue, offer, accept…)."""
    events: list[CallEvent] = []
    for path in sorted((config.tmp / "var" / "events").glob("escalation*.jsonl")):
        events.extend(read_events(path))
    return [e for e in events if e.call_id == call_id]


def edge_worker_flags(config: PlatformConfig) -> dict[int, str]:
    """The edge dispatcher's flags for each worker by index: "AP" takes calls (active,
    probed), "IP" or "TP" does not (inactive or trying after a failed probe)."""
    kamcmd = find_kamcmd()
    assert kamcmd is not None, "kamcmd (installed with Kamailio) reads the edge's state"
    socket = config.tmp / "var" / "edge" / CTL_SOCKET_NAME
    listed = subprocess.run(
        [kamcmd, "-s", f"unix:{socket}", "dispatcher.list"],
        capture_output=True, text=True, timeout=5, check=False,
    )  # fmt: skip
    found = re.findall(r"URI: sip:[^\s]+:(\d+)\s+FLAGS: (\S+)", listed.stdout)
    return {int(port) - config.worker_base_port: flags for port, flags in found}


def wait_edge_sees_workers(config: PlatformConfig) -> None:
    """Once every worker answers: until the edge's dispatcher has them all up. A probe it sent
    before a worker was listening fails within 0.75 s (the probe timeout, under the 1 s
    interval) and takes the worker out until the next probe: past that, up stays up."""
    time.sleep(0.8)
    workers = -(-config.capacity // 4)

    def all_up() -> bool:
        flags = edge_worker_flags(config)
        return len(flags) == workers and all(f.startswith("A") for f in flags.values())

    wait_for(all_up, "the edge seeing every worker up", timeout_s=10.0)


def dial(
    uri: str,
    tmp: Path,
    *,
    play: Path | None = None,
    dtmf: str = "",
    dtmf_at: float = 0.5,
    hold: float = 1.0,
    count: int = 1,
    codec: str | None = None,
    no_bye: bool = False,
    max_s: float = 30.0,
    rtp_timeout_s: float = 15.0,
    name: str = "dial",
    background: bool = False,
    options: tuple[str, ...] = (),
    password: str | None = None,
    netns: str | None = None,
) -> Any:
    """Runs `parley dial` in its own process; returns its JSON summary (or the Popen).

    `options` are more `parley dial` flags (--bind, --srtp, --user…); `netns` runs the caller
    inside that network namespace.
    """
    out = tmp / f"{name}.json"
    argv = [*PARLEY, "dial", uri, "--json", str(out), "--timeline", "-q", "--hold", str(hold)]
    argv += list(options)
    argv += ["--max", str(max_s), "--count", str(count), "--rtp-timeout", str(rtp_timeout_s)]
    argv += ["--record", str(tmp / f"{name}.wav")]
    if play is not None:
        argv += ["--play", str(play)]
    if dtmf:
        argv += ["--dtmf", dtmf, "--dtmf-at", str(dtmf_at)]
    if codec:
        argv += ["--codec", codec]
    if no_bye:
        argv += ["--no-bye"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env["PYTHONPATH"] = str(ROOT)
    if password is not None:
        env["PARLEY_DIAL_PASSWORD"] = password
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    log = (tmp / f"{name}.log").open("wb")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    if background:
        return proc
    return finish_dial(proc, out, timeout=max_s + 30)


def finish_dial(proc: subprocess.Popen[bytes], out: Path, timeout: float = 60) -> Any:
    proc.wait(timeout)
    log = out.with_suffix(".log")
    if not out.exists():
        raise AssertionError(
            f"parley dial exited {proc.returncode} with no summary:\n"
            f"{log.read_text(errors='replace')}"
        )
    return json.loads(out.read_text())


def wait_for(predicate: Callable[[], T], what: str, timeout_s: float = 15.0) -> T:
    """The first truthy value of `predicate`, polled every 0.1 s; fails naming `what`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout_s} s")


def answered_since(config: PlatformConfig, since_ns: int) -> str:
    """The id of the last call the platform answered after `since_ns` (monotonic)."""
    answered = wait_for(
        lambda: [
            e
            for e in config.events()
            if e.kind is CallEventKind.ANSWERED and e.t_mono_ns > since_ns
        ],
        "an answer",
    )
    return answered[-1].call_id


def agent_events(
    config: PlatformConfig, call_id: str, event: str, since_ns: int = 0
) -> list[CallEvent]:
    """The call's agent events (call.agent_event) named `event`, after `since_ns`."""
    return [
        e
        for e in config.events()
        if e.call_id == call_id
        and e.kind is CallEventKind.AGENT
        and e.data["event"] == event
        and e.t_mono_ns > since_ns
    ]


def played_out(config: PlatformConfig, call_id: str, utterance_id: object) -> int:
    """Waits until the caller has had all of an agent utterance (the engine sends it faster
    than it plays: its start plus its length, and a margin for the phone path); returns when
    that was (monotonic ns)."""
    [done] = wait_for(
        lambda: [
            e
            for e in agent_events(config, call_id, "agent_utterance_done")
            if e.data["utterance_id"] == utterance_id
        ],
        f"all of {utterance_id}",
    )
    [started] = [
        e
        for e in agent_events(config, call_id, "agent_utterance_started")
        if e.data["utterance_id"] == utterance_id
    ]
    audio_ms = done.data["audio_ms"]
    assert isinstance(audio_ms, int), done
    end_ns = started.t_mono_ns + audio_ms * 1_000_000 + 300_000_000
    time.sleep(max(0.0, (end_ns - time.monotonic_ns()) / 1e9))
    return end_ns


def start_phone(
    config: PlatformConfig, tmp: Path, user: str, *args: str, name: str = "phone"
) -> subprocess.Popen[bytes]:
    """`parley phone` registering as `user` at the platform's edge; its summary, recording
    and log are tmp/<name>.json, .wav and .log. Pass the password and the plan in `args`."""
    argv = [
        *PARLEY, "phone", "--registrar", f"sip:127.0.0.1:{config.sip_port}", "--user", user,
        "--json", str(tmp / f"{name}.json"), "--record", str(tmp / f"{name}.wav"), *args,
    ]  # fmt: skip
    log = (tmp / f"{name}.log").open("wb")
    return subprocess.Popen(argv, env=config.env(), stdout=log, stderr=subprocess.STDOUT)


def phone_registered(tmp: Path, name: str = "phone") -> None:
    wait_for(lambda: "registered" in (tmp / f"{name}.log").read_text(), f"{name} registered")


def parley_call(config: PlatformConfig, *args: str) -> dict[str, Any]:
    """`parley call ARGS` against the platform; its JSON answer (the call's new state)."""
    done = subprocess.run(
        [*PARLEY, "call", *args], env=config.env(), capture_output=True, text=True, timeout=30,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def received_between(
    recording: np.ndarray, times_ns: list[int], start_ns: int, end_ns: int
) -> np.ndarray:
    """What a phone received between two moments, by its frames' arrival times."""
    times = np.array(times_ns, dtype=np.int64)
    frames = np.flatnonzero((times >= start_ns) & (times < end_ns))
    assert len(frames) > 25, f"only {len(frames)} frames in the window"
    return recording[frames[0] * 320 : (frames[-1] + 1) * 320]


def heard_in(signal: np.ndarray, window: np.ndarray) -> float:
    """How clearly 0.5 s stretches of `signal` appear in `window` (best of several)."""
    return max(
        best_correlation(signal[start : start + 8000], window)[0]
        for start in range(0, len(signal) - 8000, 16000)
    )


def write_wav(path: Path, samples: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(np.clip(samples, -32768, 32767).astype("<i2").tobytes())
    return path


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        raw = wav.readframes(wav.getnframes())
    samples: np.ndarray = np.frombuffer(raw, dtype="<i2").astype(np.float64)
    return samples


def chirp_noise(seconds: float, seed: int = 7) -> np.ndarray:
    """Speech-band noise: correlates sharply at one lag, unlike a periodic tone."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(int(16000 * seconds))
    spectrum = np.fft.rfft(noise)
    freqs = np.fft.rfftfreq(len(noise), 1 / 16000)
    spectrum[(freqs < 300) | (freqs > 3200)] = 0  # survives PCMU's 8 kHz band
    band: np.ndarray = np.fft.irfft(spectrum, len(noise))
    scaled: np.ndarray = band / np.abs(band).max() * 8000
    return scaled


def best_correlation(sent: np.ndarray, received: np.ndarray) -> tuple[float, int]:
    """(normalised correlation, lag in samples) of `sent` found inside `received`."""
    if len(received) < len(sent):
        received = np.concatenate([received, np.zeros(len(sent) - len(received))])
    n = len(received) + len(sent)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(received, size) * np.conj(np.fft.rfft(sent, size)), size)
    lag = int(np.argmax(corr[: len(received) - len(sent) + 1]))
    window = received[lag : lag + len(sent)]
    denom = float(np.linalg.norm(sent) * np.linalg.norm(window)) or 1.0
    return float(corr[lag] / denom), lag


def echo_match(
    sent: np.ndarray, received: np.ndarray, *, piece_s: float = 0.25
) -> tuple[float, int]:
    """How well `sent` came back in `received`, piece by piece: (median normalised
    correlation of its 250 ms pieces, median lag in samples of the first piece's start).

    A phone path may slip a frame now and then (an adaptive jitter buffer growing by 20 ms
    after a scheduling hiccup): one correlation over a long stretch then drops to ~0.7 although
    every piece came back intact, so the pieces are matched on their own.
    """
    step = int(piece_s * 16_000)
    matches = [
        best_correlation(sent[start : start + step], received)
        for start in range(0, len(sent) - step + 1, step)
    ]
    if not matches:
        raise ValueError("sent audio shorter than one piece")
    scores = [score for score, _ in matches]
    lags = [lag - i * step for i, (_, lag) in enumerate(matches)]
    return float(np.median(scores)), int(np.median(lags))


@dataclass
class EngineProcess:
    running: Running
    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"


PAYMENTS_KB = ROOT / "tests" / "kb" / "payments"  # updates a card: a sensitive slot


def start_engine(tmp: Path, *, prerender: bool = True) -> EngineProcess:
    """`parley engine` in its own process; returns once its models are loaded. Without
    `prerender` it does not synthesize the knowledge base's fixed replies in the background.
    Its knowledge bases: the sample, and `payments` (PAYMENTS_KB)."""
    port = free_port_block(1)
    engine = {
        "host": "127.0.0.1",
        "port": port,
        "prerender": prerender,
        "knowledge_bases": {"payments": str(PAYMENTS_KB)},
    }
    config = PlatformConfig(tmp, extra={"engine": engine})
    running = Running([*PARLEY, "engine"], config, "engine.log")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if running.proc.poll() is not None:
            raise AssertionError(f"engine exited:\n{running.log()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return EngineProcess(running, port)
        except OSError:
            time.sleep(0.5)
    running.stop()
    raise AssertionError(f"engine never became healthy:\n{running.log()[-3000:]}")
