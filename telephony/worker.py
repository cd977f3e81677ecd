"""A media worker: one pjsua2 endpoint answering up to 4 calls and bridging each to a session.

Threads: the pjsua2 thread (see pjthread.py) owns every SIP and media object; pjmedia's clock
thread only touches the media ports' deques; the asyncio loop runs the bridges and sessions.
Hand-offs go one way each: pjsua2 → asyncio with `call_soon_threadsafe`, asyncio → pjsua2 with
`PjThread.post`.

A call's phase (answering, disclosing, with the agent, queued, with a human, fallback, ended)
lives in `ActiveCall.state`; it changes only through telephony.phases, whose transitions return
the actions carried out here, in order, one call's actions after another's never interleaved.
Who hears whom follows from the phase (telephony.mixing) and is applied as conference-bridge
connections between the call's legs on the pjsua2 thread.

Teardown of a call happens in one fixed order:
  1. [pjsua2]  the call is DISCONNECTED; its last stream stats are already captured
  2. [asyncio] the bridge stops its pumps and closes the session
  3. [asyncio] `call.ended` is emitted with reason and final media stats
  4. [pjsua2]  the media ports are destroyed (leaving the conference bridge), the call released,
               and the record removed from the registry
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import pjsua2 as pj

from agent.session import DuplexSession, SessionError
from telephony import browserleg, control, phases
from telephony.bridge import CallBridge
from telephony.browserleg import BrowserLeg, LegRefused
from telephony.commands import (
    AttachLeg,
    Command,
    PauseRecording,
    PlayPrompt,
    Reply,
    ResumeRecording,
    Status,
    browser_name,
    is_browser_uri,
)
from telephony.consent import (
    ConsentMode,
    ConsentRun,
    Decision,
    DisclosureAudioError,
    DisclosurePlan,
    NextStep,
    Notice,
    read_pcm,
)
from telephony.consent import Phase as ConsentPhase
from telephony.delivery import NOT_HELD
from telephony.events import CallEvent, CallEventKind, EventOutlet
from telephony.inbox import Inbox, RedisInbox, UnixInbox, UnixListener, bind_unix
from telephony.jurisdiction import NO_RULES, Requirements
from telephony.lines import Line, LineRouter, request_uri_user
from telephony.mediaport import ListeningPort, MediaPort, wake_on
from telephony.metrics import metered
from telephony.mixing import Connection, Leg, Mix, changes, hears
from telephony.phases import Action, CallState, DtmfTo, NotNow
from telephony.pjthread import EndpointOptions, PjThread
from telephony.playout import Cause, Playout, Sound
from telephony.prompts import fallback_prompt, hold_audio
from telephony.recording import LEFT, RIGHT, RecordingStore, StereoRecorder
from telephony.rtpwatch import RtpInactivity
from telephony.worker_config import WorkerConfig

__all__ = ["MediaWorker", "ReadinessCheck", "WorkerConfig", "serve"]

log = logging.getLogger(__name__)

SessionFactory = Callable[[Line], DuplexSession]


class Transcriber(Protocol):
    """Speech to text for one call's spoken consent (agent.remote.RealtimeTranscriber)."""

    async def start(self) -> None: ...

    async def send_audio(self, pcm: bytes) -> None: ...

    def transcripts(self) -> AsyncIterator[str | None]:
        """None when the caller starts to speak; then what they said."""
        ...

    async def close(self) -> None: ...


TranscriberFactory = Callable[[Line], Transcriber]
DisclosureSource = Callable[[Line], DisclosurePlan | None]
ReadinessCheck = Callable[[Line], bool]  # can a new call on this line be served now?
RETRY_AFTER_S = 5  # what a refused caller is told: the engine is usually back by then
PORT_RETIRE_S = 1.0
_SRTP_USE = {
    "off": pj.PJMEDIA_SRTP_DISABLED,
    "optional": pj.PJMEDIA_SRTP_OPTIONAL,
    "required": pj.PJMEDIA_SRTP_MANDATORY,
}


@dataclass
class StreamStats:
    rx_packets: int = 0
    rx_lost: int = 0
    rx_jitter_ms: float = 0.0
    tx_packets: int = 0
    codec: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "rx_packets": self.rx_packets,
            "rx_lost": self.rx_lost,
            "rx_jitter_ms": round(self.rx_jitter_ms, 2),
            "tx_packets": self.tx_packets,
            "codec": self.codec,
        }


@dataclass
class Disclosure:
    """A call's disclosure and the consent asked for after it (asyncio side)."""

    plan: DisclosurePlan
    needs: Requirements | None = None  # what the line's and the caller's places require
    task: asyncio.Task[None] | None = None
    consent: ConsentRun | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    notice: Notice | None = None  # the notice playing, or played last
    started_ns: int = 0
    ended_ns: int = 0  # its last frame went out (0: not yet)
    reported: bool = False
    recording_disclosed: bool = False  # a notice covering recording was heard to its end
    listening: asyncio.Task[None] | None = None  # hearing a spoken answer
    listen_error: str = ""  # why a spoken answer could not be heard
    playing: bool = False  # a notice is going out
    cut_by: str = ""  # what cut the notice short (a line that allows barge-in): speech, dtmf
    talked_over: int = 0  # times the caller spoke during the notice (it played on)
    heard_ms: int = 0  # how much of the notice went out

    def recording_refused(self, decision: Decision) -> str | None:
        """Why this call may not be recorded, by its places' rules; None: it may be."""
        return (self.needs or NO_RULES).recording_allowed(
            notice_played=self.recording_disclosed,
            consent=decision.consent,
            method=decision.method,
        )


@dataclass
class ActiveCall:
    """A call's record in the registry. pj_*, legs and links belong to the pjsua2 thread."""

    call_id: str
    line: Line
    pj_call: Any
    caller_uri: str = ""  # the From URI: the caller's number gives their place's rules
    started_mono: float = field(default_factory=time.monotonic)
    answered_mono: float | None = None
    state: CallState = field(default_factory=CallState)
    legs: dict[Leg, Any] = field(default_factory=dict)  # each leg's conference-bridge media
    links: set[Connection] = field(default_factory=set)  # connections in place
    port: MediaPort | None = None  # the agent's leg
    prompt_port: MediaPort | None = None  # the prompt player's leg
    prompts: Playout | None = None
    rx_ready: asyncio.Event | None = None
    prompt_rx_ready: asyncio.Event | None = None  # a line that hears spoken consent
    bridge: CallBridge | None = None
    stats: StreamStats = field(default_factory=StreamStats)
    rtp_watch: RtpInactivity | None = None
    end_reason: str | None = None
    ended: bool = False  # the pjsua2 thread saw it disconnect
    disclosure: Disclosure | None = None
    control: asyncio.Task[None] | None = None  # the call's actions, carried out in order
    # pjsua2 thread: the supervisor's leg, a call to their phone or their browser tab
    supervisor_call: Any = None
    briefing: Path | None = None  # pjsua2 thread: the supervisor's summary, until it plays
    tasks: set[asyncio.Task[None]] = field(default_factory=set)  # playout, hold audio
    # The recording (after consent), and a PCI pause: no audio recorded, no words stored.
    recorder: StereoRecorder | None = None
    pci_paused: bool = False
    paused_by: str | None = None  # who paused: dtmf, agent, or the API's actor
    words_withheld: bool = False  # on without consent, on a line that keeps no words
    mix: Mix | None = None  # pjsua2 thread: the mix in place
    taps: dict[int, ListeningPort] = field(default_factory=dict)  # pjsua2 thread, by channel
    tap_links: set[tuple[Leg, int]] = field(default_factory=set)  # pjsua2 thread

    def media_stats(self) -> dict[str, object]:
        data = self.stats.as_dict()
        if self.port is not None:
            counters = self.port.counters()
            data.update(
                frames_in=counters.frames_in,
                frames_out=counters.frames_out,
                underruns=counters.underruns,
                rx_overflow_drops=counters.rx_overflow_drops,
                tx_overflow_drops=counters.tx_overflow_drops,
            )
        return data


def _read_stream_stats(pj_call: Any, into: StreamStats) -> None:
    stat = pj_call.getStreamStat(0)
    rx = stat.rtcp.rxStat
    into.rx_packets = int(rx.pkt)
    into.rx_lost = int(rx.loss)
    into.rx_jitter_ms = float(rx.jitterUsec.mean) / 1000.0
    into.tx_packets = int(stat.rtcp.txStat.pkt)


class _Call(pj.Call):  # type: ignore[misc]
    def __init__(self, worker: MediaWorker, account: Any, pj_call_id: int) -> None:
        super().__init__(account, pj_call_id)
        self.worker = worker
        self.record: ActiveCall | None = None

    def onCallState(self, prm: Any) -> None:  # noqa: N802
        if self.record is not None:
            self.worker._pj_call_state(self.record, self.getInfo())

    def onCallMediaState(self, prm: Any) -> None:  # noqa: N802
        if self.record is not None:
            self.worker._pj_media_state(self.record)

    def onStreamDestroyed(self, prm: Any) -> None:  # noqa: N802
        # The last moment the stream's RTP statistics can be read.
        if self.record is not None:
            try:
                _read_stream_stats(self, self.record.stats)
            except pj.Error:
                pass

    def onDtmfDigit(self, prm: Any) -> None:  # noqa: N802
        if self.record is not None:
            self.worker._pj_dtmf(self.record, str(prm.digit))


