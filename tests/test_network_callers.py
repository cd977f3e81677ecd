"""Callers on another host: a caller in its own network namespace (198.18.0.0/15) reaches the
platform at its advertised address, through trunks, over UDP and TLS with SRTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from telephony.edge import CTL_SOCKET_NAME
from telephony.edge_stats import read_statistics
from telephony.netns import CallerHost, caller_host
from telephony.sipprobe import status_code
from tests.sip_raw import PCMU_SDP, Request, exchange, open_dialog
from tests.support import (
    ROOT,
    PlatformConfig,
    Running,
    chirp_noise,
    dial,
    echo_match,
    read_wav,
    start_platform,
    write_wav,
)

pytestmark = [pytest.mark.sip, pytest.mark.slow]

PBX_USER, PBX_PASSWORD = "pbx-7", "correct-horse-battery"
FLOOD_BAN_S = 5


@pytest.fixture(scope="module")
def carrier() -> Iterator[CallerHost]:
    with caller_host("a") as host:
        yield host


@pytest.fixture(scope="module")
def pbx() -> Iterator[CallerHost]:
    with caller_host("b") as host:
        yield host


@pytest.fixture(scope="module")
def net_config(
    tmp_path_factory: pytest.TempPathFactory, carrier: CallerHost, pbx: CallerHost
) -> PlatformConfig:
    return PlatformConfig(
        tmp_path_factory.mktemp("net"),
        capacity=8,
        lines=[
            {"name": "main", "numbers": ["100"], "agent": "echo"},
            {"name": "echo", "numbers": ["199"], "agent": "echo"},
        ],
        sip={
            "host": "0.0.0.0",
            "advertise_host": carrier.gateway,
            "flood": {"ban_s": FLOOD_BAN_S},
            "trunks": [
                {"name": "carrier", "sources": [carrier.address], "numbers": ["199", "100"]},
                {
                    "name": "pbx",
                    "sources": [f"{pbx.address}/32"],
                    "username": PBX_USER,
                    "password": PBX_PASSWORD,
                    "srtp": "required",
                },
            ],
        },
    )


@pytest.fixture(scope="module")
def platform(net_config: PlatformConfig) -> Iterator[Running]:
    running = start_platform(net_config)
    yield running
    assert running.stop(timeout=30) == 0, running.log()[-3000:]


def _call_from(
    host: CallerHost,
    config: PlatformConfig,
    tmp: Path,
    *,
    number: str = "199",
    bind: str | None = None,
    tls: bool = False,
    options: tuple[str, ...] = (),
    **kwargs: Any,
) -> dict[str, Any]:
    """One `parley dial` call from inside `host` to the platform's address on its link."""
    port = config.tls_port if tls else config.sip_port
    uri = f"sip:{number}@{host.gateway}:{port}" + (";transport=tls" if tls else "")
    [result] = dial(
        uri, tmp, options=("--bind", bind or host.address, *options), netns=host.name, **kwargs
    )
    result_dict: dict[str, Any] = result
    return result_dict


def _check_echo(result: dict[str, Any], sent: np.ndarray) -> None:
    assert result["answered"], result
    received = read_wav(Path(result["recording"]))
    score, _ = echo_match(sent, received)
    assert score > 0.8, f"the caller's audio did not come back (match {score:.2f})"


@pytest.mark.parametrize("codec", ["g722", "pcmu"])
def test_caller_on_another_host_has_two_way_audio(
    platform: Running,
    net_config: PlatformConfig,
    carrier: CallerHost,
    tmp: Path,
    codec: str,
) -> None:
    sent = chirp_noise(2.0)
    play = write_wav(tmp / "caller.wav", sent)
    result = _call_from(carrier, net_config, tmp, play=play, codec=codec)
    assert result["codec"].lower().startswith(codec[:4]), result
    # The worker asked for RTP at the advertised address, not its loopback one.
    assert result["remote_rtp"].split(":")[0] == carrier.gateway, result
    _check_echo(result, sent)


def test_a_source_outside_every_trunk_gets_403(
    platform: Running, net_config: PlatformConfig, carrier: CallerHost, tmp: Path
) -> None:
    stranger = carrier.add_address(77)  # same wire, an address no trunk lists
    result = _call_from(carrier, net_config, tmp, bind=stranger, max_s=10)
    assert not result["answered"]
    assert result["status_code"] == 403, result


def test_a_trunk_may_dial_only_its_numbers(
    platform: Running, net_config: PlatformConfig, carrier: CallerHost, tmp: Path
) -> None:
    result = _call_from(carrier, net_config, tmp, number="555", max_s=10)
    assert result["status_code"] == 403, result


def test_digest_with_a_wrong_password_is_refused(
    platform: Running, net_config: PlatformConfig, pbx: CallerHost, tmp: Path
) -> None:
    result = _call_from(
        pbx,
        net_config,
        tmp,
        options=("--user", PBX_USER, "--srtp", "required"),
        password="not-the-password",
        max_s=10,
    )
    assert not result["answered"]
    assert result["status_code"] == 403, result


def test_a_trunk_that_requires_srtp_refuses_plain_rtp(
    platform: Running, net_config: PlatformConfig, pbx: CallerHost, tmp: Path
) -> None:
    result = _call_from(
        pbx, net_config, tmp, options=("--user", PBX_USER), password=PBX_PASSWORD, max_s=10
    )
    assert result["status_code"] == 488, result


