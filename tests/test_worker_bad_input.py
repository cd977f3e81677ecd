"""Bad input at a media worker: it answers clearly, never crashes, and keeps taking calls."""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

import pytest

from telephony.events import CallEvent, CallEventKind
from telephony.sipprobe import options_ping, status_code
from tests.support import PlatformConfig, Running, chirp_noise, dial, start_worker, write_wav

pytestmark = pytest.mark.sip


def _invite(port: int, local_port: int, user: str, sdp: str) -> bytes:
    return (
        f"INVITE sip:{user}@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:tester@127.0.0.1>;tag={uuid.uuid4().hex[:8]}\r\n"
        f"To: <sip:{user}@127.0.0.1>\r\n"
        f"Call-ID: {uuid.uuid4().hex}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:tester@127.0.0.1:{local_port}>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()


def _final_response(port: int, user: str, sdp: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(3.0)
        sock.sendto(_invite(port, sock.getsockname()[1], user, sdp), ("127.0.0.1", port))
        while True:
            data, _ = sock.recvfrom(65535)
            code = status_code(data)
            if code >= 200:
                return code


OPUS_ONLY_SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 111 98\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:98 iLBC/8000\r\n"
)


def test_unsupported_codecs_get_488(worker: Running, worker_config: PlatformConfig) -> None:
    assert _final_response(worker_config.worker_base_port, "100", OPUS_ONLY_SDP) == 488
    assert worker.proc.poll() is None


def test_garbage_on_sip_port_does_not_crash(
    worker: Running, worker_config: PlatformConfig, tmp: Path
) -> None:
    port = worker_config.worker_base_port
    junk = [
        os.urandom(512),
        b"INVITE\r\n\r\n",
        b"SIP/2.0 200 OK\r\n\r\n",
        b"INVITE sip:100@127.0.0.1 SIP/2.0\r\nContent-Length: 99999\r\n\r\nv=0",
        b"OPTIONS sip:x SIP/2.0\r\nVia: nonsense\r\nCSeq: banana\r\n\r\n",
        b"\x00" * 3000,
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for datagram in junk * 20:
            sock.sendto(datagram, ("127.0.0.1", port))
    # Workers take SIP over UDP only (the edge's hop): a TCP connection is refused outright.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    time.sleep(0.5)
    assert worker.proc.poll() is None
    assert options_ping("127.0.0.1", port) == 200
    [result] = dial(f"sip:100@127.0.0.1:{port}", tmp, play=write_wav(tmp / "a.wav", chirp_noise(1)))
    assert result["answered"]


def test_garbage_rtp_during_a_call_is_survived(
    worker: Running, worker_config: PlatformConfig, tmp: Path
) -> None:
    play = write_wav(tmp / "a.wav", chirp_noise(3.0))
    proc = dial(
        f"sip:100@127.0.0.1:{worker_config.worker_base_port}",
        tmp,
        play=play,
        hold=0.5,
        background=True,
    )
    time.sleep(1.5)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(5):
            for port in range(worker_config.rtp_base_port, worker_config.rtp_base_port + 40):
                sock.sendto(os.urandom(172), ("127.0.0.1", port))
                sock.sendto(b"\x80" + os.urandom(11), ("127.0.0.1", port))
    proc.wait(30)
    assert worker.proc.poll() is None
    [result] = dial(f"sip:100@127.0.0.1:{worker_config.worker_base_port}", tmp, name="after")
    assert result["answered"]


def test_caller_vanishing_without_bye_times_out(
    worker: Running, worker_config: PlatformConfig, tmp: Path
) -> None:
    before = {e.call_id for e in worker_config.events() if e.kind is CallEventKind.STARTED}
    [result] = dial(
        f"sip:100@127.0.0.1:{worker_config.worker_base_port}", tmp, hold=0.5, no_bye=True
    )
    assert result["answered"]
    [call_id] = [
        e.call_id
        for e in worker_config.events()
        if e.kind is CallEventKind.STARTED and e.call_id not in before
    ]
    deadline = time.monotonic() + 25  # the test config's inactivity timeout is 12 s
    ended: list[CallEvent] = []
    while time.monotonic() < deadline and not ended:
        time.sleep(0.5)
        ended = [
            e
            for e in worker_config.events()
            if e.kind is CallEventKind.ENDED and e.call_id == call_id
        ]
    assert ended, "the abandoned call was never torn down:\n" + "\n".join(
        [str(e) for e in worker_config.events() if e.call_id == call_id] + [worker.log()[-4000:]]
    )
    assert ended[0].data["reason"] == "rtp_timeout"


def test_unknown_number_gets_404_without_default_line(tmp: Path) -> None:
    config = PlatformConfig(tmp, default_line=None)
    worker = start_worker(config)
    try:
        sdp = OPUS_ONLY_SDP.replace("111 98", "0").replace("opus/48000/2", "PCMU/8000")
        assert _final_response(config.worker_base_port, "999", sdp) == 404
        [result] = dial(f"sip:100@127.0.0.1:{config.worker_base_port}", tmp)
        assert result["answered"]
    finally:
        assert worker.stop() == 0


def test_shutdown_with_live_calls_exits_cleanly(tmp: Path) -> None:
    config = PlatformConfig(tmp)
    worker = start_worker(config)
    proc = dial(
        f"sip:100@127.0.0.1:{config.worker_base_port}",
        tmp,
        play=write_wav(tmp / "a.wav", chirp_noise(8.0)),
        count=3,
        background=True,
    )
    time.sleep(2.0)
    started = time.monotonic()
    code = worker.stop(timeout=10)
    assert code == 0, worker.log()[-3000:]
    assert time.monotonic() - started < 8
    assert "Assertion" not in worker.log() and "Segmentation" not in worker.log()
    proc.wait(20)
    ended = [e for e in config.events() if e.kind is CallEventKind.ENDED]
    assert len(ended) == 3
    assert {e.data["reason"] for e in ended} == {"shutdown"}