class _SupervisorCall(pj.Call):  # type: ignore[misc]
    """The worker's call to a supervisor's phone, joined to one caller's call."""

    def __init__(self, worker: MediaWorker, account: Any, record: ActiveCall) -> None:
        super().__init__(account)
        self.worker = worker
        self.record: ActiveCall | None = record
        self.dropped = False  # hung up by us (a command, the call's end), not by the phone

    def onCallState(self, prm: Any) -> None:  # noqa: N802
        if self.record is not None:
            self.worker._pj_supervisor_state(self.record, self, self.getInfo())

    def onCallMediaState(self, prm: Any) -> None:  # noqa: N802
        if self.record is not None:
            self.worker._pj_supervisor_media(self.record, self)

    def onDtmfDigit(self, prm: Any) -> None:  # noqa: N802
        if self.record is not None:
            self.worker._pj_supervisor_key(self.record, str(prm.digit))


class _Account(pj.Account):  # type: ignore[misc]
    def __init__(self, worker: MediaWorker) -> None:
        super().__init__()
        self.worker = worker

    def onIncomingCall(self, prm: Any) -> None:  # noqa: N802
        self.worker._pj_incoming(self, prm)


class MediaWorker:
    def __init__(
        self,
        config: WorkerConfig,
        *,
        router: LineRouter,
        session_factory: SessionFactory,
        outlet: EventOutlet,
        disclosures: DisclosureSource = lambda _line: None,
        readiness: ReadinessCheck = lambda _line: True,
        recordings: RecordingStore | None = None,
        transcriber: TranscriberFactory | None = None,
    ) -> None:
        self.config = config
        self.transcriber = transcriber  # None: spoken consent is heard as no answer (keys work)
        self.recordings = recordings  # None: this worker records nothing
        self.router = router
        self.session_factory = session_factory
        # Every event leaves through here, the bridge's too: counted for GET /metrics once.
        self.outlet = metered(outlet)
        self.disclosures = disclosures
        self.readiness = readiness
        self.calls: dict[str, ActiveCall] = {}  # the registry, keyed by our own UUID
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pj: PjThread | None = None
        self._account: Any = None
        self._released = asyncio.Event()
        self._retired_ports: list[tuple[float, Any]] = []  # (free after, port or player)
        # Ports of ended calls, kept registered in the bridge for the next calls (by kind).
        self._spare_ports: dict[str, list[MediaPort]] = {
            "agent": [],
            "prompt": [],
            "prompt-listening": [],
            "browser": [],
        }

    # --- pjsua2 thread -------------------------------------------------------------------

    def _pj_started(self, thread: PjThread) -> None:
        cfg = pj.AccountConfig()
        host = self.config.public_host or self.config.sip_host
        cfg.idUri = f"sip:parley@{host}:{thread.bound_port}"
        media = cfg.mediaConfig
        media.transportConfig.port = self.config.rtp_port
        media.transportConfig.portRange = self.config.rtp_port_range
        # Callers send RTP straight here, from wherever they are: listen on the media address
        # and write the address they can reach into SDP. pjmedia latches onto the source of
        # the caller's packets when it differs from their SDP (a caller behind NAT).
        media.transportConfig.boundAddress = self.config.media_host
        if self.config.media_public_host:
            media.transportConfig.publicAddress = self.config.media_public_host
        # SDES keys arrive from the edge over the internal hop, which is not TLS: the edge
        # decides which trunks must use SRTP; the worker accepts what the caller offers.
        media.srtpUse = _SRTP_USE[self.config.srtp]
        media.srtpSecureSignaling = 0
        if self.config.edge_uri:
            # Calls this worker places (to supervisors' phones) go through the edge.
            cfg.sipConfig.proxies.append(f"{self.config.edge_uri};lr")
        account = _Account(self)
        account.create(cfg, True)
        self._account = account
        thread.owned.insert(0, account)

    def _pj_incoming(self, account: Any, prm: Any) -> None:
        call = _Call(self, account, prm.callId)
        try:
            dialled = request_uri_user(str(prm.rdata.wholeMsg))
        except ValueError:
            dialled = ""
        line = self.router.route(dialled)
        call_id = uuid.uuid4().hex
        info = call.getInfo()
        if line is None:
            self._emit(CallEvent(call_id, CallEventKind.REJECTED, {"status": 404, "to": dialled}))
            self._pj_answer(call, 404)
            self._pj_release_later(call)
            return
        if len(self.calls) >= self.config.caller_slots:
            # The other slots are kept for supervisors' legs: the edge tries another worker.
            self._emit(
                CallEvent(
                    call_id,
                    CallEventKind.REJECTED,
                    {"status": 486, "to": dialled, "line": line.name, "reason": "full"},
                )
            )
            self._pj_answer(call, 486)
            self._pj_release_later(call)
            return
        if not self.readiness(line):
            # The line's model cannot take a call yet (loading) or any more (lost): refuse
            # with Retry-After so the edge tries elsewhere and a carrier retries later, rather
            # than answer a call nobody can serve.
            self._emit(
                CallEvent(
                    call_id,
                    CallEventKind.REJECTED,
                    {"status": 503, "to": dialled, "line": line.name, "reason": "not_ready"},
                )
            )
            self._pj_answer(call, 503, retry_after_s=RETRY_AFTER_S)
            self._pj_release_later(call)
            return
        record = ActiveCall(call_id=call_id, line=line, pj_call=call, caller_uri=info.remoteUri)
        call.record = record
        self.calls[call_id] = record
        self._emit(
            CallEvent(
                call_id,
                CallEventKind.STARTED,
                {
                    "from": info.remoteUri,
                    "to": dialled,
                    "line": line.name,
                    "redaction": line.redaction.version,
                    "sip_call_id": info.callIdString,
                    "worker": self.config.index,
                },
            )
        )
        self._pj_answer(call, 200)

    def _pj_answer(self, call: Any, status: int, *, retry_after_s: int | None = None) -> None:
        prm = pj.CallOpParam(True)
        prm.statusCode = status
        if retry_after_s is not None:
            header = pj.SipHeader()
            header.hName = "Retry-After"
            header.hValue = str(retry_after_s)
            prm.txOption.headers.append(header)
        try:
            call.answer(prm)
        except pj.Error as error:
            log.warning("answer failed", extra={"status": status, "error": error.info()})

    def _pj_release_later(self, call: Any) -> None:
        # A rejected call object must outlive its final response; drop it on a later turn.
        assert self.pj is not None
        holder = [call]
        self.pj.post(holder.clear)

    def _pj_media_state(self, record: ActiveCall) -> None:
        if record.port is not None or record.ended:
            return
        call = record.pj_call
        info = call.getInfo()
        for index, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                audio = call.getAudioMedia(index)
                break
        else:
            return
        assert self.loop is not None
        rx_ready = asyncio.Event()
        port = self._pj_port("agent", on_rx=wake_on(self.loop, rx_ready))
        if self._hears_consent(record.line):
            # The prompt player hears the caller through the disclosure: it keeps what it
            # hears, for the spoken answer, rather than drop it.
            record.prompt_rx_ready = asyncio.Event()
            prompt_port = self._pj_port(
                "prompt-listening", on_rx=wake_on(self.loop, record.prompt_rx_ready)
            )
        else:
            prompt_port = self._pj_port("prompt")
        # Connected as the call's mix says (_pj_apply_mix), starting with the first phase.
        record.legs = {Leg.CALLER: audio, Leg.AGENT: port, Leg.PROMPT: prompt_port}
        record.port = port
        record.prompt_port = prompt_port
        record.rx_ready = rx_ready
        try:
            record.stats.codec = str(call.getStreamInfo(0).codecName)
        except pj.Error:
            record.stats.codec = ""
        record.rtp_watch = RtpInactivity(
            self.config.rtp_timeout_s,
            time.monotonic(),
            first_packet_timeout_s=self.config.first_rtp_timeout_s,
        )
        self.loop.call_soon_threadsafe(self._media_up, record)

    def _pj_apply_mix(self, record: ActiveCall, mix: Mix) -> None:
        """Makes the call's conference-bridge connections those of `mix`: stops first, so no
        leg is ever heard by both its old and its new listener."""
        if record.ended or record.pj_call is None:
            return
        record.mix = mix
        stop, start = changes(record.links, mix, record.legs)
        for source, listener in stop:
            self._pj_connect(record, source, record.legs[listener], f"{listener}", start=False)
            record.links.discard((source, listener))
        for source, listener in start:
            if self._pj_connect(record, source, record.legs[listener], f"{listener}", start=True):
                record.links.add((source, listener))
        self._pj_apply_recording(record)

    def _pj_apply_recording(self, record: ActiveCall) -> None:
        """Connects the recording's two ports: the caller to the left one, whatever the caller
        hears (agent, prompts, a supervisor who talks to them) to the right one; nothing while
        paused or not recording."""
        wanted: set[tuple[Leg, int]] = set()
        recorder = record.recorder
        if recorder is not None and not recorder.paused and record.taps and record.mix:
            wanted = {(Leg.CALLER, LEFT)} | {(s, RIGHT) for s in hears(record.mix, Leg.CALLER)}
            wanted = {(source, channel) for source, channel in wanted if source in record.legs}
        for source, channel in record.tap_links - wanted:
            record.tap_links.discard((source, channel))
            if source in record.legs:  # a leg that left the bridge took its connections along
                self._pj_connect(record, source, record.taps[channel], f"rec{channel}", start=False)
        for source, channel in wanted - record.tap_links:
            if self._pj_connect(record, source, record.taps[channel], f"rec{channel}", start=True):
                record.tap_links.add((source, channel))

    def _pj_connect(
        self, record: ActiveCall, source: Leg, listener: Any, name: str, *, start: bool
    ) -> bool:
        """Starts or stops `source` transmitting to `listener`; False (logged) if pjmedia
        refused."""
        media = record.legs[source]
        try:
            if start:
                media.startTransmit(listener)
            else:
                media.stopTransmit(listener)
        except pj.Error as error:
            log.warning(
                "mix change failed",
                extra={"call_id": record.call_id, "start" if start else "stop": f"{source}>{name}",
                       "error": error.info()},
            )  # fmt: skip
            return False
        return True

    def _pj_start_taps(self, record: ActiveCall) -> None:
        if record.ended or record.recorder is None or record.pj_call is None:
            return
        recorder = record.recorder
        for channel in (LEFT, RIGHT):
            tap = ListeningPort(functools.partial(recorder.put, channel))
            tap.create(f"rec{channel}-{record.call_id[:8]}")
            record.taps[channel] = tap
        self._pj_apply_recording(record)

    def _pj_call_state(self, record: ActiveCall, info: Any) -> None:
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and record.answered_mono is None:
            record.answered_mono = time.monotonic()
            self._emit(
                CallEvent(record.call_id, CallEventKind.ANSWERED, {"codec": record.stats.codec})
            )
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED and not record.ended:
            record.ended = True
            self._pj_drop_supervisor(record)
            if record.end_reason is None:
                record.end_reason = _disconnect_reason(info)
            assert self.loop is not None
            self.loop.call_soon_threadsafe(self._end_call, record)

    def _pj_dial_supervisor(self, record: ActiveCall, uri: str) -> None:
        if record.ended or record.pj_call is None:
            return
        old = record.supervisor_call
        if old is not None:
            # The phase machine rings one phone at a time, so this is one called off whose
            # CANCEL is still on its way: it no longer speaks for the call.
            old.record = None
            record.supervisor_call = None
            self._pj_release_later(old)
        supervisor = browser_name(uri)
        if supervisor is not None:
            # Rung by waiting for their browser's audio (browserleg.py); no call slot.
            record.supervisor_call = BrowserLeg(supervisor, time.monotonic(), record)
            self._emit(
                CallEvent(
                    record.call_id,
                    CallEventKind.SUPERVISOR,
                    {"event": "ringing", "browser": supervisor},
                )
            )
            return
        call = _SupervisorCall(self, self._account, record)
        try:
            call.makeCall(uri, pj.CallOpParam(True))
        except pj.Error as error:
            # No free call slot (4 per worker), or a URI pjsip refuses.
            log.warning(
                "supervisor call failed", extra={"call_id": record.call_id, "error": error.info()}
            )
            self._emit(
                CallEvent(
                    record.call_id,
                    CallEventKind.SUPERVISOR,
                    {"event": "failed", "error": error.info()},
                )
            )
            assert self.loop is not None
            self.loop.call_soon_threadsafe(self._supervisor_gone, record, False)
            return
        record.supervisor_call = call
        self._emit(CallEvent(record.call_id, CallEventKind.SUPERVISOR, {"event": "ringing"}))

    def _pj_supervisor_state(self, record: ActiveCall, call: Any, info: Any) -> None:
        assert self.loop is not None
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self._emit(CallEvent(record.call_id, CallEventKind.SUPERVISOR, {"event": "answered"}))
            self.loop.call_soon_threadsafe(self._supervisor_joined, record)
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self._pj_supervisor_ended(record, call, int(info.lastStatusCode))
            self._pj_release_later(call)

    def _pj_supervisor_ended(self, record: ActiveCall, leg: Any, status: int) -> None:
        """The supervisor's leg (a phone's call or a browser leg) is over."""
        assert self.loop is not None
        if record.supervisor_call is leg:
            record.supervisor_call = None
        record.legs.pop(Leg.SUPERVISOR, None)
        record.briefing = None  # it was for this supervisor
        self._pj_end_briefing(record)
        record.links = {link for link in record.links if Leg.SUPERVISOR not in link}
        leg.record = None
        if isinstance(leg, BrowserLeg):
            leg.ended = True
            if leg.port is not None:
                # Out of the bridge first; the port is buried like a call's (_pj_release).
                self._retired_ports.append((time.monotonic() + PORT_RETIRE_S, leg.port))
                leg.port = None
            self.loop.call_soon_threadsafe(leg.close)
        data: dict[str, object] = {
            "event": "ended",
            "status": status,
            "by": "parley" if leg.dropped else "supervisor",
        }
        if isinstance(leg, BrowserLeg):
            data["browser"] = leg.supervisor
        self._emit(CallEvent(record.call_id, CallEventKind.SUPERVISOR, data))
        if not record.ended:
            self.loop.call_soon_threadsafe(self._supervisor_gone, record, leg.dropped)

    def _pj_browser_answered(self, record: ActiveCall, leg: BrowserLeg) -> None:
        """The supervisor's browser connected its audio: the leg joins like an answered phone
        (telephony/browserleg.py)."""
        assert self.loop is not None
        if record.ended or record.supervisor_call is not leg or leg.ended:
            self.loop.call_soon_threadsafe(leg.close)
            return
        port = self._pj_port("browser", on_rx=wake_on(self.loop, leg.rx_ready))
        leg.port = port
        record.legs[Leg.SUPERVISOR] = port
        self.loop.call_soon_threadsafe(leg.ready.set)
        self._emit(
            CallEvent(
                record.call_id,
                CallEventKind.SUPERVISOR,
                {"event": "answered", "browser": leg.supervisor},
            )
        )
        self.loop.call_soon_threadsafe(self._supervisor_joined, record)
        self._pj_start_briefing(record)
        self.loop.call_soon_threadsafe(self._remix, record)

    def _pj_supervisor_media(self, record: ActiveCall, call: Any) -> None:
        if record.ended or Leg.SUPERVISOR in record.legs:
            return
        info = call.getInfo()
        for index, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                record.legs[Leg.SUPERVISOR] = call.getAudioMedia(index)
                break
        else:
            return
        self._pj_start_briefing(record)
        assert self.loop is not None
        # The call's mix may already include the supervisor (its state is the loop's).
        self.loop.call_soon_threadsafe(self._remix, record)

    def _pj_start_briefing(self, record: ActiveCall) -> None:
        """Plays the supervisor's briefing into their ear once both it and their audio are
        here: a file player that only the supervisor hears (telephony/mixing.py)."""
        path = record.briefing
        if record.ended or path is None or Leg.SUPERVISOR not in record.legs:
            return
        self._pj_end_briefing(record)  # a newer briefing replaces one still playing
        record.briefing = None
        player = pj.AudioMediaPlayer()
        try:
            player.createPlayer(str(path), pj.PJMEDIA_FILE_NO_LOOP)
        except pj.Error as error:
            log.warning(
                "briefing not played", extra={"call_id": record.call_id, "error": error.info()}
            )
            return
        record.legs[Leg.BRIEFING] = player
        self._emit(CallEvent(record.call_id, CallEventKind.SUPERVISOR, {"event": "briefing"}))
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._remix, record)

    def _pj_end_briefing(self, record: ActiveCall) -> None:
        player = record.legs.pop(Leg.BRIEFING, None)
        if player is None:
            return
        # Its connections go with it when it is destroyed; like a media port, it leaves the
        # bridge a clock tick or more later, so it is buried with them.
        record.links = {link for link in record.links if Leg.BRIEFING not in link}
        self._retired_ports.append((time.monotonic() + PORT_RETIRE_S, player))

    def _pj_supervisor_key(self, record: ActiveCall, digit: str) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._supervisor_key, record, digit)

    def _pj_drop_supervisor(self, record: ActiveCall) -> None:
        call = record.supervisor_call
        if call is None:
            return
        call.dropped = True
        if isinstance(call, BrowserLeg):
            self._pj_supervisor_ended(record, call, 200 if call.port is not None else 487)
            return
        try:
            call.hangup(pj.CallOpParam(True))
        except pj.Error as error:
            log.warning(
                "supervisor hangup failed",
                extra={"call_id": record.call_id, "error": error.info()},
            )

    def _pj_dtmf(self, record: ActiveCall, digit: str) -> None:
        assert self.loop is not None
        if digit == record.line.pci_pause_key:
            self._emit(CallEvent(record.call_id, CallEventKind.DTMF, {"digit": digit}))
            self.loop.call_soon_threadsafe(self._pci_key, record)
            return  # the pause key is the line's, not the agent's
        if record.pci_paused:
            # A card number keyed in: it reaches the agent, never an event (not even live).
            self._emit(CallEvent(record.call_id, CallEventKind.DTMF, {"masked": True, "pci": True}))
        else:
            self._emit(CallEvent(record.call_id, CallEventKind.DTMF, {"digit": digit}))
        self.loop.call_soon_threadsafe(self._deliver_dtmf, record, digit)

    def _pj_tick(self, now: float) -> None:
        self._pj_bury_ports(now)
        for record in list(self.calls.values()):
            if record.ended:
                continue
            leg = record.supervisor_call
            if (
                isinstance(leg, BrowserLeg)
                and leg.port is None
                and now - leg.rung_mono > browserleg.RING_S
            ):
                log.info("browser leg not answered", extra={"call_id": record.call_id})
                self._pj_supervisor_ended(record, leg, 408)
            if record.answered_mono is None:
                # Answered (200 OK) but never ACKed: a half-open call holding a slot. pjsip
                # would wait 32 s for the ACK; a real caller's ACK takes one round trip.
                if now - record.started_mono > self.config.ack_timeout_s:
                    log.info("no ACK for the answer", extra={"call_id": record.call_id})
                    self._pj_hangup(record, "no_ack", 408)
                continue
            if record.port is None or record.rtp_watch is None:
                continue
            try:
                _read_stream_stats(record.pj_call, record.stats)
            except pj.Error:
                continue
            if record.rtp_watch.observe(record.stats.rx_packets, now):
                reason = "rtp_timeout" if record.rtp_watch.heard else "no_rtp"
                log.info("rtp inactivity timeout", extra={"call_id": record.call_id})
                self._pj_hangup(record, reason, 408)
                continue
            interval = self.config.stats_interval_s
            if interval > 0 and int(now / interval) != int((now - 1.0) / interval):
                self._emit(
                    CallEvent(record.call_id, CallEventKind.MEDIA_STATS, record.media_stats())
                )

    def _hears_consent(self, line: Line) -> bool:
        """Whether the caller is listened to through the disclosure: for a spoken answer, or
        for speech that cuts a notice (a line that allows barge-in)."""
        plan = self.disclosures(line)
        return (
            self.transcriber is not None
            and plan is not None
            and (plan.policy.mode is ConsentMode.SPOKEN or plan.policy.barge_in)
        )

    def _pj_port(self, kind: str, *, on_rx: Callable[[], None] | None = None) -> MediaPort:
        """A media port for a new call: a spare one of that kind, else a new one.

        Ports are reused rather than destroyed: a port's destructor takes it out of the
        conference bridge, which pjmedia does on its clock thread a tick or more later, while
        the port's memory goes at once — under load a frame callback or the removal could then
        reach freed memory (media workers crashed so, once under SIP fuzzing, once at 200 calls).
        A spare port has no connections, so the bridge does not call it; it goes at shutdown.
        """
        spares = self._spare_ports[kind]
        if spares:
            port = spares.pop()
            port.reset(on_rx=on_rx)
            return port
        if kind == "browser":  # a supervisor's browser: its audio arrives over a network
            port = MediaPort(
                on_rx=on_rx,
                kind=kind,
                tx_capacity=browserleg.PLAYOUT_FRAMES,
                jitter_frames=browserleg.JITTER_FRAMES,
            )
        else:
            capacity = 1 if kind == "prompt" else 50  # the prompt player drops what it hears
            port = MediaPort(rx_capacity=capacity, on_rx=on_rx, kind=kind)
        port.create(f"{kind}-{id(port):x}")
        return port

    def _pj_bury_ports(self, now: float) -> None:
        """Frees retired ports (and briefing players) whose time has come and that nothing
        else still holds: a media port goes back to the spares, a player is dropped.

        One still referenced elsewhere (a bridge caught in a reference cycle with its tasks)
        waits: were this the last reference but one, the garbage collector would finalize it
        on whatever thread it ran on, and pjsua2 objects die only here.
        """
        keep = []
        for free_after, port in self._retired_ports:
            # References: this list's tuple, the loop variable, getrefcount's argument.
            if free_after > now or sys.getrefcount(port) > 3:
                keep.append((free_after, port))
            elif isinstance(port, MediaPort):
                self._spare_ports[port.kind].append(port)
        self._retired_ports = keep

    def _pj_hangup(self, record: ActiveCall, reason: str, status: int = 200) -> None:
        if record.ended:
            return
        if record.end_reason is None:
            record.end_reason = reason
        prm = pj.CallOpParam(True)
        prm.statusCode = status
        try:
            record.pj_call.hangup(prm)
        except pj.Error as error:
            log.warning("hangup failed", extra={"call_id": record.call_id, "error": error.info()})
            if not record.pj_call.isActive():
                # pjsip ended the session without a DISCONNECTED reaching us (seen for calls
                # answered over a connection that closed before the ACK): end it here, or it
                # would hold its slot and its bridge forever.
                record.ended = True
                assert self.loop is not None
                self.loop.call_soon_threadsafe(self._end_call, record)

    def _pj_send_dtmf(self, record: ActiveCall, digits: str) -> None:
        if record.ended or record.pj_call is None:
            return
        try:
            record.pj_call.dialDtmf(digits)
        except pj.Error as error:
            log.warning(
                "dtmf send failed", extra={"call_id": record.call_id, "error": error.info()}
            )
            return
        self._emit(CallEvent(record.call_id, CallEventKind.DTMF_SENT, {"digits": digits}))

    def _pj_release(self, record: ActiveCall) -> None:
        # Step 4 of the teardown: the ports leave the conference bridge before the call goes.
        # pjmedia's bridge applies removals on its clock thread, a tick or more later: the
        # port objects live on (disconnected) for a while, so no frame callback can reach a
        # port already freed (a segfault seen under SIP fuzzing).
        for port in (record.port, record.prompt_port, *record.taps.values()):
            if port is not None:
                self._retired_ports.append((time.monotonic() + PORT_RETIRE_S, port))
        record.port = record.prompt_port = None
        record.taps = {}
        record.tap_links = set()
        self._pj_end_briefing(record)
        record.briefing = None
        record.legs = {}
        record.links = set()
        if isinstance(record.supervisor_call, BrowserLeg):
            record.supervisor_call.dropped = True
            self._pj_supervisor_ended(record, record.supervisor_call, 200)
        if record.supervisor_call is not None:
            record.supervisor_call.record = None
            self._pj_release_later(record.supervisor_call)
            record.supervisor_call = None
        record.pj_call.record = None
        record.pj_call = None
        self.calls.pop(record.call_id, None)
        if not self.calls:
            assert self.loop is not None
            self.loop.call_soon_threadsafe(self._released.set)

    def _pj_release_all(self) -> None:
        for record in list(self.calls.values()):
            record.port = record.prompt_port = None
            record.taps = {}
            record.legs = {}
            if isinstance(record.supervisor_call, BrowserLeg):
                assert self.loop is not None
                self.loop.call_soon_threadsafe(record.supervisor_call.close)
            record.supervisor_call = None
            if record.pj_call is not None:
                record.pj_call.record = None
            record.pj_call = None
        self.calls.clear()
        self._retired_ports.clear()  # before libDestroy, like every pjsua2 object
        for spares in self._spare_ports.values():
            spares.clear()
        self._account = None

    def _pj_stopping(self) -> None:
        for record in list(self.calls.values()):
            self._pj_hangup(record, "shutdown", 503)

    # --- asyncio loop --------------------------------------------------------------------

    def _emit(self, event: CallEvent) -> None:
        self.outlet.emit(event)

    def _media_up(self, record: ActiveCall) -> None:
        if record.ended or record.port is None or record.prompt_port is None:
            return
        record.prompts = Playout(record.prompt_port)
        self._background(record, record.prompts.run(), "prompts")
        plan = self.disclosures(record.line)
        if plan is not None:
            needs = plan.requirements(record.line, record.caller_uri)
            record.disclosure = Disclosure(plan, needs=needs)
        self._step(record, phases.media_up(record.state, disclosure=plan is not None))

    def _background(self, record: ActiveCall, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=f"{name}-{record.call_id}")
        record.tasks.add(task)
        task.add_done_callback(record.tasks.discard)

    def _step(self, record: ActiveCall, step: tuple[CallState, list[Action]]) -> None:
        """Moves the call to its next state and carries out the transition's actions after
        those of earlier transitions."""
        state, actions = step
        before, record.state = record.state, state
        # A phone starting or stopping to ring is not a phase (call.supervisor tells of it).
        if replace(state, ringing=False) != replace(before, ringing=False) and state.live:
            self._emit(
                CallEvent(
                    record.call_id,
                    CallEventKind.PHASE,
                    {
                        "phase": state.phase.value,
                        "mode": state.mode.value if state.mode else None,
                        "agent": state.agent.value,
                        "supervisor": state.supervisor,
                    },
                )
            )
        if actions:
            record.control = asyncio.get_running_loop().create_task(
                self._carry_out(record, actions, record.control),
                name=f"control-{record.call_id}",
            )

    async def _carry_out(
        self, record: ActiveCall, actions: list[Action], after: asyncio.Task[None] | None
    ) -> None:
        if after is not None:
            await asyncio.gather(after, return_exceptions=True)
        for action in actions:
            if record.state.phase is phases.Phase.ENDED:
                return
            try:
                await self._act(record, action)
            except Exception as error:  # one action failing must not strand the call
                log.error(
                    "call action failed",
                    extra={
                        "call_id": record.call_id,
                        "action": type(action).__name__,
                        "error": repr(error),
                    },
                )

    async def _act(self, record: ActiveCall, action: Action) -> None:
        match action:
            case phases.ApplyMix(mix):
                assert self.pj is not None
                self.pj.post(lambda: self._pj_apply_mix(record, mix))
            case phases.StartDisclosure():
                assert record.disclosure is not None and record.prompts is not None
                record.disclosure.task = asyncio.get_running_loop().create_task(
                    self._disclose(record, record.disclosure, record.prompts),
                    name=f"disclosure-{record.call_id}",
                )
            case phases.OpenAgent():
                self._open_session(record)
            case phases.DetachAgent(close):
                bridge = record.bridge
                if bridge is not None:
                    if close:
                        record.bridge = None
                        self._background(record, bridge.close(), "close")
                    else:
                        await bridge.detach()
            case phases.ReattachAgent(note):
                if record.bridge is not None:
                    await record.bridge.reattach(note)
            case phases.Instruct(text):
                if record.bridge is not None:
                    await record.bridge.instruct(text)
            case phases.PlayPrompt(prompt, _to, wait, loop):
                await self._play_prompt(record, prompt, wait=wait, loop=loop)
            case phases.StopPrompts():
                if record.prompts is not None:
                    record.prompts.flush(Cause.CONTROL)
            case phases.DialSupervisor(uri):
                assert self.pj is not None
                self.pj.post(lambda: self._pj_dial_supervisor(record, uri))
            case phases.DropSupervisor():
                assert self.pj is not None
                self.pj.post(lambda: self._pj_drop_supervisor(record))
            case phases.EndCall(reason, status):
                assert self.pj is not None
                self.pj.post(lambda: self._pj_hangup(record, reason, status))
            case phases.Transfer(target, reason):
                assert self.pj is not None
                self.pj.post(lambda: self._pj_transfer(record, target, reason))

    async def _play_prompt(
        self, record: ActiveCall, prompt: str, *, wait: bool, loop: bool
    ) -> None:
        player = record.prompts
        if player is None:
            return
        if prompt == "fallback":
            pcm = fallback_prompt()
        elif prompt == "fallback_hold":
            pcm = fallback_prompt(hold=True)
        elif prompt == "hold":
            pcm = hold_audio()
        elif prompt.startswith(control.SPEECH):
            await self._announce(record, player, prompt)
            return
        elif prompt == "goodbye":
            plan = record.disclosure.plan if record.disclosure else None
            if plan is None or plan.goodbye_path is None:
                return
            try:
                pcm = read_pcm(plan.goodbye_path)
            except DisclosureAudioError as error:
                log.warning(
                    "goodbye prompt not played",
                    extra={"call_id": record.call_id, "reason": error.reason},
                )
                return
        else:
            log.warning("unknown prompt", extra={"call_id": record.call_id, "prompt": prompt})
            return
        sound = Sound.HOLD if loop else Sound.PROMPT
        if loop:
            self._background(record, _play_looped(player, prompt, pcm, sound), "hold")
        elif wait:
            await player.play(prompt, pcm, sound)
        elif record.state.phase is phases.Phase.QUEUED:
            self._over_hold(record, player, prompt, pcm, sound)
        else:
            self._background(record, _played(player, prompt, pcm, sound), "prompt")

    async def _announce(self, record: ActiveCall, player: Playout, prompt: str) -> None:
        """Speech for the caller (a queue announcement): on hold, it cuts the hold audio and
        the hold audio starts again after it."""
        try:
            pcm = read_pcm(self._speech(prompt.removeprefix(control.SPEECH)))
        except DisclosureAudioError as error:
            log.warning(
                "announcement not played",
                extra={"call_id": record.call_id, "reason": error.reason},
            )
            return
        if record.state.phase is phases.Phase.QUEUED:
            self._over_hold(record, player, "announcement", pcm, Sound.HOLD)
        else:
            self._background(
                record, _played(player, "announcement", pcm, Sound.HOLD), "announcement"
            )

    def _over_hold(
        self, record: ActiveCall, player: Playout, tag: str, pcm: bytes, sound: Sound
    ) -> None:
        """A prompt for a caller on hold (a queue announcement, the model failure's "please
        call back"): it cuts the hold audio, which starts again after it if they still wait."""
        player.flush(Cause.CONTROL)  # ends the hold loop's current phrase, and the loop
        self._background(record, self._then_hold(record, player, tag, pcm, sound), "announcement")

    async def _then_hold(
        self, record: ActiveCall, player: Playout, tag: str, pcm: bytes, sound: Sound
    ) -> None:
        heard = await player.play(tag, pcm, sound)
        if heard and record.state.phase is phases.Phase.QUEUED:
            await _play_looped(player, "hold", hold_audio(), Sound.HOLD)

    async def _disclose(self, record: ActiveCall, run: Disclosure, player: Playout) -> None:
        """Plays the line's disclosure before the agent is connected, then acts on consent."""
        plan = run.plan
        run.notice = plan.notice
        try:
            pcm = _notice_pcm(plan.notice)
        except DisclosureAudioError as error:
            self._disclosure_not_played(record, run, error)
            return
        second = plan.recording_notice_for(record.line, run.needs)
        second_pcm = self._second_notice(record, second) if second is not None else None
        # The notice that asks is the last: an answer counts from its first frame on.
        consent = run.consent = ConsentRun(plan.policy, asking=second_pcm is None)
        self._listen_for_consent(record, run, consent)
        await _play_notice(run, player, pcm)
        if second is not None and second_pcm is not None:
            # The first notice asks for nothing; the caller's answer follows the second.
            self._emit_disclosure_played(
                record,
                run,
                {
                    "played": True,
                    "start_mono_ns": run.started_ns,
                    "end_mono_ns": run.ended_ns,
                    "interrupted": False,
                    **_cut_short(run),
                    "consent": "not_required",
                    "consent_method": None,
                    "next_step": NextStep.BRIDGE.value,
                },
            )
            run.notice, run.reported = second, False
            consent.asking = True
            await _play_notice(run, player, second_pcm)
        decision = consent.played()
        if decision is None:  # dtmf: the caller has not pressed a key yet
            try:
                await asyncio.wait_for(_decided(run, consent), timeout=plan.policy.timeout_s)
            except TimeoutError:
                pass
            decision = consent.decision or consent.timed_out()
        assert decision is not None
        await self._stop_listening(record, run)
        self._report_disclosure(record, run, decision)
        if decision.next_step is NextStep.BRIDGE:
            if decision.consent != "granted" and not plan.policy.keep_words:
                record.words_withheld = True  # on to the agent; none of its words stored
            refused = run.recording_refused(decision)
            if refused is None:
                self._start_recording(record)
            elif record.line.record_calls:
                self._recording_event(record, "not_allowed", reason=refused)
            self._step(record, phases.consent_given(record.state))
            return
        transfer_to = plan.policy.transfer_to if decision.next_step is NextStep.TRANSFER else None
        self._step(
            record,
            phases.consent_refused(
                record.state,
                reason=f"consent_{decision.consent}",
                transfer_to=transfer_to,
                goodbye=plan.goodbye_path is not None,
            ),
        )

    def _listen_for_consent(self, record: ActiveCall, run: Disclosure, consent: ConsentRun) -> None:
        """Hears the caller's spoken answer (a line with spoken consent) until it decides."""
        if record.prompt_rx_ready is None or self.transcriber is None or run.listening:
            return
        run.listening = asyncio.get_running_loop().create_task(
            self._hear_consent(record, run, consent, self.transcriber(record.line)),
            name=f"consent-{record.call_id}",
        )

    async def _hear_consent(
        self, record: ActiveCall, run: Disclosure, consent: ConsentRun, heard: Transcriber
    ) -> None:
        port, ready = record.prompt_port, record.prompt_rx_ready
        assert port is not None and ready is not None
        try:
            await heard.start()
        except SessionError as error:
            run.listen_error = str(error)
            log.warning(
                "spoken consent cannot be heard; keys still answer",
                extra={"call_id": record.call_id, "error": str(error)},
            )
            return

        async def words() -> None:
            async for text in heard.transcripts():
                if text is None:  # the caller started to speak
                    if run.playing and consent.policy.barge_in:
                        self._cut_notice(record, run, "speech")
                    elif run.playing:
                        run.talked_over += 1
                    continue
                consent.spoken(text)
                run.changed.set()

        reader = asyncio.get_running_loop().create_task(words())
        try:
            port.rx.clear()  # from the notice's first frame
            while consent.decision is None and not reader.done():
                ready.clear()
                while port.rx:
                    pcm, _ = port.rx.popleft()
                    await heard.send_audio(pcm)
                await ready.wait()
        except SessionError as error:
            run.listen_error = str(error)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await heard.close()

    def _cut_notice(self, record: ActiveCall, run: Disclosure, how: str) -> None:
        """The caller barged in on a notice, on a line that allows it: it stops now."""
        if record.prompts is not None and run.playing and not run.cut_by:
            run.cut_by = how
            record.prompts.flush(Cause.CONTROL)

    async def _stop_listening(self, record: ActiveCall, run: Disclosure) -> None:
        task, run.listening = run.listening, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if record.prompt_port is not None:
            record.prompt_port.rx.clear()

    def _second_notice(self, record: ActiveCall, notice: Notice) -> bytes | None:
        """The recording notice's audio; None (logged) when it cannot be played, and then
        the call is recorded only where its places need no notice."""
        try:
            return _notice_pcm(notice)
        except DisclosureAudioError as error:
            log.warning(
                "recording notice not played",
                extra={
                    "call_id": record.call_id,
                    "disclosure": notice.name,
                    "reason": error.reason,
                    "error": str(error),
                },
            )
            return None

    def _disclosure_not_played(
        self, record: ActiveCall, run: Disclosure, error: DisclosureAudioError
    ) -> None:
        plan = run.plan
        refuse = plan.on_missing == "refuse"
        log.warning(
            "disclosure not played",
            extra={
                "call_id": record.call_id,
                "disclosure": plan.name,
                "reason": error.reason,
                "error": str(error),
                "call_refused": refuse,
            },
        )
        self._emit_disclosure_played(
            record,
            run,
            {
                "played": False,
                "reason": error.reason,
                "next_step": NextStep.HANGUP.value if refuse else NextStep.BRIDGE.value,
            },
        )
        if refuse:
            self._step(record, phases.hang_up(record.state, reason="disclosure_unavailable"))
        else:
            self._step(record, phases.consent_given(record.state))

    # --- recording and PCI pause ----------------------------------------------------------

    def _start_recording(self, record: ActiveCall) -> None:
        """Starts the call's recording once the caller consented, if the line records."""
        if self.recordings is None or not record.line.record_calls or record.recorder:
            return
        try:
            recorder = self.recordings.start(record.call_id)
        except OSError as error:
            log.error(
                "recording not started", extra={"call_id": record.call_id, "error": str(error)}
            )
            self._recording_event(record, "failed", reason=f"{type(error).__name__}: {error}")
            return
        record.recorder = recorder
        if record.pci_paused:
            recorder.pause("carried")  # paused before the recording began
        self._recording_event(
            record, "started", file=recorder.path.name, start_mono_ns=recorder.start_ns
        )
        assert self.pj is not None
        self.pj.post(lambda: self._pj_start_taps(record))

    async def _finish_recording(self, record: ActiveCall) -> None:
        recorder, record.recorder = record.recorder, None
        if recorder is None:
            return
        try:
            result = await asyncio.to_thread(recorder.finish)
        except OSError as error:
            log.error(
                "recording not sealed", extra={"call_id": record.call_id, "error": str(error)}
            )
            self._recording_event(record, "failed", reason=f"{type(error).__name__}: {error}")
            return
        self._recording_event(
            record,
            "finished",
            file=result.path.name,
            pcm_sha256=result.pcm_sha256,
            file_sha256=result.file_sha256,
            duration_ms=result.duration_ms,
            pauses=[
                {"start_ms": p.start_ms, "end_ms": p.end_ms, "by": p.by} for p in result.pauses
            ],
        )

    def pci_pause(self, record: ActiveCall, *, by: str) -> bool:
        """Pauses the recording (silence) and the transcript (never stored) while a card
        number is given; False if already paused."""
        if record.pci_paused:
            return False
        record.pci_paused, record.paused_by = True, by
        if record.bridge is not None:
            record.bridge.pci_paused = True
        if record.recorder is not None and record.recorder.pause(by):
            assert self.pj is not None
            self.pj.post(lambda: self._pj_apply_recording(record))
        self._recording_event(record, "paused", by=by)
        return True

    def pci_resume(self, record: ActiveCall, *, by: str) -> bool:
        if not record.pci_paused:
            return False
        record.pci_paused, record.paused_by = False, None
        if record.bridge is not None:
            record.bridge.pci_paused = False
        if record.recorder is not None and record.recorder.resume() is not None:
            assert self.pj is not None
            self.pj.post(lambda: self._pj_apply_recording(record))
        self._recording_event(record, "resumed", by=by)
        return True

    def _agent_collecting(self, record: ActiveCall, collecting: bool) -> None:
        """The agent asks for a card number: paused until it is done with it. A pause that
        someone else started (a key, the API) is theirs to end."""
        if collecting:
            self.pci_pause(record, by="agent")
        elif record.paused_by == "agent":
            self.pci_resume(record, by="agent")

    def _pci_key(self, record: ActiveCall) -> None:
        if record.pci_paused:
            self.pci_resume(record, by="dtmf")
        else:
            self.pci_pause(record, by="dtmf")

    def _recording_event(self, record: ActiveCall, event: str, **data: object) -> None:
        self._emit(CallEvent(record.call_id, CallEventKind.RECORDING, {"event": event, **data}))

    def _report_disclosure(self, record: ActiveCall, run: Disclosure, decision: Decision) -> None:
        if run.reported:
            return
        # Cut short by a hang-up, it ended when the caller left.
        ended_ns = run.ended_ns or time.monotonic_ns()
        self._emit_disclosure_played(
            record,
            run,
            {
                "played": True,
                "start_mono_ns": run.started_ns,
                "end_mono_ns": ended_ns,
                "interrupted": decision.interrupted,
                **_cut_short(run),
                "consent": decision.consent,
                "consent_method": decision.method,
                "next_step": decision.next_step.value,
                **self._answer_words(record, run, decision),
            },
        )

    def _answer_words(
        self, record: ActiveCall, run: Disclosure, decision: Decision
    ) -> dict[str, object]:
        """A spoken answer's words (redacted as any words are), and why none could be heard."""
        words: dict[str, object] = {}
        if decision.said:
            words["answer"] = record.line.redaction.text(decision.said).text
        if run.listen_error:
            words["listen_error"] = run.listen_error
        return words

    def _emit_disclosure_played(
        self, record: ActiveCall, run: Disclosure, outcome: dict[str, object]
    ) -> None:
        """Emits `call.disclosure_played` and marks it reported, so a hang-up does not repeat it."""
        run.reported = True
        notice = run.notice or run.plan.notice
        places = {"jurisdiction": run.needs.as_dict()} if run.needs is not None else {}
        self._emit(
            CallEvent(
                record.call_id,
                CallEventKind.DISCLOSURE_PLAYED,
                {
                    "disclosure": notice.name,
                    "version": notice.version,
                    "sha256": notice.sha256,
                    "covers": sorted(notice.covers),
                    **places,
                    **outcome,
                },
            )
        )

    def _open_session(self, record: ActiveCall) -> None:
        if record.ended or record.port is None or record.rx_ready is None:
            return
        try:
            session = self.session_factory(record.line)
        except SessionError as error:  # the adapter cannot start (its API key missing)
            self._session_failed(record, str(error))
            return
        except Exception as error:
            self._session_failed(record, type(error).__name__)
            return
        record.bridge = CallBridge(
            call_id=record.call_id,
            port=record.port,
            session=session,
            outlet=self.outlet,
            rx_ready=record.rx_ready,
            on_hangup_requested=lambda reason: self.hangup(record.call_id, f"agent:{reason}"),
            on_session_failed=lambda why: self._session_failed(record, why),
            on_send_dtmf=lambda digits: self.send_dtmf(record.call_id, digits),
            redaction=record.line.redaction,
            on_sensitive=lambda collecting: self._agent_collecting(record, collecting),
        )
        record.bridge.pci_paused = record.pci_paused
        record.bridge.words_withheld = record.words_withheld
        asyncio.get_running_loop().create_task(self._run_bridge(record, record.bridge))

    async def _run_bridge(self, record: ActiveCall, bridge: CallBridge) -> None:
        try:
            await bridge.start()
        except (SessionError, OSError) as error:
            self._session_failed(record, str(error))

    def _session_failed(self, record: ActiveCall, why: str) -> None:
        """The model is gone: apologise from a recorded prompt, then end or transfer the call.

        Never dead air: the caller hears the prompt within a frame or two of the failure.
        """
        if not record.state.live or record.state.phase is phases.Phase.FALLBACK:
            return
        self._emit(CallEvent(record.call_id, CallEventKind.SESSION_FAILED, {"error": why}))
        line = record.line
        self._step(
            record,
            phases.session_failed(
                record.state, transfer_to=line.fallback_transfer, queue=line.escalates
            ),
        )

    def _pj_transfer(self, record: ActiveCall, target: str, reason: str) -> None:
        if record.ended or record.pj_call is None:
            return
        try:
            record.pj_call.xfer(target, pj.CallOpParam(True))
        except pj.Error as error:
            log.warning("transfer failed", extra={"call_id": record.call_id, "error": error.info()})
            self._pj_hangup(record, reason)
            return
        record.end_reason = "transferred"
        self._emit(CallEvent(record.call_id, CallEventKind.TRANSFERRED, {"reason": reason}))

    def _remix(self, record: ActiveCall) -> None:
        if record.state.live:
            mix = record.state.mix
            assert self.pj is not None
            self.pj.post(lambda: self._pj_apply_mix(record, mix))

    def _supervisor_joined(self, record: ActiveCall) -> None:
        try:
            self._step(record, phases.supervisor_joined(record.state))
        except NotNow as error:
            log.info(
                "supervisor answered a call that cannot take them",
                extra={"call_id": record.call_id, "why": str(error)},
            )
            assert self.pj is not None
            self.pj.post(lambda: self._pj_drop_supervisor(record))

    def _supervisor_gone(self, record: ActiveCall, dropped: bool) -> None:
        """The supervisor's leg ended: hung up by them (never drops the caller), dropped by
        Parley (the transition that dropped it moved the call on already), or never answered."""
        state = record.state
        if state.supervisor and not dropped:
            self._step(record, phases.supervisor_left(state, then=record.line.supervisor_hangup))
        elif state.ringing and not state.supervisor:
            self._step(record, phases.supervisor_unreached(state))

    def _supervisor_key(self, record: ActiveCall, digit: str) -> None:
        what = phases.SUPERVISOR_KEYS.get(digit)
        if what is None or not record.state.supervisor:
            return
        try:
            if isinstance(what, phases.Mode):
                step = phases.set_mode(record.state, what)
            else:
                step = phases.hand_back(record.state, note=None)
        except NotNow as error:
            log.info("supervisor key refused", extra={"call_id": record.call_id, "why": str(error)})
            return
        self._emit(
            CallEvent(
                record.call_id,
                CallEventKind.COMMAND,
                {"command": "keypad", "actor": "supervisor-phone", "key": digit},
            )
        )
        self._step(record, step)

    def _deliver_dtmf(self, record: ActiveCall, digit: str) -> None:
        to = phases.dtmf_to(record.state)
        if to is DtmfTo.CONSENT:
            run = record.disclosure
            consent = run.consent if run is not None else None
            if consent is not None and consent.phase is not ConsentPhase.DONE:
                consent.digit(digit)  # the consent answer, not for the agent
                assert run is not None
                if consent.policy.barge_in:
                    self._cut_notice(record, run, "dtmf")
                run.changed.set()
        elif to is DtmfTo.AGENT and record.bridge is not None:
            asyncio.get_running_loop().create_task(record.bridge.dtmf(digit))
        # DtmfTo.QUEUE: the call.dtmf event already went up to whoever holds the queue.

    def _end_call(self, record: ActiveCall) -> None:
        asyncio.get_running_loop().create_task(self._finish(record))

    async def _finish(self, record: ActiveCall) -> None:
        record.state, _ = phases.ended(record.state)
        run = record.disclosure
        task = run.task if run is not None else None
        if run is not None and task is not None:
            run.task = None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await self._stop_listening(record, run)
            if run.consent is not None:
                self._report_disclosure(record, run, run.consent.hung_up())
        actions, record.control = record.control, None
        if actions is not None:
            actions.cancel()
        background = list(record.tasks)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, *([actions] if actions else []), return_exceptions=True)
        record.prompts = None
        if record.bridge is not None:
            await record.bridge.close()
            record.bridge = None
        await self._finish_recording(record)
        now = time.monotonic()
        self._emit(
            CallEvent(
                record.call_id,
                CallEventKind.ENDED,
                {
                    "reason": record.end_reason or "unknown",
                    "duration_s": round(now - record.started_mono, 3),
                    "talk_s": round(now - record.answered_mono, 3) if record.answered_mono else 0,
                    "media": record.media_stats(),
                },
            )
        )
        assert self.pj is not None
        self.pj.post(lambda: self._pj_release(record))

    async def handle_command(self, command: Command) -> Reply:
        """Carries out a command from another process on one of this worker's calls."""
        if (
            isinstance(command, AttachLeg)
            and command.call_id in self.calls
            and not (command.uri and is_browser_uri(command.uri))
        ):
            legs = len(self.calls) + sum(
                1 for r in self.calls.values() if isinstance(r.supervisor_call, _SupervisorCall)
            )
            if legs >= self.config.max_calls:
                return Reply.failure(
                    command.command_id,
                    f"media worker {self.config.index} has all its {self.config.max_calls} "
                    "call slots in use: no slot for a supervisor's leg (keep one with "
                    "sip.supervisor_slots: 1)",
                )
        if isinstance(command, PlayPrompt) and command.speech and command.to is Leg.SUPERVISOR:
            return self._brief(command, command.speech)
        if isinstance(command, PauseRecording | ResumeRecording):
            return self._pci_command(command)
        try:
            step = control.transition(command)
            self.command(command.call_id, step)
        except KeyError:
            return Reply.failure(
                command.command_id,
                f"media worker {self.config.index} {NOT_HELD} {command.call_id}",
            )
        except NotNow as error:
            return Reply.failure(command.command_id, str(error))
        state = self.calls[command.call_id].state
        data: dict[str, object] = {
            "command": command.TYPE,
            "actor": command.actor,
            "command_id": command.command_id,
        }
        if isinstance(command, PlayPrompt):
            data.update(prompt=command.prompt, speech=command.speech)
        if isinstance(command, AttachLeg):
            data.update(uri=command.uri)  # whose phone (the escalation service names them)
        if not isinstance(command, Status):  # a question, not a command
            self._emit(CallEvent(command.call_id, CallEventKind.COMMAND, data))
        return Reply.success(
            command.command_id,
            {
                "phase": state.phase.value,
                "mode": state.mode.value if state.mode else None,
                "agent": state.agent.value,
                "supervisor": state.supervisor,
                "ringing": state.ringing,
            },
        )

    def _pci_command(self, command: PauseRecording | ResumeRecording) -> Reply:
        """A PCI pause or resume from the API (a supervisor taking a card number, say)."""
        record = self.calls.get(command.call_id)
        if record is None or not record.state.live:
            return Reply.failure(
                command.command_id,
                f"media worker {self.config.index} {NOT_HELD} {command.call_id}",
            )
        by = f"api:{command.actor}"
        if isinstance(command, PauseRecording):
            changed = self.pci_pause(record, by=by)
        else:
            changed = self.pci_resume(record, by=by)
        self._emit(
            CallEvent(
                command.call_id,
                CallEventKind.COMMAND,
                {"command": command.TYPE, "actor": command.actor, "command_id": command.command_id},
            )
        )
        return Reply.success(
            command.command_id,
            {
                "phase": record.state.phase.value,
                "recording": record.recorder is not None,
                "paused": record.pci_paused,
                "changed": changed,
            },
        )

    def _brief(self, command: PlayPrompt, sha256: str) -> Reply:
        """Keeps a briefing for the call's supervisor: it plays into their ear when their phone
        answers (at once if it has), and only they hear it."""
        record = self.calls.get(command.call_id)
        if record is None or not record.state.live:
            return Reply.failure(
                command.command_id,
                f"media worker {self.config.index} {NOT_HELD} {command.call_id}",
            )
        try:
            path = self._speech(sha256)
        except DisclosureAudioError as error:
            return Reply.failure(command.command_id, f"briefing not playable: {error}")
        assert self.pj is not None

        def keep() -> None:
            record.briefing = path
            self._pj_start_briefing(record)

        self.pj.post(keep)
        self._emit(
            CallEvent(
                command.call_id,
                CallEventKind.COMMAND,
                {
                    "command": "brief",
                    "actor": command.actor,
                    "command_id": command.command_id,
                    "speech": sha256,
                },
            )
        )
        return Reply.success(command.command_id, {"phase": record.state.phase.value})

    def _speech(self, sha256: str) -> Path:
        """The WAV of speech made for a call, checked against its SHA-256 (DisclosureAudioError
        says why it cannot be played)."""
        if self.config.speech_dir is None:
            raise DisclosureAudioError("audio_missing", "this worker has no speech folder")
        path = Path(self.config.speech_dir) / f"{sha256}.wav"
        read_pcm(path, sha256=sha256)
        return path

    def _inbox(self) -> Inbox | None:
        if self.config.redis_url:
            return RedisInbox(self.config.redis_url, self.config.index)
        if self.config.inbox_path:
            return UnixInbox(Path(self.config.inbox_path))
        return None

    async def _audio_door(self) -> tuple[asyncio.Server, UnixListener] | None:
        """Listens for supervisors' browser audio (telephony/browserleg.py), if configured."""
        if not self.config.audio_path:
            return None
        try:
            listener = bind_unix(Path(self.config.audio_path))
            server = await asyncio.start_unix_server(self._audio_connection, sock=listener.sock)
        except OSError as error:
            log.error(
                "browser audio socket could not start; supervisors must use phones",
                extra={"worker": self.config.index, "error": str(error)},
            )
            return None
        return server, listener

    async def _audio_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await browserleg.serve_connection(
            reader, writer, self._claim_browser_leg, self._browser_left
        )

    async def _claim_browser_leg(self, call_id: str, supervisor: str) -> BrowserLeg:
        """The browser leg ringing for `supervisor` on `call_id`, now connected; it may start
        ringing a moment after its audio arrives (the command and the audio race)."""
        assert self.pj is not None and self.loop is not None
        record = self.calls.get(call_id)
        if record is None or not record.state.live:
            raise LegRefused(f"media worker {self.config.index} {NOT_HELD} {call_id}", held=False)
        deadline = self.loop.time() + browserleg.CLAIM_WAIT_S
        while True:
            leg = record.supervisor_call
            if isinstance(leg, BrowserLeg) and leg.supervisor == supervisor and not leg.ended:
                break
            if self.loop.time() > deadline or not record.state.live:
                raise LegRefused(
                    f"no browser leg is ringing for {supervisor} on this call: join it first "
                    '(POST /calls/{id}/supervise with phone "browser")',
                    held=True,
                )
            await asyncio.sleep(0.05)
        if leg.connected:
            raise LegRefused(f"{supervisor}'s browser is already on this call", held=True)
        leg.connected = True
        self.pj.post(lambda: self._pj_browser_answered(record, leg))
        return leg

    def _browser_left(self, leg: BrowserLeg) -> None:
        """The supervisor's browser hung up (or its connection broke)."""
        assert self.pj is not None

        def end() -> None:
            record = leg.record
            if record is not None and not leg.ended:
                self._pj_supervisor_ended(record, leg, 200)

        self.pj.post(end)

    def command(
        self, call_id: str, step: Callable[[CallState], tuple[CallState, list[Action]]]
    ) -> None:
        """Applies a call-control transition to a live call, from any asyncio task. Raises
        KeyError for a call this worker does not hold and NotNow for one that cannot take it."""
        record = self.calls.get(call_id)
        if record is None or not record.state.live:
            raise KeyError(call_id)
        self._step(record, step(record.state))

    def send_dtmf(self, call_id: str, digits: str) -> None:
        """Sends RFC 4733 digits to the caller, from any asyncio task."""
        assert self.pj is not None
        record = self.calls.get(call_id)
        if record is not None and digits:
            self.pj.post(lambda: self._pj_send_dtmf(record, digits))

    def hangup(self, call_id: str, reason: str) -> None:
        """Ends a call from any asyncio task."""
        assert self.pj is not None
        record = self.calls.get(call_id)
        if record is not None:
            self.pj.post(lambda: self._pj_hangup(record, reason))

    async def run(self, stop: asyncio.Event) -> None:
        """Serves calls until `stop` is set, then hangs up every call and shuts down in order."""
        self.loop = asyncio.get_running_loop()
        options = EndpointOptions(
            sip_host=self.config.sip_host,
            sip_port=self.config.sip_port,
            # UDP only: the edge reaches workers over UDP, and pjlib's ioqueue holds 64
            # sockets in all; every TCP connection (kept 33 s after its last message) takes
            # one, and running out aborts the process.
            tcp=False,
            public_host=self.config.public_host,
            user_agent=f"Parley worker {self.config.index}",
            max_calls=self.config.max_calls,
            pj_log_level=self.config.pj_log_level,
            sip_t1_ms=self.config.sip_t1_ms,
        )
        self.pj = PjThread(
            options,
            on_started=self._pj_started,
            on_tick=self._pj_tick,
            on_stopping=self._pj_stopping,
            on_release=self._pj_release_all,
            active_calls=lambda: len(self.calls),
        )
        self.pj.start()
        await asyncio.to_thread(self.pj.ready.wait)
        if self.pj.startup_error is not None:
            raise RuntimeError(
                f"media worker {self.config.index} could not start SIP on "
                f"{self.config.sip_host}:{self.config.sip_port}: {self.pj.startup_error}"
            ) from self.pj.startup_error
        # A safety net: should Python's GC ever finalize a pjsua2 object on this thread, pjlib
        # must know the thread. Ownership rules keep destruction on the pjsua2 thread.
        self.pj.endpoint.libRegisterThread("asyncio")
        inbox = self._inbox()
        if inbox is not None:
            try:
                await inbox.start(self.handle_command)
            except OSError as error:
                # Calls are still answered; only commands (escalation, supervisors) cannot
                # reach them. Loud, so the operator fixes the run directory.
                log.error(
                    "command inbox could not start; calls cannot be commanded",
                    extra={"worker": self.config.index, "error": str(error)},
                )
                inbox = None
        audio = await self._audio_door()
        log.info(
            "media worker ready", extra={"worker": self.config.index, "port": self.pj.bound_port}
        )
        try:
            await stop.wait()
        finally:
            if inbox is not None:
                await inbox.close()
            if audio is not None:
                server, listener = audio
                server.close()
                listener.close()
        log.info(
            "media worker stopping", extra={"worker": self.config.index, "calls": len(self.calls)}
        )
        if self.calls:
            self._released.clear()
            for call_id in list(self.calls):
                self.hangup(call_id, "shutdown")
            try:
                await asyncio.wait_for(self._released.wait(), timeout=3.0)
            except TimeoutError:
                log.warning("calls still up at shutdown", extra={"calls": len(self.calls)})
        self.pj.stop()
        await asyncio.to_thread(self.pj.finished.wait)


