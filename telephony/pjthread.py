"""The one thread that owns a pjsua2 endpoint.

pjsua2 runs with no worker threads of its own (`threadCnt=0`, `mainThreadOnly=True`): this
thread creates the library, loops `libHandleEvents`, runs jobs other threads post, and
destroys everything in order at the end. Nothing else may touch a pjsua2 object.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pjsua2 as pj

from telephony.framecopy import self_check
from telephony.siptimers import set_transaction_timers

log = logging.getLogger(__name__)

OFFERED_CODECS = ("G722/16000/1", "PCMU/8000/1", "PCMA/8000/1")


@dataclass(frozen=True, slots=True)
class EndpointOptions:
    sip_host: str = "127.0.0.1"
    sip_port: int = 0  # 0: any free port
    udp: bool = True
    tcp: bool = True
    tls: bool = False  # a TLS client transport (the softphone calling an edge over TLS)
    public_host: str | None = None
    user_agent: str = "Parley"
    max_calls: int = 4
    codecs: tuple[str, ...] = OFFERED_CODECS
    pj_log_level: int = 0
    # RFC 3261 T1 in ms; None keeps pjsip's 500 ms (right for peers across the internet).
    sip_t1_ms: int | None = None


@contextlib.contextmanager
def _quiet_stdout(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


class PjThread(threading.Thread):
    """Owns the endpoint; `post` runs a callable on it, `stop` shuts it down in order."""

    def __init__(
        self,
        options: EndpointOptions,
        *,
        on_started: Callable[[PjThread], None],
        on_tick: Callable[[float], None] | None = None,
        on_stopping: Callable[[], None] | None = None,
        on_release: Callable[[], None] | None = None,
        active_calls: Callable[[], int] | None = None,
        tick_interval_s: float = 1.0,
        name: str = "pjsua2",
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.options = options
        self.endpoint: Any = None
        self.bound_port = 0
        self._on_started = on_started
        self._on_tick = on_tick
        self._on_stopping = on_stopping
        self._on_release = on_release
        self._active_calls = active_calls
        self._tick_interval_s = tick_interval_s
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._stop_requested = threading.Event()
        self.ready = threading.Event()
        self.finished = threading.Event()
        self.startup_error: BaseException | None = None
        # Objects that must die before libDestroy (ports, calls, accounts), released in order.
        self.owned: list[Any] = []

    def post(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def stop(self) -> None:
        self._stop_requested.set()

    def run(self) -> None:
        try:
            self._start_library()
        except BaseException as error:
            self.startup_error = error
            self.ready.set()
            self.finished.set()
            return
        self.ready.set()
        try:
            self._loop()
        finally:
            self._shutdown()
            self.finished.set()

    def _start_library(self) -> None:
        self_check()
        options = self.options
        if options.sip_t1_ms is not None:
            set_transaction_timers(t1_ms=options.sip_t1_ms, timer_d_ms=64 * options.sip_t1_ms)
        ep = pj.Endpoint()
        with _quiet_stdout(options.pj_log_level == 0):
            # pjlib logs its start-up banner to stdout before any log level applies.
            ep.libCreate()
        self.endpoint = ep
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = options.max_calls
        cfg.uaConfig.userAgent = options.user_agent
        cfg.logConfig.level = options.pj_log_level
        cfg.logConfig.consoleLevel = options.pj_log_level
        cfg.logConfig.msgLogging = 0
        cfg.medConfig.clockRate = 16000
        cfg.medConfig.sndClockRate = 16000
        cfg.medConfig.audioFramePtime = 20
        cfg.medConfig.ptime = 20
        # Silence must still be sent: the far end's inactivity timer counts packets.
        cfg.medConfig.noVad = True
        cfg.medConfig.ecTailLen = 0
        ep.libInit(cfg)
        transport_types = []
        if options.udp:
            transport_types.append(pj.PJSIP_TRANSPORT_UDP)
        if options.tcp:
            transport_types.append(pj.PJSIP_TRANSPORT_TCP)
        for transport_type in transport_types:
            tcfg = pj.TransportConfig()
            tcfg.boundAddress = options.sip_host
            tcfg.port = self.bound_port or options.sip_port
            if options.public_host:
                tcfg.publicAddress = options.public_host
            transport_id = ep.transportCreate(transport_type, tcfg)
            if not self.bound_port:
                self.bound_port = int(ep.transportGetInfo(transport_id).localName.rsplit(":", 1)[1])
        if options.tls:
            tcfg = pj.TransportConfig()
            tcfg.boundAddress = options.sip_host
            tcfg.port = 0
            # A caller trying out an edge with a self-signed certificate: encrypt, but do not
            # insist on a certificate chain this process cannot know.
            tcfg.tlsConfig.verifyServer = False
            tcfg.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
            ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tcfg)
        ep.libStart()
        ep.audDevManager().setNullDev()
        for codec in ep.codecEnum2():
            ep.codecSetPriority(codec.codecId, 0)
        for rank, codec_id in enumerate(options.codecs):
            ep.codecSetPriority(codec_id, 255 - rank)
        self._on_started(self)

    def _loop(self) -> None:
        ep = self.endpoint
        next_tick = time.monotonic() + self._tick_interval_s
        while not self._stop_requested.is_set():
            ep.libHandleEvents(5)
            self._run_jobs()
            now = time.monotonic()
            if now >= next_tick and self._on_tick is not None:
                next_tick = now + self._tick_interval_s
                on_tick = self._on_tick
                self._guarded(functools.partial(on_tick, now))

    def _run_jobs(self) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            self._guarded(job)

    @staticmethod
    def _guarded(job: Callable[[], None]) -> None:
        try:
            job()
        except Exception:
            log.exception("pjsua2 job failed")

    def _shutdown(self) -> None:
        """Hang up, release in order, collect, then libDestroy: never leave it to the GC."""
        ep = self.endpoint
        if ep is None:
            return
        if self._on_stopping is not None:
            self._guarded(self._on_stopping)
        try:
            ep.hangupAllCalls()
        except Exception:
            log.exception("hangupAllCalls failed")
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            ep.libHandleEvents(10)
            self._run_jobs()
            if self._active_calls is not None and self._active_calls() == 0:
                break
        self._run_jobs()
        if self._on_release is not None:
            # Every Python reference to a pjsua2 object must go before libDestroy, or its
            # destructor runs later against a destroyed library and aborts the process.
            self._guarded(self._on_release)
        while self.owned:
            self.owned.pop()
        gc.collect()
        try:
            ep.libDestroy()
        except Exception:
            log.exception("libDestroy failed")
        self.endpoint = None


@contextlib.contextmanager
def library_only() -> Iterator[Any]:
    """pjsua2 initialised with no transports: for using media ports outside a call."""
    endpoint = pj.Endpoint()
    with _quiet_stdout(True):
        endpoint.libCreate()
    config = pj.EpConfig()
    config.logConfig.level = 0
    config.logConfig.consoleLevel = 0
    endpoint.libInit(config)
    try:
        yield endpoint
    finally:
        gc.collect()
        endpoint.libDestroy()
