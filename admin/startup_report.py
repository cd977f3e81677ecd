"""Tells the operator when `parley run` can serve a call, and until then what it waits for.

Ready means: the edge answers SIP OPTIONS, every media worker answers, the admin API (and the
dashboard the ready line points at) answers /healthz, and the engine's /healthz says 200 when a
line needs it. Before that, a progress line whenever what is missing
changes (and every `REPEAT_S` while it does not).
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, TextIO

from admin.processes import local_address, sip_answers
from agent.health import health_url, probe
from agent.profiles import needs_server

POLL_S = 1.0
REPEAT_S = 10.0


@dataclass(frozen=True, slots=True)
class Progress:
    edge: bool
    workers_up: int
    workers: int
    engine: bool | None  # None: no line needs it
    api: bool = True

    @property
    def ready(self) -> bool:
        return (
            self.edge and self.workers_up == self.workers and self.engine is not False and self.api
        )


def waiting_for(progress: Progress) -> str:
    """What is still missing, for a 'starting…' line."""
    missing = []
    if progress.engine is False:
        missing.append("engine loading models")
    if progress.workers_up < progress.workers:
        missing.append(f"media workers {progress.workers_up}/{progress.workers} answering")
    if not progress.edge:
        missing.append("SIP edge not answering yet")
    if not progress.api:
        missing.append("admin API starting")
    return "; ".join(missing)


def ready_line(settings: Any) -> str:
    sip = settings.sip
    return (
        f"Parley is ready: SIP on {sip.host}:{sip.port} (UDP+TCP), {sip.workers} media "
        f"workers x {sip.callers_per_worker} calls. Try: parley dial sip:{_number(settings)}@"
        f"{local_address(sip.host)}:{sip.port}. Dashboard: "
        f"http://{local_address(settings.http_host)}:{settings.http_port}/ . Ctrl-C stops."
    )


def _number(settings: Any) -> str:
    lines = sorted(settings.lines, key=lambda line: line.name != settings.default_line)
    return next((line.numbers[0] for line in lines if line.numbers), "100")


class StartupReport:
    """Polls the platform from a thread until it can take calls, printing as it goes."""

    def __init__(self, settings: Any, stop: threading.Event, *, out: TextIO = sys.stderr) -> None:
        self._settings = settings
        self._stop = stop
        self._out = out
        sip = settings.sip
        self._edge = (local_address(sip.host), sip.port)
        worker_host = local_address(sip.worker_host)
        self._workers = [(worker_host, sip.worker_base_port + i) for i in range(sip.workers)]
        needed = any(needs_server(line.agent) for line in settings.lines)
        self._engine = health_url(settings.engine.ws_url()) if needed else None
        self._api = f"http://{local_address(settings.http_host)}:{settings.http_port}/healthz"

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="startup-report", daemon=True)
        thread.start()
        return thread

    def check(self) -> Progress:
        return Progress(
            edge=sip_answers(*self._edge),
            workers_up=sum(sip_answers(host, port) for host, port in self._workers),
            workers=len(self._workers),
            engine=None if self._engine is None else probe(self._engine),
            api=probe(self._api),
        )

    def run(self) -> None:
        said, said_at = "", 0.0
        while not self._stop.wait(POLL_S):
            progress = self.check()
            if self._stop.is_set():
                return
            if progress.ready:
                self._say(ready_line(self._settings))
                return
            line = f"Parley is starting… ({waiting_for(progress)})"
            if line != said or time.monotonic() - said_at >= REPEAT_S:
                self._say(line)
                said, said_at = line, time.monotonic()

    def _say(self, line: str) -> None:
        print(line, file=self._out, flush=True)
