"""A supervisor's desk phone: registers, rings, answers, speaks, records, presses keys.

`parley phone` wraps it so tests and newcomers can be a supervisor without a hardware phone.
It is the softphone's answering counterpart and keeps the same pjsua2 rules: one thread owns
the library, callbacks copy and return, and every object is released in order before
`libDestroy`. Progress leaves the pjsua2 thread as typed events on a queue; whoever called
`run` reports them.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pjsua2 as pj

from telephony.mediaport import MediaPort
from telephony.phonemedia import (
    LegMedia,
    check_keys,
    collect_received,
    connect_audio,
    loop_back,
    read_stream_info,
    read_stream_stat,
)
from telephony.pjthread import EndpointOptions, PjThread
from telephony.softphone import CODEC_CHOICES, SRTP_USE

log = logging.getLogger(__name__)

REGISTER_TIMEOUT_S = 5.0
REFUSALS = {480: "Temporarily Unavailable", 486: "Busy Here"}
UNREGISTER_WAIT_S = 3.0


class DeskError(RuntimeError):
    pass


# --- the plan: pure, validated once --------------------------------------------------------


def registrar_host(uri: str) -> str:
    """The host of a registrar's sip: URI: the domain of the address registered there."""
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() != "sip":
        raise ValueError(
            f"registrar {uri!r}: expected a sip: URI such as sip:127.0.0.1:5060 "
            "(the desk phone registers over UDP only)"
        )
    hostport, _, params = rest.partition(";")
    transport = [p for p in params.lower().split(";") if p.startswith("transport=")]
    if transport and transport != ["transport=udp"]:
        raise ValueError(f"registrar {uri!r}: the desk phone registers over UDP only")
    if "@" in hostport:
        raise ValueError(f"registrar {uri!r}: give the registrar's address, not a user's")
    if hostport.startswith("["):
        host, bracket, port = hostport[1:].partition("]")
        port = port.removeprefix(":") if bracket else ""
    else:
        host, _, port = hostport.partition(":")
    if not host or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        raise ValueError(f"registrar {uri!r}: expected sip:HOST or sip:HOST:PORT")
    return host


@dataclass(frozen=True, slots=True)
class DeskPlan:
    registrar: str  # sip:HOST[:PORT]
    username: str
    password: str
    bind_host: str = "127.0.0.1"  # SIP and RTP
    port: int = 0  # the SIP port to listen on; 0: any free port
    answer_after_s: float = 0.0  # how long it rings before answering (or declining)
    decline: bool = False  # answer 486 Busy Here instead
    echo: bool = False  # send back what it hears (a loop, to measure a leg's round trip)
    play_pcm: bytes = b""  # 16 kHz PCM16 the supervisor says, from the answer on
    keys: tuple[tuple[float, str], ...] = ()  # (seconds after answering, digits)
    hangup_after_s: float | None = None  # None: stay on until the far end hangs up
    calls: int = 1  # take this many calls, then unregister and exit
    max_s: float = 60.0  # hang up and exit after this, calls or not
    register_only: bool = False  # register, report, unregister, exit
    register_timeout_s: float = REGISTER_TIMEOUT_S
    codecs: tuple[str, ...] = tuple(CODEC_CHOICES.values())
    srtp: str = "optional"  # off, optional or required (SDES): optional takes either offer

    def __post_init__(self) -> None:
        registrar_host(self.registrar)
        if not self.username:
            raise ValueError("a user name is needed to register")
        if not 0 <= self.port < 65536:
            raise ValueError(f"port {self.port}: expected 0 (any) to 65535")
        if self.calls < 1:
            raise ValueError("the phone takes at least one call")
        if not (self.max_s > 0 and self.register_timeout_s > 0):
            raise ValueError("--max and the registration timeout must be positive")
        if not self.answer_after_s >= 0:
            raise ValueError("the phone rings for 0 seconds or more before answering")
        if self.hangup_after_s is not None and not self.hangup_after_s > 0:
            raise ValueError("hang up after a positive number of seconds, or never")
        if self.srtp not in SRTP_USE:
            raise ValueError(f"srtp {self.srtp!r}: expected one of {', '.join(SRTP_USE)}")
        check_keys(self.keys)


def registration_hint(code: int) -> str:
    """What to do about a registration the registrar (or nobody) refused."""
    if code in (401, 403, 407):
        return "the registrar refused the credentials: check the user name and password"
    if code == 408:
        return "is the registrar running, and is its address right?"
    if code == 404:
        return "the registrar does not know this user"
    return "see the registrar's log"


