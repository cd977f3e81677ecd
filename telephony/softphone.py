"""A softphone: places calls from its own process, plays audio, records, sends DTMF.

`parley dial` wraps it for people trying Parley without a phone; the tests use it as the
caller. Like a media worker, it answers to the 4-calls-per-process limit of pjsua2.
"""

from __future__ import annotations

import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pjsua2 as pj

from agent.session import SAMPLE_RATE
from telephony.mediaport import MediaPort
from telephony.phonemedia import (
    LegMedia,
    collect_received,
    connect_audio,
    read_stream_info,
    read_stream_stat,
)
from telephony.pjthread import OFFERED_CODECS, EndpointOptions, PjThread
from telephony.rtpwatch import RtpInactivity

CODEC_CHOICES = {"g722": "G722/16000/1", "pcmu": "PCMU/8000/1", "pcma": "PCMA/8000/1"}
SRTP_USE = {
    "off": pj.PJMEDIA_SRTP_DISABLED,
    "optional": pj.PJMEDIA_SRTP_OPTIONAL,
    "required": pj.PJMEDIA_SRTP_MANDATORY,
}


class DialError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class DialPlan:
    uri: str
    play_pcm: bytes = b""
    dtmf: str = ""
    dtmf_at_s: float = 0.5  # after answer
    keys: tuple[tuple[float, str], ...] = ()  # more presses: (seconds after answer, digits)
    hold_s: float = 2.0  # how long to stay on after the audio finished
    max_s: float = 60.0
    count: int = 1
    codecs: tuple[str, ...] = OFFERED_CODECS
    hangup: bool = True  # False: vanish without BYE (to test the far end's inactivity timer)
    rtp_timeout_s: float = 15.0  # hang up when the far end sends no RTP for this long
    bind_host: str = "127.0.0.1"  # the caller's own address (SIP and RTP)
    media_public_host: str | None = None  # written into SDP instead (a NAT's outside)
    tls: bool = False  # reach sips:/transport=tls URIs
    srtp: str = "off"  # off, optional or required (SDES)
    username: str | None = None  # digest credentials for a trunk that asks for them
    caller: str = "parley-dial"  # the From user: a calling number ("+14155550123") or a name
    password: str | None = None


@dataclass
class DialResult(LegMedia):
    index: int
    status_code: int = 0
    reason: str = ""
    answered: bool = False
    placed_mono_ns: int = 0  # the INVITE went out
    answered_mono_ns: int = 0
    ended_mono_ns: int = 0
    dtmf_sent_mono_ns: int = 0
    dtmf_received: str = ""
    jbuf_avg_delay_ms: float = 0.0  # the receive jitter buffer's mean delay (pjmedia)
    remote_rtp: str = ""  # where the far end asked for RTP (its SDP c= and m= port)

    def summary(self) -> dict[str, object]:
        return {
            "index": self.index,
            "status_code": self.status_code,
            "reason": self.reason,
            "answered": self.answered,
            "codec": self.codec,
            "placed_mono_ns": self.placed_mono_ns,
            "answered_mono_ns": self.answered_mono_ns,
            "ended_mono_ns": self.ended_mono_ns,
            "dtmf_sent_mono_ns": self.dtmf_sent_mono_ns,
            "dtmf_received": self.dtmf_received,
            **self.media_summary(),
            "jbuf_avg_delay_ms": round(self.jbuf_avg_delay_ms, 1),
            "remote_rtp": self.remote_rtp,
            "srtp": self.srtp,
        }


def load_wav_16k(path: Path) -> bytes:
    """A WAV file as 16 kHz mono PCM16 (resampled and downmixed when needed)."""
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as error:
        raise DialError(f"{path}: not a PCM WAV file ({error})") from error
    if width != 2:
        raise DialError(f"{path}: need 16-bit PCM, got {8 * width}-bit")
    samples = np.frombuffer(raw, dtype="<i2").reshape(-1, channels).mean(axis=1)
    if rate != SAMPLE_RATE:
        n_out = int(len(samples) * SAMPLE_RATE / rate)
        samples = np.interp(
            np.linspace(0, len(samples) - 1, n_out), np.arange(len(samples)), samples
        )
    return bytes(np.clip(samples, -32768, 32767).astype("<i2").tobytes())