async def _played(player: Playout, tag: str, pcm: bytes, sound: Sound) -> None:
    await player.play(tag, pcm, sound)


async def _play_looped(player: Playout, tag: str, pcm: bytes, sound: Sound) -> None:
    """Hold audio: again and again until call control cuts it."""
    while await player.play(tag, pcm, sound):
        pass


def _notice_pcm(notice: Notice) -> bytes:
    if notice.audio_path is None or notice.sha256 is None:
        raise DisclosureAudioError("no_version", f"disclosure {notice.name} has no version")
    return _verified_pcm(notice.audio_path, notice.sha256)


@functools.lru_cache(maxsize=32)
def _verified_pcm(path: Path, sha256: str) -> bytes:
    """A notice version's audio, read and checked against its hash once per worker (not on
    every call's event loop); a file that fails the check is read again next time."""
    return read_pcm(path, sha256=sha256)


async def _play_notice(run: Disclosure, player: Playout, pcm: bytes) -> None:
    run.started_ns, run.ended_ns = time.monotonic_ns(), 0
    run.cut_by, run.talked_over, run.playing = "", 0, True
    try:
        heard = await player.play("disclosure", pcm)
    finally:
        run.playing = False
    run.ended_ns = time.monotonic_ns()
    run.heard_ms = len(pcm) // 32 if heard else (run.ended_ns - run.started_ns) // 1_000_000
    # A notice cut short disclosed nothing the rules count on.
    if heard and run.notice is not None and "recording" in run.notice.covers:
        run.recording_disclosed = True


