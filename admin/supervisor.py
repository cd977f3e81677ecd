"""Starts Parley's processes together, restarts any that die or hang, stops them all in order.

Each process runs in its own process group (session), and the group is what gets killed: a
dead Kamailio or uvicorn leaves children behind, and a restart must not find the old ones still
holding its ports. A process may have a liveness probe; one that fails `failures` times in a
row (never during its start-up grace) is taken for hung: its group gets SIGKILL, which also ends
a SIGSTOPped process, and it is restarted like one that died.

An orderly stop goes in stages (`ProcessSpec.stop_stage`, lowest first), after `drain` (the
edge stops taking new calls): the media workers hang up their calls while the edge still
carries the BYEs, then the edge stops, then everything else.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 30.0  # a process that ran this long starts again with the shortest backoff
STOP_TIMEOUT_S = 10.0  # per stop stage, before SIGKILL


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
class Liveness:
    """How the supervisor tells a hung process from a live one.

    `probe` blocks for at most about a second and says whether the process answered. Failures
    count once the process has answered a probe, or once `grace_s` has passed since its start,
    unless `after_healthy`: then only once it has answered (an engine loading its models).
    """

    probe: Callable[[], bool]
    what: str  # names the probe in the log: "SIP OPTIONS to 127.0.0.1:5071"
    interval_s: float = 2.0
    failures: int = 3
    grace_s: float = 30.0
    after_healthy: bool = False


class LivenessTrack:
    """One process's probe results since its start: pure, driven by the times it is given."""

    def __init__(self, liveness: Liveness, started_at: float) -> None:
        self.liveness = liveness
        self.started_at = started_at
        self.healthy = False  # answered a probe since the start
        self.failures = 0  # in a row, counted ones only
        self._next_at = started_at + liveness.interval_s

    def due(self, now: float) -> bool:
        return now >= self._next_at

    def observe(self, ok: bool, now: float) -> bool:
        """Feeds the result of a probe started at `now`'s interval; True: the process is hung."""
        self._next_at = now + self.liveness.interval_s
        if ok:
            self.healthy, self.failures = True, 0
            return False
        if not self._armed(now):
            return False
        self.failures += 1
        return self.failures >= self.liveness.failures

    def _armed(self, now: float) -> bool:
        if self.healthy:
            return True
        return not self.liveness.after_healthy and now - self.started_at >= self.liveness.grace_s


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    liveness: Liveness | None = None
    stop_stage: int = 2  # orderly stop: lower stages stop (and are gone) first


def stop_stages(specs: Iterable[ProcessSpec]) -> list[list[str]]:
    """The names of the processes to stop together, stage by stage, in order."""
    stages: dict[int, list[str]] = {}
    for spec in specs:
        stages.setdefault(spec.stop_stage, []).append(spec.name)
    return [stages[stage] for stage in sorted(stages)]


@dataclass
class _Running:
    spec: ProcessSpec
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff_s: float = 1.0
    restart_at: float | None = None
    track: LivenessTrack | None = None
    probing: Future[bool] | None = None


ExitHook = Callable[[ProcessSpec, str], None]