def save_wav_16k(path: Path, pcm: bytes) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm)


class _Leg:
    def __init__(self, index: int) -> None:
        self.result = DialResult(index)
        self.call: Any = None
        self.port: MediaPort | None = None
        self.answered_at = 0.0
        self.play_done_at: float | None = None
        self.dtmf_sent = False
        self.keys_left: list[tuple[float, str]] = []
        self.done = False
        self.rtp_watch: RtpInactivity | None = None
        self.next_stats_at = 0.0
        self.rtp_timed_out = False


class _DialCall(pj.Call):  # type: ignore[misc]
    def __init__(self, phone: Softphone, leg: _Leg, account: Any) -> None:
        super().__init__(account)
        self.phone = phone
        self.leg = leg

    def onCallState(self, prm: Any) -> None:  # noqa: N802
        self.phone._state(self.leg, self.getInfo())

    def onCallMediaState(self, prm: Any) -> None:  # noqa: N802
        self.phone._media(self.leg)

    def onStreamDestroyed(self, prm: Any) -> None:  # noqa: N802
        self.phone._read_stats(self.leg)

    def onDtmfDigit(self, prm: Any) -> None:  # noqa: N802
        self.leg.result.dtmf_received += str(prm.digit)


class Softphone:
    def __init__(self, plan: DialPlan) -> None:
        if not 1 <= plan.count <= 4:
            raise DialError("a softphone process places 1 to 4 calls (pjsua2's per-process limit)")
        self.plan = plan
        self.legs = [_Leg(i) for i in range(plan.count)]
        self._done = threading.Event()
        self._account: Any = None
        self._deadline = 0.0
        self._thread = PjThread(
            EndpointOptions(
                sip_host=plan.bind_host,
                sip_port=0,
                tcp=False,
                tls=plan.tls,
                user_agent="Parley softphone",
                codecs=plan.codecs,
            ),
            on_started=self._started,
            on_tick=self._tick,
            on_release=self._release,
            active_calls=self._active_calls,
            tick_interval_s=0.02,
            name="softphone",
        )

    def run(self) -> list[DialResult]:
        self._deadline = time.monotonic() + self.plan.max_s
        self._thread.start()
        self._thread.ready.wait()
        if self._thread.startup_error is not None:
            raise DialError(f"softphone could not start: {self._thread.startup_error}")
        self._done.wait(self.plan.max_s + 5)
        return [leg.result for leg in self.legs]

    def close(self) -> None:
        """Shuts pjsua2 down in order (hang up, release, libDestroy)."""
        self._thread.stop()
        self._thread.finished.wait(10)

    # --- pjsua2 thread -------------------------------------------------------------------

    def _started(self, thread: PjThread) -> None:
        plan = self.plan
        cfg = pj.AccountConfig()
        cfg.idUri = f"sip:{plan.caller}@{plan.bind_host}:{thread.bound_port}"
        # Several softphone processes run at once in tests and load runs; each must pick its
        # own RTP ports, or two processes would share (and steal) the default range.
        media = cfg.mediaConfig
        media.transportConfig.randomizePort = True
        media.transportConfig.boundAddress = plan.bind_host
        if plan.media_public_host:
            media.transportConfig.publicAddress = plan.media_public_host
        media.srtpUse = SRTP_USE[plan.srtp]
        media.srtpSecureSignaling = 0
        if plan.username is not None:
            cfg.sipConfig.authCreds.append(
                pj.AuthCredInfo("digest", "*", plan.username, 0, plan.password or "")
            )
        account = pj.Account()
        account.create(cfg, True)
        self._account = account
        thread.owned.insert(0, account)
        for leg in self.legs:
            call = _DialCall(self, leg, account)
            leg.call = call
            leg.result.placed_mono_ns = time.monotonic_ns()
            try:
                call.makeCall(self.plan.uri, pj.CallOpParam(True))
            except pj.Error as error:
                leg.result.reason = f"could not place call: {error.info()}"
                leg.done = True
        self._check_done()

    def _media(self, leg: _Leg) -> None:
        if leg.port is not None:
            return
        leg.port = connect_audio(
            leg.call, name=f"dial-{leg.result.index}", source="caller", pcm=self.plan.play_pcm
        )
        if leg.port is None:
            return
        stream = read_stream_info(leg.call, leg.result)
        if stream is not None:
            leg.result.remote_rtp = str(stream.remoteRtpAddress)

    def _state(self, leg: _Leg, info: Any) -> None:
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and not leg.result.answered:
            leg.result.answered = True
            leg.result.answered_mono_ns = time.monotonic_ns()
            leg.answered_at = time.monotonic()
            leg.keys_left = list(self.plan.keys)
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED and not leg.done:
            leg.done = True
            leg.result.status_code = int(info.lastStatusCode)
            leg.result.reason = "rtp_timeout" if leg.rtp_timed_out else str(info.lastReason)
            leg.result.ended_mono_ns = time.monotonic_ns()
            self._collect(leg)
            self._check_done()

    def _read_stats(self, leg: _Leg) -> bool:
        stat = read_stream_stat(leg.call, leg.result)
        if stat is None:
            return False
        leg.result.jbuf_avg_delay_ms = float(stat.jbuf.avgDelayMsec)
        return True

    def _collect(self, leg: _Leg) -> None:
        collect_received(leg.port, leg.result)

    def _check_rtp(self, leg: _Leg, now: float) -> None:
        if now < leg.next_stats_at:
            return
        leg.next_stats_at = now + 0.5
        if not self._read_stats(leg) or leg.port is None:
            return
        if leg.rtp_watch is None:
            leg.rtp_watch = RtpInactivity(self.plan.rtp_timeout_s, now)
        if leg.rtp_watch.observe(leg.result.rx_packets, now):
            leg.rtp_timed_out = True
            self._end(leg)

    def _tick(self, now: float) -> None:
        for leg in self.legs:
            if leg.done or not leg.result.answered:
                continue
            self._check_rtp(leg, now)
            if leg.done:
                continue
            since = now - leg.answered_at
            while leg.keys_left and since >= leg.keys_left[0][0]:
                leg.call.dialDtmf(leg.keys_left.pop(0)[1])
            if self.plan.dtmf and not leg.dtmf_sent and since >= self.plan.dtmf_at_s:
                leg.dtmf_sent = True
                leg.result.dtmf_sent_mono_ns = time.monotonic_ns()
                leg.call.dialDtmf(self.plan.dtmf)
            if leg.play_done_at is None and leg.port is not None and not leg.port.tx:
                leg.play_done_at = now
            if leg.play_done_at is not None and now - leg.play_done_at >= self.plan.hold_s:
                self._end(leg)
        if now >= self._deadline:
            for leg in self.legs:
                if not leg.done:
                    self._end(leg)
        self._check_done()

    def _end(self, leg: _Leg) -> None:
        if leg.done:
            return
        if not self.plan.hangup:
            # Vanish: stop sending media and never say BYE.
            self._read_stats(leg)
            leg.done = True
            leg.result.reason = "abandoned without BYE"
            leg.result.ended_mono_ns = time.monotonic_ns()
            self._collect(leg)
            return
        try:
            leg.call.hangup(pj.CallOpParam(True))
        except pj.Error:
            leg.done = True
            self._collect(leg)

    def _active_calls(self) -> int:
        return sum(1 for leg in self.legs if leg.call is not None and leg.call.isActive())

    def _release(self) -> None:
        for leg in self.legs:
            if not leg.done:
                self._collect(leg)
            leg.port = None
            leg.call = None
        self._thread.owned.clear()
        self._account = None

    def _check_done(self) -> None:
        if all(leg.done for leg in self.legs):
            self._done.set()


def dial(plan: DialPlan) -> list[DialResult]:
    phone = Softphone(plan)
    results = phone.run()
    if plan.hangup:
        phone.close()
    return results
