"""Starts Parley's processes together, restarts any that die, stops them all cleanly."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 30.0  # a process that ran this long starts again with the shortest backoff


def _die_with_parent() -> None:
    # Runs in the child before exec: if the supervisor itself dies (even by SIGKILL), the
    # kernel sends its children SIGTERM, so no orphaned worker keeps a SIP port bound.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class _Running:
    spec: ProcessSpec
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff_s: float = 1.0
    restart_at: float | None = None


class Supervisor:
    def __init__(self, specs: list[ProcessSpec], *, backoff_s: float = 1.0) -> None:
        self._procs = [_Running(spec, backoff_s=backoff_s) for spec in specs]
        self._min_backoff = backoff_s
        self.stop_requested = threading.Event()

    def _start(self, proc: _Running) -> None:
        env = {**os.environ, **proc.spec.env}
        try:
            proc.popen = subprocess.Popen(
                proc.spec.argv,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )
        except OSError as error:
            log.error(
                "process could not start", extra={"child": proc.spec.name, "error": str(error)}
            )
            proc.popen = None
            proc.restart_at = time.monotonic() + proc.backoff_s
            return
        proc.started_at = time.monotonic()
        proc.restart_at = None
        log.info("process started", extra={"child": proc.spec.name, "pid": proc.popen.pid})

    def pids(self) -> dict[str, int]:
        return {p.spec.name: p.popen.pid for p in self._procs if p.popen and p.popen.poll() is None}

    def run(self) -> int:
        """Blocks until stop_requested, restarting processes that exit; returns an exit code."""
        for proc in self._procs:
            self._start(proc)
        while not self.stop_requested.wait(0.2):
            now = time.monotonic()
            for proc in self._procs:
                self._watch(proc, now)
        self._stop_all()
        return 0

    def _watch(self, proc: _Running, now: float) -> None:
        if proc.restart_at is not None:
            if now >= proc.restart_at:
                proc.restarts += 1
                log.warning(
                    "restarting process",
                    extra={"child": proc.spec.name, "restarts": proc.restarts},
                )
                self._start(proc)
            return
        if proc.popen is None:
            return
        code = proc.popen.poll()
        if code is None:
            return
        uptime = now - proc.started_at
        if uptime >= STABLE_AFTER_S:
            proc.backoff_s = self._min_backoff
        log.error(
            "process exited",
            extra={"child": proc.spec.name, "exit_code": code, "uptime_s": round(uptime, 1)},
        )
        proc.popen = None
        proc.restart_at = now + proc.backoff_s
        proc.backoff_s = min(proc.backoff_s * 2, MAX_BACKOFF_S)

    def _stop_all(self) -> None:
        running = [p for p in reversed(self._procs) if p.popen and p.popen.poll() is None]
        for proc in running:
            assert proc.popen is not None
            try:
                os.killpg(proc.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10.0
        for proc in running:
            assert proc.popen is not None
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("process did not stop; killing it", extra={"child": proc.spec.name})
                try:
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.popen.wait()
            log.info(
                "process stopped",
                extra={"child": proc.spec.name, "exit_code": proc.popen.returncode},
            )