# --- what happened -------------------------------------------------------------------------


class DeskEventKind(enum.Enum):
    REGISTERED = "registered"
    REGISTER_FAILED = "register_failed"
    RINGING = "ringing"
    ANSWERED = "answered"
    DECLINED = "declined"
    PRESSED = "pressed"
    HUNG_UP = "hung_up"  # this phone hung up
    ENDED = "ended"  # the far end hung up, or gave up while it rang
    UNREGISTERED = "unregistered"


_EVENT_LINES = {
    DeskEventKind.REGISTERED: "registered as {detail}",
    DeskEventKind.REGISTER_FAILED: "registration failed: {detail}",
    DeskEventKind.RINGING: "ringing: call from {detail}",
    DeskEventKind.ANSWERED: "answered",
    DeskEventKind.DECLINED: "declined: {detail}",
    DeskEventKind.PRESSED: "pressed {detail}",
    DeskEventKind.HUNG_UP: "hung up",
    DeskEventKind.ENDED: "the far end hung up ({detail})",
    DeskEventKind.UNREGISTERED: "unregistered",
}


@dataclass(frozen=True, slots=True)
class DeskEvent:
    kind: DeskEventKind
    mono_ns: int
    detail: str = ""

    def line(self) -> str:
        return _EVENT_LINES[self.kind].format(detail=self.detail)


@dataclass
class DeskCallResult(LegMedia):
    index: int
    from_uri: str = ""
    ringing_mono_ns: int = 0  # the INVITE arrived
    answered_mono_ns: int = 0  # the 200 OK went out; 0: never answered
    ended_mono_ns: int = 0
    status_code: int = 0  # the call's last status: 486 declined, 487 the caller gave up…
    reason: str = ""
    ended_by: str = ""  # "phone" or "far_end"
    dtmf_sent: list[tuple[str, int]] = field(default_factory=list)  # (digits, mono ns)
    dtmf_received: str = ""

    @property
    def answered(self) -> bool:
        return self.answered_mono_ns > 0

    def summary(self) -> dict[str, object]:
        return {
            "index": self.index,
            "from_uri": self.from_uri,
            "answered": self.answered,
            "ringing_mono_ns": self.ringing_mono_ns,
            "answered_mono_ns": self.answered_mono_ns,
            "ended_mono_ns": self.ended_mono_ns,
            "status_code": self.status_code,
            "reason": self.reason,
            "ended_by": self.ended_by,
            "codec": self.codec,
            "srtp": self.srtp,
            "dtmf_sent": [{"digits": d, "mono_ns": t} for d, t in self.dtmf_sent],
            "dtmf_received": self.dtmf_received,
            **self.media_summary(),
            "frame_times_ns": [t for _, t in self.received],
        }


@dataclass
class DeskResult:
    registrar: str
    username: str
    registered: bool = False
    register_status: int = 0
    register_reason: str = ""
    unregistered: bool = False
    calls: list[DeskCallResult] = field(default_factory=list)
    busy_rejected: int = 0  # calls refused with 486 while busy or after the planned calls
    interrupted: bool = False  # stopped by Ctrl-C before the plan was done

    def shortfall(self, plan: DeskPlan) -> str | None:
        """Why the run did not do what `plan` asked, or None when it did."""
        if not self.registered:
            return (
                f"registration as {plan.username} at {plan.registrar} failed: "
                f"{self.register_status} {self.register_reason} "
                f"({registration_hint(self.register_status)})"
            )
        if plan.register_only or len(self.calls) >= plan.calls:
            return None
        within = "before it was interrupted" if self.interrupted else f"within {plan.max_s:g} s"
        if not self.calls:
            return f"no call came {within}"
        return f"{len(self.calls)} of {plan.calls} calls came {within}"

    def summary(self) -> dict[str, Any]:
        return {
            "registrar": self.registrar,
            "username": self.username,
            "registered": self.registered,
            "register_status": self.register_status,
            "register_reason": self.register_reason,
            "unregistered": self.unregistered,
            "busy_rejected": self.busy_rejected,
            "interrupted": self.interrupted,
            "calls": [call.summary() for call in self.calls],
        }


# --- the phone -----------------------------------------------------------------------------