class Supervisor:
    """Runs `specs` until `stop_requested` is set.

    `drain` runs first at an orderly stop, while every process still runs. `on_exit(spec,
    cause)` runs when a process has ended on its own or was killed as hung (`cause` says which),
    after its group is gone and before it is started again.
    """

    def __init__(
        self,
        specs: list[ProcessSpec],
        *,
        backoff_s: float = 1.0,
        drain: Callable[[], None] | None = None,
        on_exit: ExitHook | None = None,
        stop_timeout_s: float = STOP_TIMEOUT_S,
    ) -> None:
        self._procs = [_Running(spec, backoff_s=backoff_s) for spec in specs]
        self._min_backoff = backoff_s
        self._drain = drain
        self._on_exit = on_exit
        self._stop_timeout_s = stop_timeout_s
        probed = sum(1 for spec in specs if spec.liveness is not None)
        self._probes = ThreadPoolExecutor(max(1, probed), thread_name_prefix="liveness")
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
        liveness = proc.spec.liveness
        proc.track = None if liveness is None else LivenessTrack(liveness, proc.started_at)
        log.info("process started", extra={"child": proc.spec.name, "pid": proc.popen.pid})

    def pids(self) -> dict[str, int]:
        return {p.spec.name: p.popen.pid for p in self._procs if p.popen and p.popen.poll() is None}

    def run(self) -> int:
        """Blocks until stop_requested, restarting processes that exit; returns an exit code."""
        for proc in self._procs:
            self._start(proc)
        try:
            while not self.stop_requested.wait(0.2):
                now = time.monotonic()
                for proc in self._procs:
                    self._watch(proc, now)
        finally:
            self._probes.shutdown(wait=False, cancel_futures=True)
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
        if code is not None:
            log.error(
                "process exited",
                extra={
                    "child": proc.spec.name,
                    "exit_code": code,
                    "uptime_s": round(now - proc.started_at, 1),
                },
            )
            self._ended(proc, now, "exited")
            return
        self._check_liveness(proc, now)

    def _check_liveness(self, proc: _Running, now: float) -> None:
        track, liveness = proc.track, proc.spec.liveness
        if track is None or liveness is None:
            return
        if proc.probing is None:
            if track.due(now):
                proc.probing = self._probes.submit(liveness.probe)
            return
        if not proc.probing.done():
            return
        try:
            ok = proc.probing.result()
        except Exception:  # a probe that raises has not seen the process answer
            ok = False
        proc.probing = None
        if not track.observe(ok, now):
            return
        assert proc.popen is not None
        log.error(
            "process hung; killing it",
            extra={
                "child": proc.spec.name,
                "pid": proc.popen.pid,
                "probe": liveness.what,
                "failures": track.failures,
                "uptime_s": round(now - proc.started_at, 1),
            },
        )
        _kill_group(proc.popen.pid)
        proc.popen.wait()
        self._ended(proc, now, "hung")

    def _ended(self, proc: _Running, now: float, cause: str) -> None:
        """The process is gone: its group goes too, then it waits for its restart."""
        assert proc.popen is not None
        _kill_group(proc.popen.pid)  # children it left behind
        if now - proc.started_at >= STABLE_AFTER_S:
            proc.backoff_s = self._min_backoff
        proc.popen, proc.track, proc.probing = None, None, None
        proc.restart_at = now + proc.backoff_s
        proc.backoff_s = min(proc.backoff_s * 2, MAX_BACKOFF_S)
        if self._on_exit is not None:
            try:
                self._on_exit(proc.spec, cause)
            except Exception:
                log.exception("exit hook failed", extra={"child": proc.spec.name})

    def _stop_all(self) -> None:
        if self._drain is not None:
            try:
                self._drain()
            except Exception:
                log.exception("drain before stop failed; stopping anyway")
        by_name = {p.spec.name: p for p in self._procs}
        for names in stop_stages(p.spec for p in self._procs):
            self._stop_stage([by_name[name] for name in names])

    def _stop_stage(self, procs: list[_Running]) -> None:
        running = [p for p in procs if p.popen is not None]
        for proc in running:
            assert proc.popen is not None
            if proc.popen.poll() is None:
                _signal_group(proc.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._stop_timeout_s
        for proc in running:
            assert proc.popen is not None
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("process did not stop; killing it", extra={"child": proc.spec.name})
                _kill_group(proc.popen.pid)
                proc.popen.wait()
            _kill_group(proc.popen.pid)  # children that outlived it
            log.info(
                "process stopped",
                extra={"child": proc.spec.name, "exit_code": proc.popen.returncode},
            )


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already


def _kill_group(pgid: int) -> None:
    """SIGKILL to a child's process group (its pid, as every child leads its own session)."""
    _signal_group(pgid, signal.SIGKILL)