def _cut_short(run: Disclosure) -> dict[str, object]:
    """How the caller interrupted the notice: cut it (`barged_in`, with how much they heard)
    or talked over it while it played on (`talked_over`)."""
    if run.cut_by:
        return {"barged_in": run.cut_by, "heard_ms": run.heard_ms}
    return {"talked_over": run.talked_over} if run.talked_over else {}


async def _decided(run: Disclosure, consent: ConsentRun) -> None:
    while consent.decision is None:
        run.changed.clear()
        await run.changed.wait()


def _disconnect_reason(info: Any) -> str:
    code = int(info.lastStatusCode)
    if code in (200, 0):
        return "hangup"
    return f"sip_{code}"


def serve(
    config: WorkerConfig,
    *,
    router: LineRouter,
    session_factory: SessionFactory,
    outlet: EventOutlet,
    disclosures: DisclosureSource = lambda _line: None,
    readiness: ReadinessCheck = lambda _line: True,
    background: Callable[[asyncio.Event], Coroutine[Any, Any, None]] | None = None,
    recordings: RecordingStore | None = None,
    transcriber: TranscriberFactory | None = None,
) -> None:
    """Runs a media worker in this process until SIGINT or SIGTERM.

    `background` runs beside the worker until the stop (the readiness probes).
    """

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        worker = MediaWorker(
            config,
            router=router,
            session_factory=session_factory,
            outlet=outlet,
            disclosures=disclosures,
            readiness=readiness,
            recordings=recordings,
            transcriber=transcriber,
        )
        helper = None if background is None else loop.create_task(background(stop))
        try:
            await worker.run(stop)
        finally:
            if helper is not None:
                helper.cancel()
                await asyncio.gather(helper, return_exceptions=True)

    try:
        asyncio.run(main())
    finally:
        outlet.close()