class CallPhase(enum.Enum):
    RINGING = "ringing"
    TALKING = "talking"
    HANGING_UP = "hanging_up"  # this phone declined or hung up; the call is not gone yet
    ENDED = "ended"


class _Leg:
    """One incoming call: its result, its phase and the pjsua2 objects it holds."""

    def __init__(
        self, result: DeskCallResult, call: Any, keys: tuple[tuple[float, str], ...]
    ) -> None:
        self.result = result
        self.call: Any = call
        self.port: MediaPort | None = None
        self.phase = CallPhase.RINGING
        self.rang_at = time.monotonic()
        self.answered_at = 0.0
        self.keys_left = list(keys)


class _DeskCall(pj.Call):  # type: ignore[misc]
    def __init__(self, phone: DeskPhone, account: Any, call_id: int) -> None:
        super().__init__(account, call_id)
        self.phone = phone
        self.leg: _Leg | None = None  # None: refused as busy

    def onCallState(self, prm: Any) -> None:  # noqa: N802
        if self.leg is not None:
            self.phone._state(self.leg, self.getInfo())

    def onCallMediaState(self, prm: Any) -> None:  # noqa: N802
        if self.leg is not None:
            self.phone._media(self.leg)

    def onStreamDestroyed(self, prm: Any) -> None:  # noqa: N802
        if self.leg is not None:
            self.phone._read_stats(self.leg)

    def onDtmfDigit(self, prm: Any) -> None:  # noqa: N802
        if self.leg is not None:
            self.leg.result.dtmf_received += str(prm.digit)


class _DeskAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, phone: DeskPhone) -> None:
        super().__init__()
        self.phone = phone

    def onRegState(self, prm: Any) -> None:  # noqa: N802
        self.phone._registration(int(prm.code), str(prm.reason), int(prm.expiration))

    def onIncomingCall(self, prm: Any) -> None:  # noqa: N802
        self.phone._incoming(self, prm.callId)


