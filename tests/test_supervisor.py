from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from admin.supervisor import Liveness, LivenessTrack, ProcessSpec, Supervisor, stop_stages


def _script(tmp: Path, body: str) -> tuple[str, ...]:
    path = tmp / "child.py"
    path.write_text(body)
    return (sys.executable, str(path))


def test_restarts_a_dead_process_and_stops_cleanly(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    argv = _script(
        tmp_path,
        "import pathlib, time, sys\n"
        f"p = pathlib.Path({str(starts)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "if n < 3: sys.exit(3)\n"  # dies twice, then stays up
        "time.sleep(60)\n",
    )
    supervisor = Supervisor([ProcessSpec("flaky", argv)], backoff_s=0.1)
    runner = threading.Thread(target=supervisor.run)
    runner.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (starts.exists() and starts.read_text() == "3"):
        time.sleep(0.05)
    time.sleep(0.3)
    assert starts.read_text() == "3"
    pid = supervisor.pids()["flaky"]
    supervisor.stop_requested.set()
    runner.join(15)
    assert not runner.is_alive()
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_a_process_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    argv = _script(
        tmp_path,
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n",
    )
    supervisor = Supervisor([ProcessSpec("stubborn", argv)], backoff_s=0.1)
    runner = threading.Thread(target=supervisor.run)
    runner.start()
    time.sleep(0.5)
    started = time.monotonic()
    supervisor.stop_requested.set()
    runner.join(20)
    assert not runner.is_alive()
    assert time.monotonic() - started < 15


# --- liveness: the pure counting -----------------------------------------------------------


def _liveness(**kwargs: Any) -> Liveness:
    return Liveness(probe=lambda: True, what="test", **kwargs)


def test_failures_in_a_row_mean_hung_and_an_answer_starts_the_count_again() -> None:
    track = LivenessTrack(_liveness(interval_s=2.0, failures=3, grace_s=0.0), started_at=0.0)
    assert not track.due(1.9) and track.due(2.0)
    assert [track.observe(False, t) for t in (2.0, 4.0)] == [False, False]
    assert not track.observe(True, 6.0)  # answered: the two failures no longer count
    assert [track.observe(False, t) for t in (8.0, 10.0, 12.0)] == [False, False, True]
    assert not track.due(13.9) and track.due(14.0)  # the next probe waits a whole interval


def test_no_failure_counts_during_the_start_up_grace() -> None:
    track = LivenessTrack(_liveness(failures=2, grace_s=10.0), started_at=100.0)
    assert not any(track.observe(False, t) for t in (102.0, 104.0, 106.0, 108.0))
    assert track.failures == 0
    assert not track.observe(False, 110.0)
    assert track.observe(False, 112.0)


def test_an_answer_ends_the_grace_early() -> None:
    track = LivenessTrack(_liveness(failures=2, grace_s=60.0), started_at=0.0)
    track.observe(True, 2.0)
    assert not track.observe(False, 4.0)
    assert track.observe(False, 6.0)


def test_a_probe_counted_only_once_healthy_waits_however_long_loading_takes() -> None:
    track = LivenessTrack(_liveness(failures=2, grace_s=1.0, after_healthy=True), started_at=0.0)
    assert not any(track.observe(False, float(t)) for t in range(2, 600, 2))
    track.observe(True, 600.0)
    assert not track.observe(False, 602.0)
    assert track.observe(False, 604.0)


def test_stop_stages_keep_the_order_given_by_each_spec() -> None:
    specs = [
        ProcessSpec("engine", ("x",)),
        ProcessSpec("worker-0", ("x",), stop_stage=0),
        ProcessSpec("sip-edge", ("x",), stop_stage=1),
        ProcessSpec("worker-1", ("x",), stop_stage=0),
        ProcessSpec("api", ("x",)),
    ]
    assert stop_stages(specs) == [["worker-0", "worker-1"], ["sip-edge"], ["engine", "api"]]


# --- liveness and groups, with real children ------------------------------------------------


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _run(supervisor: Supervisor) -> threading.Thread:
    runner = threading.Thread(target=supervisor.run)
    runner.start()
    return runner


def _stop(supervisor: Supervisor, runner: threading.Thread) -> None:
    supervisor.stop_requested.set()
    runner.join(30)
    assert not runner.is_alive()


def test_a_stopped_process_is_killed_and_started_again(tmp_path: Path) -> None:
    """A child that SIGSTOPs itself stops answering its probe; SIGKILL ends it all the same."""
    heartbeat = tmp_path / "beat"
    starts = tmp_path / "starts"
    argv = _script(
        tmp_path,
        "import os, pathlib, signal, time\n"
        f"starts = pathlib.Path({str(starts)!r})\n"
        "n = int(starts.read_text()) + 1 if starts.exists() else 1\n"
        "starts.write_text(str(n))\n"
        f"beat = pathlib.Path({str(heartbeat)!r})\n"
        "for _ in range(5):\n"
        "    beat.touch(); time.sleep(0.1)\n"
        "if n == 1: os.kill(os.getpid(), signal.SIGSTOP)\n"
        "while True:\n"
        "    beat.touch(); time.sleep(0.1)\n",
    )

    def fresh() -> bool:
        return heartbeat.exists() and time.time() - heartbeat.stat().st_mtime < 0.5

    liveness = Liveness(fresh, "heartbeat", interval_s=0.2, failures=3, grace_s=5.0)
    exits: list[tuple[str, str]] = []
    supervisor = Supervisor(
        [ProcessSpec("sleeper", argv, liveness=liveness)],
        backoff_s=0.1,
        on_exit=lambda spec, cause: exits.append((spec.name, cause)),
    )
    runner = _run(supervisor)
    try:
        _wait_for(lambda: "sleeper" in supervisor.pids(), 5, "the first start")
        first = supervisor.pids()["sleeper"]
        _wait_for(lambda: starts.exists() and starts.read_text() == "2", 15, "a restart")
        assert not _alive(first)
        assert exits == [("sleeper", "hung")]
        _wait_for(lambda: supervisor.pids().get("sleeper", first) != first, 5, "the new pid")
        time.sleep(1.5)  # the new one keeps answering: no second kill
        assert starts.read_text() == "2" and exits == [("sleeper", "hung")]
    finally:
        _stop(supervisor, runner)


def test_children_left_by_a_dead_process_die_before_it_restarts(tmp_path: Path) -> None:
    pids = tmp_path / "grandchildren"
    argv = _script(
        tmp_path,
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"with open({str(pids)!r}, 'a') as out: out.write(f'{{child.pid}}\\n')\n"
        "time.sleep(0.3)\n"
        "os._exit(1)\n",  # dies, leaving its child behind
    )
    supervisor = Supervisor([ProcessSpec("forker", argv)], backoff_s=0.5)
    runner = _run(supervisor)
    try:
        _wait_for(lambda: pids.exists() and len(pids.read_text().split()) >= 2, 10, "a restart")
        first = int(pids.read_text().split()[0])
        assert not _alive(first), "the grandchild of the dead process still runs"
    finally:
        _stop(supervisor, runner)
    for pid in map(int, pids.read_text().split()):
        _wait_for(lambda pid=pid: not _alive(pid), 5, f"grandchild {pid} to go")  # type: ignore[misc]


def test_orderly_stop_drains_then_stops_stage_by_stage(tmp_path: Path) -> None:
    """Workers (stage 0) take a while to hang up; the edge (stage 1) must outlive them."""
    record = tmp_path / "record"

    def child(name: str, linger_s: float) -> tuple[str, ...]:
        path = tmp_path / f"{name}.py"
        path.write_text(
            "import signal, sys, time\n"
            f"def stop(*_):\n"
            f"    with open({str(record)!r}, 'a') as out: out.write('term {name}\\n')\n"
            f"    time.sleep({linger_s})\n"
            f"    with open({str(record)!r}, 'a') as out: out.write('gone {name}\\n')\n"
            "    sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, stop)\n"
            "while True: time.sleep(1)\n"
        )
        return (sys.executable, str(path))

    def drain() -> None:
        with record.open("a") as out:
            out.write("drain\n")

    supervisor = Supervisor(
        [
            ProcessSpec("api", child("api", 0.0)),
            ProcessSpec("worker", child("worker", 0.5), stop_stage=0),
            ProcessSpec("edge", child("edge", 0.0), stop_stage=1),
        ],
        drain=drain,
    )
    runner = _run(supervisor)
    time.sleep(1.0)
    _stop(supervisor, runner)
    assert record.read_text().split("\n")[:-1] == [
        "drain",
        "term worker",
        "gone worker",
        "term edge",
        "gone edge",
        "term api",
        "gone api",
    ]