@pytest.mark.parametrize("codec", ["g722", "pcmu"])
def test_tls_and_srtp_with_digest_credentials(
    platform: Running,
    net_config: PlatformConfig,
    pbx: CallerHost,
    tmp: Path,
    codec: str,
) -> None:
    sent = chirp_noise(2.0)
    play = write_wav(tmp / "caller.wav", sent)
    result = _call_from(
        pbx,
        net_config,
        tmp,
        tls=True,
        options=("--user", PBX_USER, "--srtp", "required"),
        play=play,
        codec=codec,
        password=PBX_PASSWORD,
    )
    assert result["srtp"], result
    _check_echo(result, sent)


def _edge_figure(config: PlatformConfig, name: str) -> int:
    socket = config.tmp / "var" / "edge" / CTL_SOCKET_NAME
    return read_statistics(socket).get(("script", name), 0)


@pytest.fixture
def victim() -> Iterator[socket.socket]:
    """A listening socket an attacker would like the edge to send to."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(1.5)
        yield sock


def _received_nothing(sock: socket.socket) -> bool:
    try:
        sock.recvfrom(65535)
    except TimeoutError:
        return True
    return False


@pytest.mark.parametrize("method", ["BYE", "INVITE", "MESSAGE"])
def test_forged_in_dialog_requests_are_not_relayed(
    platform: Running, net_config: PlatformConfig, victim: socket.socket, method: str
) -> None:
    target = "sip:victim@{}:{}".format(*victim.getsockname())
    edge = f"sip:127.0.0.1:{net_config.sip_port};lr"
    before = _edge_figure(net_config, "parley_rejected_relay")
    forged = Request(method, target, to_tag="made-up", routes=(edge,))
    if method == "INVITE":
        forged.body = PCMU_SDP.format(host="127.0.0.1", port=40000)
    response = exchange(forged, "127.0.0.1", net_config.sip_port)
    assert response is not None and response.code in (403, 404), response
    assert _received_nothing(victim), f"the edge relayed a forged {method}"
    assert _edge_figure(net_config, "parley_rejected_relay") > before


@pytest.mark.parametrize("method", ["BYE", "INVITE", "MESSAGE"])
def test_a_real_dialog_cannot_be_pointed_at_another_host(
    platform: Running, net_config: PlatformConfig, victim: socket.socket, method: str
) -> None:
    dialog, _ = open_dialog("127.0.0.1", net_config.sip_port, "199")
    try:
        target = "sip:victim@{}:{}".format(*victim.getsockname())
        hijack = dialog.request(method, ruri=target)
        if method == "INVITE":
            hijack.body = PCMU_SDP.format(host="127.0.0.1", port=40000)
        answer = dialog.send(hijack, "127.0.0.1", net_config.sip_port)
        assert answer is not None and status_code(answer) == 403, answer
        assert _received_nothing(victim), f"the edge relayed an in-dialog {method}"
        # The dialog itself still works: its own BYE reaches the worker.
        bye = dialog.send(dialog.request("BYE", cseq=3), "127.0.0.1", net_config.sip_port)
        assert bye is not None and status_code(bye) == 200, bye
    finally:
        dialog.sock.close()


def test_a_caller_behind_nat_gets_audio_back_at_the_source_of_its_rtp(
    platform: Running, net_config: PlatformConfig, carrier: CallerHost, tmp: Path
) -> None:
    # The caller's SDP names an address nobody holds (a NAT's inside); the worker must send
    # its RTP to where the caller's packets come from.
    unreachable = carrier.address.rsplit(".", 1)[0] + ".250"
    sent = chirp_noise(3.0)
    play = write_wav(tmp / "caller.wav", sent)
    result = _call_from(
        carrier, net_config, tmp, options=("--media-address", unreachable), play=play
    )
    _check_echo(result, sent)


def test_a_flooding_source_is_banned_while_a_real_caller_gets_through(
    platform: Running, net_config: PlatformConfig, carrier: CallerHost, tmp: Path
) -> None:
    flooder = carrier.add_address(66)
    banned_before = _edge_figure(net_config, "parley_banned_sources")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env["PYTHONPATH"] = str(ROOT)
    flood = subprocess.Popen(
        carrier.command(
            [
                *(sys.executable, "-m", "tests.sip_flood"),
                *(carrier.gateway, str(net_config.sip_port)),
                *("--bind", flooder, "--rate", "500", "--seconds", "10"),
            ]
        ),
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2.0)  # well into the flood
        sent = chirp_noise(3.0)
        play = write_wav(tmp / "caller.wav", sent)
        _check_echo(_call_from(carrier, net_config, tmp, play=play), sent)
    finally:
        out, _ = flood.communicate(timeout=30)
    assert int(out.strip()) >= 4500, "the flooder did not flood"
    assert _edge_figure(net_config, "parley_banned_sources") > banned_before
    assert _edge_figure(net_config, "parley_dropped_banned") > 3000
    # The ban lapses (flood.ban_s) and the source is answered again: here with 403, as it
    # belongs to no trunk.
    time.sleep(FLOOD_BAN_S + 1)
    after = _call_from(carrier, net_config, tmp, bind=flooder, max_s=10, name="after-ban")
    assert after["status_code"] == 403, after