class DeskPhone:
    def __init__(self, plan: DeskPlan) -> None:
        self.plan = plan
        self.result = DeskResult(registrar=plan.registrar, username=plan.username)
        self._events: queue.SimpleQueue[DeskEvent] = queue.SimpleQueue()
        self._legs: list[_Leg] = []
        self._refused: list[Any] = []  # busy calls, held until their 486 has gone out
        self._account: Any = None
        self._register_settled = False
        self._unregistering = False
        self._finishing = False
        self._register_by = 0.0
        self._deadline = 0.0
        self._done = threading.Event()
        self._unregistered = threading.Event()
        self._thread = PjThread(
            EndpointOptions(
                sip_host=plan.bind_host,
                sip_port=plan.port,
                tcp=False,
                user_agent="Parley desk phone",
                max_calls=4,
                codecs=plan.codecs,
            ),
            on_started=self._started,
            on_tick=self._tick,
            on_release=self._release,
            active_calls=self._active_calls,
            tick_interval_s=0.02,
            name="deskphone",
        )

    def run(self, on_event: Callable[[DeskEvent], None] | None = None) -> DeskResult:
        """Registers, takes the planned calls, unregisters; reports events as they happen.

        Ctrl-C hangs up what is live and unregisters, as the planned end would. `close`
        must follow, after the result has been read."""
        started = time.monotonic()
        self._register_by = started + self.plan.register_timeout_s
        self._deadline = started + self.plan.max_s
        self._thread.start()
        self._thread.ready.wait()
        if self._thread.startup_error is not None:
            raise DeskError(f"the desk phone could not start: {self._thread.startup_error}")
        report = on_event or (lambda _event: None)
        try:
            self._pump(self._done, self.plan.register_timeout_s + self.plan.max_s + 10, report)
        except KeyboardInterrupt:
            self.result.interrupted = True
            self._thread.post(self._finish)
            self._pump(self._done, 5, report)
        if self.result.registered:
            self._thread.post(self._unregister)
            self._pump(self._unregistered, UNREGISTER_WAIT_S, report)
        return self.result

    def close(self) -> None:
        """Shuts pjsua2 down in order (hang up, release, libDestroy)."""
        self._thread.stop()
        self._thread.finished.wait(10)

    def _pump(
        self, until: threading.Event, timeout_s: float, report: Callable[[DeskEvent], None]
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                report(self._events.get(timeout=0.05))
                continue
            except queue.Empty:
                pass
            if until.is_set() or time.monotonic() >= deadline:
                return

    # --- pjsua2 thread -------------------------------------------------------------------

    def _emit(self, kind: DeskEventKind, detail: str = "") -> None:
        self._events.put(DeskEvent(kind, time.monotonic_ns(), detail))

    def _started(self, thread: PjThread) -> None:
        plan = self.plan
        cfg = pj.AccountConfig()
        cfg.idUri = f"sip:{plan.username}@{registrar_host(plan.registrar)}"
        cfg.regConfig.registrarUri = plan.registrar
        # A refused registration ends the run; pjsua must not try again minutes later.
        cfg.regConfig.retryIntervalSec = 0
        cfg.sipConfig.authCreds.append(
            pj.AuthCredInfo("digest", "*", plan.username, 0, plan.password)
        )
        # The Contact is the address the phone listens on; a second REGISTER rewriting it
        # from the registrar's view would only blur what the registrar was told.
        cfg.natConfig.contactRewriteUse = 0
        # Several phones (and softphones) run at once in tests: each picks its own RTP ports.
        media = cfg.mediaConfig
        media.transportConfig.randomizePort = True
        media.transportConfig.boundAddress = plan.bind_host
        media.srtpUse = SRTP_USE[plan.srtp]
        media.srtpSecureSignaling = 0
        account = _DeskAccount(self)
        account.create(cfg, True)
        self._account = account
        thread.owned.insert(0, account)

    def _registration(self, code: int, reason: str, expiration: int) -> None:
        if self._unregistering:
            self.result.unregistered = code // 100 == 2
            if self.result.unregistered:
                self._emit(DeskEventKind.UNREGISTERED)
            self._unregistered.set()
            return
        if self._register_settled:
            return  # a refresh: the run's outcome was decided by the first answer
        self._register_settled = True
        self.result.register_status = code
        self.result.register_reason = reason
        if code // 100 != 2 or expiration <= 0:
            self._registration_failed()
            return
        self.result.registered = True
        where = f"{self.plan.username} at {self.plan.registrar}"
        self._emit(DeskEventKind.REGISTERED, f"{where} (port {self._thread.bound_port})")
        if self.plan.register_only:
            self._finish()

    def _registration_failed(self) -> None:
        result = self.result
        detail = f"{result.register_status} {result.register_reason}"
        self._emit(DeskEventKind.REGISTER_FAILED, detail)
        self._finish()

    def _unregister(self) -> None:
        self._unregistering = True
        try:
            self._account.setRegistration(False)
        except pj.Error:
            self._unregistered.set()

    def _incoming(self, account: Any, call_id: int) -> None:
        call = _DeskCall(self, account, call_id)
        live = any(leg.phase is not CallPhase.ENDED for leg in self._legs)
        if self._finishing or live or len(self._legs) >= self.plan.calls:
            # One line: a second call while one rings or talks gets busy, as on a desk phone.
            self.result.busy_rejected += 1
            self._refused.append(call)
            self._respond(call, 486)
            return
        result = DeskCallResult(
            index=len(self._legs),
            from_uri=str(call.getInfo().remoteUri),
            ringing_mono_ns=time.monotonic_ns(),
        )
        leg = _Leg(result, call, self.plan.keys)
        call.leg = leg
        self._legs.append(leg)
        self.result.calls.append(result)
        self._respond(call, 180)
        self._emit(DeskEventKind.RINGING, result.from_uri)

    def _tick(self, now: float) -> None:
        if not self._register_settled and now >= self._register_by:
            self._register_settled = True
            self.result.register_status = 408
            self.result.register_reason = f"no answer within {self.plan.register_timeout_s:g} s"
            self._registration_failed()
        plan = self.plan
        for leg in self._legs:
            if leg.phase is CallPhase.RINGING and now - leg.rang_at >= plan.answer_after_s:
                if plan.decline:
                    self._decline(leg, 486)
                else:
                    self._answer(leg, now)
            elif leg.phase is CallPhase.TALKING:
                self._press_due_keys(leg, now)
                if plan.hangup_after_s is not None and now - leg.answered_at >= plan.hangup_after_s:
                    self._hang_up(leg)
        if now >= self._deadline:
            self._finish()
        self._check_done()

    def _answer(self, leg: _Leg, now: float) -> None:
        # TALKING first: the media callback may run inside answer() and looks for it.
        leg.phase = CallPhase.TALKING
        leg.answered_at = now
        leg.result.answered_mono_ns = time.monotonic_ns()
        if not self._respond(leg.call, 200):
            leg.result.answered_mono_ns = 0
            self._hang_up(leg)
            return
        self._emit(DeskEventKind.ANSWERED)

    def _decline(self, leg: _Leg, status: int) -> None:
        leg.phase = CallPhase.HANGING_UP
        if self._respond(leg.call, status):
            self._emit(DeskEventKind.DECLINED, f"{status} {REFUSALS.get(status, '')}".strip())
        else:
            self._hang_up(leg)

    def _hang_up(self, leg: _Leg) -> None:
        leg.phase = CallPhase.HANGING_UP
        self._read_stats(leg)
        try:
            leg.call.hangup(pj.CallOpParam(True))
        except pj.Error:
            self._gone(leg, ended_by="phone")
            return
        self._emit(DeskEventKind.HUNG_UP)

    def _press_due_keys(self, leg: _Leg, now: float) -> None:
        if leg.port is None:
            return  # no media yet: keys wait for the stream
        while leg.keys_left and now - leg.answered_at >= leg.keys_left[0][0]:
            _, digits = leg.keys_left.pop(0)
            try:
                leg.call.dialDtmf(digits)
            except pj.Error as error:
                log.warning("DTMF not sent", extra={"error": error.info()})
                continue
            leg.result.dtmf_sent.append((digits, time.monotonic_ns()))
            self._emit(DeskEventKind.PRESSED, digits)

    def _media(self, leg: _Leg) -> None:
        if leg.port is not None or leg.phase is not CallPhase.TALKING:
            return
        leg.port = connect_audio(
            leg.call, name=f"desk-{leg.result.index}", source="supervisor", pcm=self.plan.play_pcm
        )
        if leg.port is not None:
            read_stream_info(leg.call, leg.result)
            if self.plan.echo:
                loop_back(leg.call)

    def _state(self, leg: _Leg, info: Any) -> None:
        if info.state != pj.PJSIP_INV_STATE_DISCONNECTED or leg.phase is CallPhase.ENDED:
            return
        by_phone = leg.phase is CallPhase.HANGING_UP
        leg.result.status_code = int(info.lastStatusCode)
        leg.result.reason = str(info.lastReason)
        self._gone(leg, ended_by="phone" if by_phone else "far_end")
        if not by_phone:
            self._emit(DeskEventKind.ENDED, f"{leg.result.status_code} {leg.result.reason}")
        if len(self._legs) >= self.plan.calls:
            self._finish()
        self._check_done()

    def _gone(self, leg: _Leg, *, ended_by: str) -> None:
        leg.phase = CallPhase.ENDED
        leg.result.ended_by = ended_by
        self._collect(leg)
        leg.result.ended_mono_ns = time.monotonic_ns()  # after the last frame recorded

    def _finish(self) -> None:
        """The run is over: nothing more is answered, and what is live ends now."""
        self._finishing = True
        for leg in self._legs:
            if leg.phase is CallPhase.RINGING:
                self._decline(leg, 480)
            elif leg.phase is CallPhase.TALKING:
                self._hang_up(leg)
        self._check_done()

    def _check_done(self) -> None:
        if self._finishing and all(leg.phase is CallPhase.ENDED for leg in self._legs):
            self._done.set()

    @staticmethod
    def _read_stats(leg: _Leg) -> None:
        read_stream_stat(leg.call, leg.result)

    @staticmethod
    def _collect(leg: _Leg) -> None:
        collect_received(leg.port, leg.result)

    @staticmethod
    def _respond(call: Any, status: int) -> bool:
        prm = pj.CallOpParam(True)
        prm.statusCode = status
        try:
            call.answer(prm)
        except pj.Error as error:
            log.warning("answer failed", extra={"status": status, "error": error.info()})
            return False
        return True

    def _active_calls(self) -> int:
        calls = [leg.call for leg in self._legs if leg.call is not None] + self._refused
        return sum(1 for call in calls if call.isActive())

    def _release(self) -> None:
        for leg in self._legs:
            if leg.phase is not CallPhase.ENDED:
                self._collect(leg)
            leg.port = None
            leg.call = None
        self._refused.clear()
        self._thread.owned.clear()
        self._account = None


def run_deskphone(
    plan: DeskPlan, on_event: Callable[[DeskEvent], None] | None = None
) -> DeskResult:
    phone = DeskPhone(plan)
    try:
        return phone.run(on_event)
    finally:
        phone.close()
