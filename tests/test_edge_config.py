"""The generated Kamailio edge config must be accepted by the real kamailio.

These tests need the `kamailio` binary (Debian package `kamailio`).  When it is
missing they fail with EdgeUnavailable's message, which says what to install:
a skipped config check would let a broken edge config reach production.
"""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import time
from pathlib import Path

import pytest

from telephony.edge import (
    EdgeConfig,
    EdgeUnavailable,
    WorkerAddress,
    find_kamailio,
    kamailio_command,
    render_config,
    render_dispatcher_list,
    write_files,
)

WORKERS = (
    WorkerAddress("127.0.0.1", 25071),
    WorkerAddress("127.0.0.1", 25072),
    WorkerAddress("127.0.0.1", 25073),
)


def _kamailio() -> str:
    try:
        return find_kamailio()
    except EdgeUnavailable as exc:
        pytest.fail(str(exc))


def _config_check(cfg_path: Path) -> None:
    result = subprocess.run(
        [_kamailio(), "-c", "-f", str(cfg_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "config file ok" in output, output


def _destinations(list_text: str) -> list[str]:
    return [
        line.split()[1]
        for line in list_text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


@pytest.mark.parametrize(
    "cfg",
    [
        pytest.param(EdgeConfig(listen_port=25060, workers=WORKERS), id="three-workers"),
        pytest.param(EdgeConfig(listen_port=25060), id="no-workers"),
        pytest.param(
            EdgeConfig(
                listen_host="0.0.0.0",
                listen_port=25060,
                advertise_host="203.0.113.7",
                workers=(WorkerAddress("10.0.0.5", 5070), WorkerAddress("worker-2.local", 5070)),
                probe_interval_s=1,
                children=8,
            ),
            id="advertised-address",
        ),
        pytest.param(
            EdgeConfig(
                listen_host="::1",
                listen_port=25060,
                workers=(WorkerAddress("::1", 25071), WorkerAddress("127.0.0.1", 25072)),
            ),
            id="ipv6",
        ),
    ],
)
def test_rendered_config_passes_kamailio_check(cfg: EdgeConfig, tmp_path: Path) -> None:
    cfg = dataclasses.replace(cfg, run_dir=tmp_path / "edge")
    cfg_path = write_files(cfg)
    _config_check(cfg_path)


def test_broken_config_is_rejected_by_the_check(tmp_path: Path) -> None:
    # Guards the check itself: it must not pass whatever it is given.
    cfg_path = write_files(EdgeConfig(workers=WORKERS, run_dir=tmp_path))
    broken = cfg_path.read_text().replace("ds_next_dst()", "ds_no_such_function()")
    cfg_path.write_text(broken)
    result = subprocess.run(
        [_kamailio(), "-c", "-f", str(cfg_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0


def test_dispatcher_list_has_every_worker_once(tmp_path: Path) -> None:
    cfg = EdgeConfig(workers=WORKERS, run_dir=tmp_path)
    expected = [f"sip:127.0.0.1:{w.port}" for w in WORKERS]
    assert _destinations(render_dispatcher_list(cfg)) == expected
    write_files(cfg)
    assert _destinations((tmp_path / "dispatcher.list").read_text()) == expected
    # Every line is "setid uri flags priority attrs", all workers in set 1.
    for line in render_dispatcher_list(cfg).splitlines():
        if not line.startswith("#"):
            setid, _uri, flags, priority, attrs = line.split()
            assert (setid, flags, priority) == ("1", "0", "0")
            assert attrs.startswith("duid=")


def test_ipv6_worker_is_bracketed() -> None:
    cfg = EdgeConfig(workers=(WorkerAddress("::1", 5070),))
    assert _destinations(render_dispatcher_list(cfg)) == ["sip:[::1]:5070"]


def test_config_references_files_in_run_dir_by_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Kamailio runs from /, so a relative run_dir must be resolved by us.
    monkeypatch.chdir(tmp_path)
    cfg = EdgeConfig(workers=WORKERS, run_dir=Path("var/edge"))
    text = render_config(cfg)
    run_dir = tmp_path.resolve() / "var" / "edge"
    assert f'"{run_dir / "dispatcher.list"}"' in text
    assert write_files(cfg) == run_dir / "kamailio.cfg"
    assert (run_dir / "dispatcher.list").is_file()


def test_config_has_the_required_behaviour() -> None:
    text = render_config(EdgeConfig(listen_host="127.0.0.1", listen_port=25060, workers=WORKERS))
    for needle in (
        "listen=udp:127.0.0.1:25060",
        "listen=tcp:127.0.0.1:25060",
        'loadmodule "dispatcher.so"',
        'modparam("dispatcher", "ds_ping_interval", 2)',
        'modparam("dispatcher", "ds_probing_mode", 1)',
        'ds_select_dst("1", "4")',
        "ds_next_dst()",
        'ds_mark_dst("ip")',
        "record_route()",
        "loose_route()",
        'is_method("CANCEL")',
        "Retry-After:",
        'sl_send_reply("200", "OK")',
        'sl_send_reply("405", "Method Not Allowed")',
    ):
        assert needle in text, needle


def test_kamailio_command_runs_in_foreground_with_memory_and_pid(tmp_path: Path) -> None:
    cfg = EdgeConfig(workers=WORKERS, run_dir=tmp_path, shm_mb=128, pkg_mb=16)
    cmd = kamailio_command(cfg, write_files(cfg))
    assert cmd[0] == _kamailio()
    assert "-DD" in cmd
    assert "-E" in cmd
    assert cmd[cmd.index("-f") + 1] == str(tmp_path.resolve() / "kamailio.cfg")
    assert cmd[cmd.index("-P") + 1] == str(tmp_path.resolve() / "kamailio.pid")
    assert cmd[cmd.index("-m") + 1] == "128"
    assert cmd[cmd.index("-M") + 1] == "16"


@pytest.mark.parametrize(
    "cfg",
    [
        EdgeConfig(listen_port=0),
        EdgeConfig(listen_host="bad host\n"),
        EdgeConfig(advertise_host='1.2.3.4"'),
        EdgeConfig(workers=(WorkerAddress("127.0.0.1", 70000),)),
        EdgeConfig(workers=(WorkerAddress("a b", 5070),)),
        EdgeConfig(workers=(WorkerAddress("127.0.0.1", 5070), WorkerAddress("127.0.0.1", 5070))),
        EdgeConfig(probe_interval_s=0),
    ],
)
def test_invalid_settings_are_refused(cfg: EdgeConfig) -> None:
    with pytest.raises(ValueError):
        render_config(cfg)


def _free_port() -> int:
    # The edge needs the port free on both UDP and TCP.
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port for the edge")


def _options_ping(port: int) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.bind(("127.0.0.1", 0))
        # The reply goes to the address in Via, so it must be this socket's.
        local_port = int(sock.getsockname()[1])
        sock.sendto(_options_request(port, local_port), ("127.0.0.1", port))
        return sock.recv(65535).decode(errors="replace")


def _options_request(port: int, local_port: int) -> bytes:
    request = (
        f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK-parley-test\r\n"
        "From: <sip:test@127.0.0.1>;tag=1\r\n"
        f"To: <sip:127.0.0.1:{port}>\r\n"
        "Call-ID: parley-edge-test\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    return request.encode()


def test_edge_starts_loads_every_worker_and_answers_options(tmp_path: Path) -> None:
    # `kamailio -c` does not load dispatcher.list; only a real start does.
    port = _free_port()
    cfg = EdgeConfig(listen_host="127.0.0.1", listen_port=port, workers=WORKERS, run_dir=tmp_path)
    cmd = kamailio_command(cfg, write_files(cfg))
    log_path = tmp_path / "kamailio.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        reply = ""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                reply = _options_ping(port)
                break
            except (TimeoutError, ConnectionRefusedError):
                # Not listening yet.
                time.sleep(0.1)
        assert proc.poll() is None, log_path.read_text()
        assert reply.startswith("SIP/2.0 200 OK"), reply
        listing = subprocess.run(
            [
                str(Path(_kamailio()).with_name("kamcmd")),
                "-s",
                str(tmp_path / "kamailio_ctl"),
                "dispatcher.list",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        for worker in WORKERS:
            assert f"sip:127.0.0.1:{worker.port}" in listing, listing
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
