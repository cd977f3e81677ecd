"""A phone leg's audio and RTP figures, shared by Parley's own phones.

The softphone (`parley dial`) and the desk phone (`parley phone`) each hold one call leg a
time per slot: both wire its audio to a MediaPort that plays a prepared clip and records what
arrives with per-frame arrival times, and both report the same stream facts and statistics.
These run on the pjsua2 thread, called from the phones' callbacks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pjsua2 as pj

from agent.session import FRAME_BYTES
from telephony.mediaport import MediaPort

KEYPAD = frozenset("0123456789*#ABCD")  # the RFC 4733 DTMF events


def parse_keys(text: str) -> tuple[tuple[float, str], ...]:
    """'2.5:4,6:5' -> ((2.5, '4'), (6.0, '5')): digits to press, seconds after answering."""
    presses: list[tuple[float, str]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        at_text, colon, digits = item.partition(":")
        try:
            at = float(at_text) if colon else math.nan
        except ValueError:
            at = math.nan
        if math.isnan(at):
            raise ValueError(f"key press {item!r}: expected SECONDS:DIGITS, e.g. 2.5:4")
        presses.append((at, digits.strip().upper()))
    check_keys(presses)
    return tuple(sorted(presses))


def check_keys(presses: list[tuple[float, str]] | tuple[tuple[float, str], ...]) -> None:
    for at, digits in presses:
        if not (math.isfinite(at) and at >= 0):
            raise ValueError(f"key press at {at}: seconds after answering must be 0 or more")
        if not digits or not set(digits) <= KEYPAD:
            raise ValueError(f"key press {digits!r}: digits are 0-9, *, # and A-D")


_SRTP_PROTOS = (pj.PJMEDIA_TP_PROTO_RTP_SAVP, pj.PJMEDIA_TP_PROTO_RTP_SAVPF)


@dataclass(kw_only=True)
class LegMedia:
    """What a leg received and how its RTP went; a phone's call result extends it."""

    codec: str = ""
    srtp: bool = False  # the media was RTP/SAVP
    received: list[tuple[bytes, int]] = field(default_factory=list)  # (20 ms pcm, arrival ns)
    rx_packets: int = 0
    rx_lost: int = 0
    rx_jitter_ms: float = 0.0
    tx_packets: int = 0

    def received_pcm(self) -> bytes:
        return b"".join(pcm for pcm, _ in self.received)

    def media_summary(self) -> dict[str, object]:
        return {
            "frames_received": len(self.received),
            "first_frame_mono_ns": self.received[0][1] if self.received else 0,
            "rx_packets": self.rx_packets,
            "rx_lost": self.rx_lost,
            "rx_jitter_ms": round(self.rx_jitter_ms, 2),
            "tx_packets": self.tx_packets,
        }


def connect_audio(call: Any, *, name: str, source: str, pcm: bytes) -> MediaPort | None:
    """Wires the call's active audio to a new port that plays `pcm` (whole 20 ms frames) and
    records everything it receives; None while the call has no active audio yet."""
    info = call.getInfo()
    for index, media in enumerate(info.media):
        if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
            audio = call.getAudioMedia(index)
            break
    else:
        return None
    whole = len(pcm) - len(pcm) % FRAME_BYTES
    port = MediaPort(rx_capacity=10_000_000, tx_capacity=whole // FRAME_BYTES + 11)
    port.create(name)
    audio.startTransmit(port)
    port.startTransmit(audio)
    for offset in range(0, whole, FRAME_BYTES):
        port.queue_playout(source, pcm[offset : offset + FRAME_BYTES])
    return port


def loop_back(call: Any) -> None:
    """Sends the call's audio back to where it came from, through the conference bridge (one
    clock tick): an echo, for measuring the far end's round trip."""
    info = call.getInfo()
    for index, media in enumerate(info.media):
        if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
            audio = call.getAudioMedia(index)
            audio.startTransmit(audio)
            return


def read_stream_info(call: Any, media: LegMedia) -> Any | None:
    """Notes the stream's codec and whether it is SRTP; returns pjsua2's StreamInfo."""
    try:
        stream = call.getStreamInfo(0)
    except pj.Error:
        return None
    media.codec = str(stream.codecName)
    media.srtp = int(stream.proto) in _SRTP_PROTOS
    return stream


def read_stream_stat(call: Any, media: LegMedia) -> Any | None:
    """Notes the leg's RTP counts and jitter; returns pjsua2's StreamStat (None: no stream)."""
    try:
        stat = call.getStreamStat(0)
    except pj.Error:
        return None
    rx = stat.rtcp.rxStat
    media.rx_packets = int(rx.pkt)
    media.rx_lost = int(rx.loss)
    media.rx_jitter_ms = float(rx.jitterUsec.mean) / 1000.0
    media.tx_packets = int(stat.rtcp.txStat.pkt)
    return stat


def collect_received(port: MediaPort | None, media: LegMedia) -> None:
    """Copies what the port recorded into the result."""
    if port is None:
        return
    for _ in range(10):
        try:
            # The clock thread may still append while the call tears down.
            media.received = list(port.rx)
            return
        except RuntimeError:
            continue
