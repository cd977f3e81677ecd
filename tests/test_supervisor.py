from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from admin.supervisor import ProcessSpec, Supervisor


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
