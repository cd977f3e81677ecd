"""Calls through the whole platform: `parley run` = Kamailio edge + supervised media workers."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from telephony import sipp
from telephony.events import CallEventKind, media_totals
from telephony.sipprobe import options_ping, wait_answering
from tests.sip_raw import PCMU_SDP, Request, exchange, open_dialog
from tests.support import (
    PlatformConfig,
    Running,
    chirp_noise,
    dial,
    edge_worker_flags,
    finish_dial,
    free_port_block,
    start_platform,
    wait_edge_sees_workers,
    wait_for,
    write_wav,
)

pytestmark = [pytest.mark.sip, pytest.mark.slow, pytest.mark.serial]

CAPACITY = 20  # five workers


@pytest.fixture(scope="module")
def edge_config(tmp_path_factory: pytest.TempPathFactory) -> PlatformConfig:
    return PlatformConfig(tmp_path_factory.mktemp("edge"), capacity=CAPACITY)


@pytest.fixture(scope="module")
def platform(edge_config: PlatformConfig) -> Iterator[Running]:
    running = start_platform(edge_config)
    yield running
    assert running.stop(timeout=30) == 0, running.log()[-3000:]


def _uri(config: PlatformConfig, number: str = "100") -> str:
    return f"sip:{number}@127.0.0.1:{config.sip_port}"


def _dial_many(
    config: PlatformConfig, tmp: Path, calls: int, seconds: float, tag: str
) -> list[dict[str, Any]]:
    """`calls` concurrent calls from ceil(calls/4) softphone processes, each playing audio."""
    play = write_wav(tmp / f"{tag}.wav", chirp_noise(seconds))
    procs = []
    for i in range(0, calls, 4):
        count = min(4, calls - i)
        proc = dial(
            _uri(config), tmp, play=play, count=count, hold=0.5, name=f"{tag}-{i}", background=True
        )
        procs.append((proc, tmp / f"{tag}-{i}.json"))
    results: list[dict[str, Any]] = []
    for proc, out in procs:
        results.extend(finish_dial(proc, out, timeout=seconds + 60))
    return results


def _worker_of_calls(config: PlatformConfig, since_ns: int) -> Counter[int]:
    return Counter(
        int(str(e.data["worker"]))
        for e in config.events()
        if e.kind is CallEventKind.STARTED and e.t_mono_ns >= since_ns
    )


def test_edge_answers_options(platform: Running, edge_config: PlatformConfig) -> None:
    assert options_ping("127.0.0.1", edge_config.sip_port) == 200


def test_twenty_concurrent_calls_spread_over_workers(
    platform: Running, edge_config: PlatformConfig, tmp: Path
) -> None:
    since = time.monotonic_ns()
    results = _dial_many(edge_config, tmp, 20, 4.0, "twenty")
    assert all(r["answered"] for r in results), [r["status_code"] for r in results]
    received = sum(r["rx_packets"] for r in results)
    lost = sum(r["rx_lost"] for r in results)
    assert received > 20 * 4.0 * 50 * 0.9
    assert lost / received < 0.01, f"{lost} of {received} frames lost"
    per_worker = _worker_of_calls(edge_config, since)
    assert sum(per_worker.values()) == 20
    assert len(per_worker) == 5 and max(per_worker.values()) == 4, per_worker
    ended = [
        e for e in edge_config.events() if e.kind is CallEventKind.ENDED and e.t_mono_ns >= since
    ]
    totals = media_totals(ended)
    frames_out, underruns = totals["frames_out"], totals["underruns"]
    assert underruns / frames_out < 0.01, f"{underruns} late frames of {frames_out}"


def test_full_platform_answers_503_then_recovers(
    platform: Running, edge_config: PlatformConfig, tmp: Path
) -> None:
    since = time.monotonic_ns()
    play = write_wav(tmp / "hold.wav", chirp_noise(12.0))
    procs = [
        (
            dial(
                _uri(edge_config), tmp, play=play, count=4, hold=0.2, name=f"f{i}", background=True
            ),
            tmp / f"f{i}.json",
        )
        for i in range(5)
    ]
    _wait_live_calls(edge_config, since, 20)
    [refused] = dial(_uri(edge_config), tmp, name="extra", max_s=10)
    assert not refused["answered"]
    assert refused["status_code"] in (503, 486), refused
    results = [r for proc, out in procs for r in finish_dial(proc, out)]
    assert sum(r["answered"] for r in results) == 20
    [later] = dial(_uri(edge_config), tmp, name="later")
    assert later["answered"], later


def _wait_live_calls(
    config: PlatformConfig, since_ns: int, count: int, timeout: float = 30
) -> None:
    """Waits until `count` calls started after `since_ns` are answered and not yet ended."""
    deadline = time.monotonic() + timeout
    live = 0
    while time.monotonic() < deadline:
        events = [e for e in config.events() if e.t_mono_ns >= since_ns]
        answered = {e.call_id for e in events if e.kind is CallEventKind.ANSWERED}
        ended = {e.call_id for e in events if e.kind is CallEventKind.ENDED}
        live = len(answered - ended)
        if live >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"only {live} of {count} calls came up")


def _pid_of(platform: Running, name: str) -> int:
    pids = re.findall(rf"process started\s+child={name} pid=(\d+)", platform.log())
    assert pids, f"no pid for {name} in the platform log"
    return int(pids[-1])


def test_killed_worker_is_restarted_and_takes_calls_again(
    platform: Running, edge_config: PlatformConfig, tmp: Path
) -> None:
    since = time.monotonic_ns()
    play = write_wav(tmp / "long.wav", chirp_noise(25.0))
    # Fill every worker so the one we kill has calls up.
    procs = [
        (
            dial(
                _uri(edge_config),
                tmp,
                play=play,
                count=4,
                hold=0.2,
                rtp_timeout_s=12.0,
                name=f"k{i}",
                background=True,
            ),
            tmp / f"k{i}.json",
        )
        for i in range(5)
    ]
    _wait_live_calls(edge_config, since, 20)
    victim = 1
    os.kill(_pid_of(platform, f"worker-{victim}"), signal.SIGKILL)
    killed_at = time.monotonic()
    results = [r for proc, out in procs for r in finish_dial(proc, out, timeout=60)]
    dropped = [r for r in results if r["reason"] == "rtp_timeout"]
    assert len(dropped) == 4, [r["reason"] for r in results]
    assert all(r["ended_mono_ns"] / 1e9 - killed_at < 20 for r in dropped)
    # The supervisor restarts the worker; the edge's probes bring it back into rotation.
    wait_answering("127.0.0.1", edge_config.worker_base_port + victim, timeout_s=20)
    assert "restarting process" in platform.log()
    wait_edge_sees_workers(edge_config)
    since = time.monotonic_ns()
    results = _dial_many(edge_config, tmp, 10, 1.0, "after-restart")
    assert all(r["answered"] for r in results)
    assert _worker_of_calls(edge_config, since)[victim] >= 1


def test_calls_while_a_worker_is_dead_go_elsewhere(
    platform: Running, edge_config: PlatformConfig, tmp: Path
) -> None:
    victim = 2
    pid = _pid_of(platform, f"worker-{victim}")
    # Hung, not exited: the edge stops sending it calls at once; the supervisor kills and
    # restarts it once its own probes have failed (about 9 s).
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(
            lambda: edge_worker_flags(edge_config)[victim].startswith(("I", "D")),
            "the edge taking the hung worker out",
        )
        since = time.monotonic_ns()
        results = _dial_many(edge_config, tmp, 12, 1.0, "one-down")
        assert all(r["answered"] for r in results), [r["status_code"] for r in results]
        assert _worker_of_calls(edge_config, since)[victim] == 0
        # Left stopped until the supervisor acts: a worker resumed just as its third probe
        # failed would take calls from the edge and be killed under them (seen as a later
        # test's calls ending 481).
        _wait_for_log(platform, f"process hung; killing it  child=worker-{victim} pid={pid}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    wait_answering("127.0.0.1", edge_config.worker_base_port + victim, timeout_s=20)
    wait_edge_sees_workers(edge_config)  # the edge's probes bring it back into rotation


def _wait_for_log(platform: Running, text: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in platform.log():
        assert time.monotonic() < deadline, f"not in the platform log after {timeout_s} s: {text}"
        time.sleep(0.2)


def _run_sipp(
    config: PlatformConfig, tmp: Path, *, calls: int, rate: int, transport: str = "u1"
) -> dict[str, str]:
    """Runs the RTP-streaming sipp caller through the edge; returns its final statistics."""
    stats = tmp / "stat.csv"
    argv = sipp.command(
        f"127.0.0.1:{config.sip_port}",
        sipp.prepare(tmp),
        local_port=free_port_block(1),
        calls=calls,
        rate=rate,
        hold_ms=1000,
        limit=30,
        stats=stats,
        transport=transport,
    )
    run = subprocess.run(argv, cwd=tmp, capture_output=True, timeout=150, check=False)
    assert run.returncode == 0, (run.stdout + run.stderr).decode(errors="replace")[-2000:]
    return sipp.final_stats(stats)


def test_sipp_200_calls_at_10_per_second_with_rtp(
    platform: Running, edge_config: PlatformConfig, tmp: Path
) -> None:
    since = time.monotonic_ns()
    final = _run_sipp(edge_config, tmp, calls=200, rate=10)
    assert int(final["TotalCallCreated"]) == 200, final
    assert int(final["SuccessfulCall(C)"]) == 200, final
    assert int(final["FailedCall(C)"]) == 0, final
    time.sleep(1.0)
    ended = [
        e for e in edge_config.events() if e.kind is CallEventKind.ENDED and e.t_mono_ns >= since
    ]
    assert len(ended) == 200
    assert all(media_totals([e])["rx_packets"] >= 40 for e in ended)


def test_calls_over_tcp_reach_udp_workers(
    platform: Running, edge_config: PlatformConfig, tmp: Path
) -> None:
    final = _run_sipp(edge_config, tmp, calls=5, rate=5, transport="t1")
    assert int(final["SuccessfulCall(C)"]) == 5, final
    assert int(final["FailedCall(C)"]) == 0, final


def test_garbage_on_the_edge_port_does_not_stop_calls(
    platform: Running, edge_config: PlatformConfig, tmp: Path
) -> None:
    port = edge_config.sip_port
    junk = [
        os.urandom(700),
        b"INVITE sip:100@127.0.0.1 SIP/2.0\r\n\r\n",
        b"INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP x\r\nCSeq: 1\r\n\r\n",
        b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKx\r\n\r\n",
        b"\r\n\r\n",
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for datagram in junk * 40:
            sock.sendto(datagram, ("127.0.0.1", port))
    with socket.create_connection(("127.0.0.1", port)) as tcp:
        tcp.sendall(os.urandom(8192))
    time.sleep(0.5)
    assert options_ping("127.0.0.1", port) == 200
    [result] = dial(_uri(edge_config), tmp, play=write_wav(tmp / "a.wav", chirp_noise(1.0)))
    assert result["answered"]


def test_half_open_calls_are_released_within_seconds(
    platform: Running, edge_config: PlatformConfig, tmp: Path
) -> None:
    """20 answered calls that never ACK or never send RTP hold their slots only briefly."""
    since = time.monotonic_ns()
    sent_at = time.monotonic()
    dialogs = [
        open_dialog("127.0.0.1", edge_config.sip_port, "100", ack=i % 2 == 0)[0] for i in range(20)
    ]
    try:
        deadline = sent_at + 10.0
        ended: dict[str, str] = {}
        while time.monotonic() < deadline and len(ended) < 20:
            ended = {
                e.call_id: str(e.data["reason"])
                for e in edge_config.events()
                if e.kind is CallEventKind.ENDED and e.t_mono_ns >= since
            }
            time.sleep(0.2)
        assert len(ended) == 20, f"{len(ended)} of 20 half-open calls released within 10 s"
        assert Counter(ended.values()) == {"no_ack": 10, "no_rtp": 10}, ended
    finally:
        for dialog in dialogs:
            dialog.sock.close()
    # Every slot is free again 10 s after the INVITEs (the BYE to a vanished caller holds
    # its slot a few seconds after the call has ended).
    time.sleep(max(0.0, sent_at + 10.0 - time.monotonic()))
    results = _dial_many(edge_config, tmp, 20, 1.0, "after-half-open")
    assert all(r["answered"] for r in results)


@pytest.mark.parametrize(
    "address",
    ["1" * 254, "media.example.com", "127.0.0.1.1.1.1.1", "IN IP6 ::zz"],
    ids=["254-chars", "host-name", "too-long-ipv4", "bad-ipv6"],
)
def test_sdp_addresses_that_are_not_ip_literals_are_refused_at_the_edge(
    platform: Running, edge_config: PlatformConfig, tmp: Path, address: str
) -> None:
    # pjlib aborts a worker on an SDP address of 254 characters or more, and would resolve a
    # host name on the worker's SIP thread: neither may get past the edge.
    connection = address if address.startswith("IN ") else f"IN IP4 {address}"
    sdp = PCMU_SDP.format(host="127.0.0.1", port=40000).replace("IN IP4 127.0.0.1", connection)
    invite = Request("INVITE", f"sip:100@127.0.0.1:{edge_config.sip_port}", body=sdp)
    response = exchange(invite, "127.0.0.1", edge_config.sip_port)
    assert response is not None and response.code == 488, response
    [result] = dial(_uri(edge_config), tmp, play=write_wav(tmp / "a.wav", chirp_noise(1.0)))
    assert result["answered"]


@pytest.mark.parametrize(("streams", "answer"), [(2, 200), (3, 488)])
def test_offers_of_three_streams_or_more_are_refused_at_the_edge(
    platform: Running, edge_config: PlatformConfig, streams: int, answer: int
) -> None:
    # A worker provisions two sockets per offered stream out of the 64 pjlib holds, and
    # aborts when they run out: three offers of 16 streams killed one.
    head = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    media = "".join(
        f"m=audio {40000 + 2 * i} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n" for i in range(streams)
    )
    invite = Request("INVITE", f"sip:199@127.0.0.1:{edge_config.sip_port}", body=head + media)
    response = exchange(invite, "127.0.0.1", edge_config.sip_port)
    assert response is not None and response.code == answer, response
    if answer == 200:  # hang up what was answered
        to_tag = (response.header("To") or "").split("tag=", 1)[1]
        route = (response.header("Record-Route") or "").strip("<>")
        bye = Request(
            "BYE",
            (response.header("Contact") or "").strip("<>"),
            to_tag=to_tag,
            from_tag=invite.from_tag,
            call_id=invite.call_id,
            cseq=2,
            routes=(route,),
        )
        exchange(bye, "127.0.0.1", edge_config.sip_port)
