"""The SIP edge: a Kamailio proxy in front of Parley's media workers.

pjsua2 caps a process at four concurrent calls, so the media tier is several
worker processes.  Callers only ever see the edge; it spreads INVITEs over the
workers with Kamailio's ``dispatcher`` module, watches them with OPTIONS probes
and retries the next worker when one is busy, overloaded or dead.

This module only generates the configuration and the command line.  A process
supervisor owns the running Kamailio.
"""

from __future__ import annotations

import glob
import ipaddress
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from telephony import edge_script
from telephony.edge_script import STATS, ScriptInputs, WorkerRoute
from telephony.phones import SupervisorPhone
from telephony.trunks import SrtpPolicy, Trunk, check_trunks, normalize_sources

__all__ = [
    "EdgeConfig",
    "EdgeUnavailable",
    "FloodLimits",
    "TlsListener",
    "WorkerAddress",
    "find_kamailio",
    "kamailio_command",
    "render_config",
    "render_dispatcher_list",
    "write_files",
]

log = logging.getLogger(__name__)

CFG_NAME = "kamailio.cfg"
DISPATCHER_LIST_NAME = "dispatcher.list"
PID_NAME = "kamailio.pid"
CTL_SOCKET_NAME = "kamailio_ctl"
TLS_CFG_NAME = "tls.cfg"

WORKER_SET = edge_script.WORKER_SET

# INVITE towards a worker: with no reply at all, give up after 1.5 s.  On UDP
# the request goes out at 0 and 0.5 s (T1 = 500 ms), so a dead worker on the
# LAN costs the caller about 1.5 s before the next worker is tried.
WORKER_FR_TIMER_MS = 1500
# After the worker's 100/180, how long to wait for its final answer.  Workers
# answer automatically within a second or two; one that has not answered in
# 15 s is wedged, and the call is better off on another worker.
WORKER_FR_INV_TIMER_MS = 15000
# In-dialog requests (BYE, re-INVITE) towards callers cross the internet: give
# UDP retransmissions time to get through a lossy path before giving up.
IN_DIALOG_FR_TIMER_MS = 8000

TCP_MAX_CONNECTIONS = 2048

# Kamailio's Debian package installs modules in a multiarch directory; other
# builds use lib/ or lib64/.  The first directory holding tm.so wins.
_MODULE_DIR_PATTERNS = (
    "/usr/lib/*/kamailio/modules",
    "/usr/lib/kamailio/modules",
    "/usr/lib64/kamailio/modules",
    "/usr/local/lib/*/kamailio/modules",
    "/usr/local/lib/kamailio/modules",
    "/usr/local/lib64/kamailio/modules",
)

# A unix socket path must fit in sockaddr_un.sun_path (108 bytes with NUL).
_MAX_UNIX_SOCKET_PATH = 107

# Hostnames and IP literals only: anything else could smuggle text into the
# generated config or the dispatcher list.
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")

_INSTALL_HINT = (
    "Kamailio is not installed: the SIP edge needs the `kamailio` binary. "
    "Install it with `apt-get install kamailio` (Debian/Ubuntu)."
)


@dataclass(frozen=True)
class WorkerAddress:
    """A media worker's SIP address (UDP)."""

    host: str
    port: int


@dataclass(frozen=True)
class TlsListener:
    """SIP over TLS on the edge: its port and the certificate it presents."""

    port: int = 5061
    certificate: Path = Path("var/tls/edge-cert.pem")
    private_key: Path = Path("var/tls/edge-key.pem")


@dataclass(frozen=True)
class FloodLimits:
    requests_per_s: int = 60  # per source, averaged over 2 s; above it: banned
    ban_s: int = 60
    calls_per_s: int = 50  # new calls, every source together
    max_message_bytes: int = 8192


@dataclass(frozen=True)
class EdgeConfig:
    """Everything the edge's generated configuration depends on."""

    listen_host: str = "0.0.0.0"
    listen_port: int = 5060
    advertise_host: str | None = None
    workers: tuple[WorkerAddress, ...] = ()
    probe_interval_s: int = 2
    run_dir: Path = Path("var/edge")
    shm_mb: int = 64
    pkg_mb: int = 8
    children: int = 4
    tls: TlsListener | None = None
    trunks: tuple[Trunk, ...] = ()
    # Callers from these ranges need no trunk (default: this host only, for trying it out).
    anonymous_sources: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    anonymous_srtp: SrtpPolicy = "optional"
    flood: FloodLimits = FloodLimits()
    phones: tuple[SupervisorPhone, ...] = ()  # supervisors' phones (telephony/phones.py)


class EdgeUnavailable(RuntimeError):
    """Kamailio is missing; the message says what to install."""


def find_kamailio() -> str:
    """Return the path of the kamailio binary.

    Debian installs it in /usr/sbin, which is often not on a non-root PATH.
    """
    found = shutil.which("kamailio")
    if found is not None:
        return found
    for candidate in ("/usr/sbin/kamailio", "/usr/local/sbin/kamailio"):
        if os.access(candidate, os.X_OK):
            return candidate
    raise EdgeUnavailable(_INSTALL_HINT)


def _module_dir() -> Path | None:
    for pattern in _MODULE_DIR_PATTERNS:
        for match in sorted(glob.glob(pattern)):
            if Path(match, "tm.so").is_file():
                return Path(match)
    return None


def _check_port(port: int, what: str) -> None:
    if not 1 <= port <= 65535:
        raise ValueError(f"{what} port {port} is outside 1-65535")


def _sip_host(host: str, what: str) -> str:
    """Return host as it is written in a SIP URI or a Kamailio socket."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if not _HOSTNAME_RE.match(host):
            raise ValueError(f"{what} {host!r} is not a hostname or IP address") from None
        return host
    if address.version == 6:
        return f"[{address.compressed}]"
    return address.compressed


def _validate(cfg: EdgeConfig) -> None:
    _sip_host(cfg.listen_host, "listen_host")
    _check_port(cfg.listen_port, "listen")
    if cfg.advertise_host is not None:
        _sip_host(cfg.advertise_host, "advertise_host")
    for worker in cfg.workers:
        _sip_host(worker.host, "worker host")
        _check_port(worker.port, "worker")
    if len(set(cfg.workers)) != len(cfg.workers):
        raise ValueError("the same worker is listed twice")
    for name in ("probe_interval_s", "shm_mb", "pkg_mb", "children"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be at least 1")
    check_trunks(cfg.trunks)
    normalize_sources(cfg.anonymous_sources)
    if cfg.tls is not None:
        _check_port(cfg.tls.port, "TLS")
        if cfg.tls.port == cfg.listen_port:
            raise ValueError("the TLS port must differ from the UDP/TCP port")


def _run_dir(cfg: EdgeConfig) -> Path:
    # Kamailio changes its working directory to / at start-up, so every path
    # written into the config must be absolute.
    return cfg.run_dir.resolve()


def _worker_uri(worker: WorkerAddress) -> str:
    return f"sip:{_sip_host(worker.host, 'worker host')}:{worker.port}"


def render_dispatcher_list(cfg: EdgeConfig) -> str:
    """Render dispatcher.list: one line per worker in set 1."""
    _validate(cfg)
    lines = [
        "# Parley media workers, generated by telephony.edge; regenerate, do not edit.",
        "# setid destination flags priority attributes",
    ]
    for index, worker in enumerate(cfg.workers):
        # duid names the worker in Kamailio's logs and RPC output.
        lines.append(f"{WORKER_SET} {_worker_uri(worker)} 0 0 duid=worker{index}")
    return "\n".join(lines) + "\n"


def _listen_lines(cfg: EdgeConfig) -> list[str]:
    host = _sip_host(cfg.listen_host, "listen_host")
    advertise = ""
    if cfg.advertise_host is not None:
        adv_host = _sip_host(cfg.advertise_host, "advertise_host")
        advertise = f" advertise {adv_host}:{cfg.listen_port}"
    lines = [
        f"listen=udp:{host}:{cfg.listen_port}{advertise}",
        f"listen=tcp:{host}:{cfg.listen_port}{advertise}",
    ]
    if cfg.tls is not None:
        tls_advertise = ""
        if cfg.advertise_host is not None:
            tls_advertise = f" advertise {_sip_host(cfg.advertise_host, 'advertise_host')}:"
            tls_advertise += str(cfg.tls.port)
        lines.append(f"listen=tls:{host}:{cfg.tls.port}{tls_advertise}")
    return lines


def _alias_lines(cfg: EdgeConfig) -> list[str]:
    # Requests addressed to the advertised address (a NAT's public side) must
    # count as "myself", or in-dialog requests to it would look foreign.
    if cfg.advertise_host is None:
        return []
    adv_host = _sip_host(cfg.advertise_host, "advertise_host")
    aliases = [f"alias={adv_host}:{cfg.listen_port}"]
    if cfg.tls is not None:
        aliases.append(f"alias={adv_host}:{cfg.tls.port}")
    return aliases


def _ping_from(cfg: EdgeConfig) -> str:
    host = cfg.advertise_host or cfg.listen_host
    if host in ("0.0.0.0", "::", "[::]"):
        host = "localhost"
    return f"sip:parley-edge@{_sip_host(host, 'advertise_host')}"


def _ctl_lines(run_dir: Path) -> list[str]:
    socket = run_dir / CTL_SOCKET_NAME
    if len(str(socket)) > _MAX_UNIX_SOCKET_PATH:
        log.warning(
            "run_dir %s is too long for a unix socket; the edge will have no RPC control socket",
            run_dir,
        )
        return []
    # The control socket lets operators run `kamcmd -s <socket> dispatcher.list`
    # or `dispatcher.reload` after the worker list changes, without a restart.
    # It lives in run_dir so several edges on one host do not collide in /run.
    return [
        'loadmodule "ctl.so"',
        f'modparam("ctl", "binrpc", "unix:{socket}")',
    ]


def _probe_timeout_ms(cfg: EdgeConfig) -> int:
    """Transaction timeout for requests the edge sends itself: the OPTIONS probes.

    A probe must time out before the next one goes out.  Otherwise a probe
    sent while a worker was down times out after the worker is back and marks
    it down again, and the worker flaps for a probe interval.
    """
    return min(WORKER_FR_TIMER_MS, cfg.probe_interval_s * 1000 * 3 // 4)


def render_config(cfg: EdgeConfig) -> str:
    """Render the complete kamailio.cfg for this edge."""
    _validate(cfg)
    run_dir = _run_dir(cfg)
    module_dir = _module_dir()
    lines: list[str] = [
        "#!KAMAILIO",
        "# Parley SIP edge, generated by telephony.edge; regenerate, do not edit.",
        "",
        "debug=2",
        "log_stderror=yes",
        f"children={cfg.children}",
        # Only the listen sockets and explicit aliases are "myself"; reverse
        # DNS of the host's addresses must not decide routing.
        "auto_aliases=no",
        "dns=no",
        "rev_dns=no",
        "enable_sctp=no",
        'server_header="Server: Parley edge"',
        'user_agent_header="User-Agent: Parley edge"',
        "sip_warning=0",
        # TCP and TLS: a bounded number of connections (Kamailio 5.6 has no per-message
        # read timeout; a peer that trickles bytes holds one connection of these).
        f"tcp_max_connections={TCP_MAX_CONNECTIONS}",
        "tcp_connection_lifetime=3605",
        "tcp_accept_no_cl=no",
        *(["enable_tls=yes", f"tls_max_connections={TCP_MAX_CONNECTIONS}"] if cfg.tls else []),
        *_listen_lines(cfg),
        *_alias_lines(cfg),
        "",
    ]
    if module_dir is not None:
        lines.append(f'loadpath "{module_dir}/"')
    else:
        # Fall back to the path compiled into the binary.
        log.warning("no Kamailio module directory found; relying on kamailio's built-in path")
    lines += [
        'loadmodule "kex.so"',
        'loadmodule "corex.so"',
        'loadmodule "tm.so"',
        'loadmodule "tmx.so"',
        'loadmodule "sl.so"',
        'loadmodule "rr.so"',
        'loadmodule "pv.so"',
        'loadmodule "maxfwd.so"',
        'loadmodule "textops.so"',
        'loadmodule "siputils.so"',
        'loadmodule "xlog.so"',
        'loadmodule "sanity.so"',
        'loadmodule "dispatcher.so"',
        'loadmodule "dialog.so"',
        'loadmodule "htable.so"',
        'loadmodule "pike.so"',
        'loadmodule "pipelimit.so"',
        'loadmodule "ipops.so"',
        'loadmodule "auth.so"',
        'loadmodule "usrloc.so"',
        'loadmodule "registrar.so"',
        'loadmodule "sdpops.so"',
        'loadmodule "statistics.so"',
        *(['loadmodule "tls.so"'] if cfg.tls else []),
        *_ctl_lines(run_dir),
        "",
        *_guard_params(cfg),
        *(
            [f'modparam("tls", "config", "{run_dir / TLS_CFG_NAME}")']
            if cfg.tls is not None
            else []
        ),
        f'modparam("tm", "fr_timer", {_probe_timeout_ms(cfg)})',
        f'modparam("tm", "fr_inv_timer", {WORKER_FR_INV_TIMER_MS})',
        f'modparam("dispatcher", "list_file", "{run_dir / DISPATCHER_LIST_NAME}")',
        # flags=2 keeps the remaining workers for ds_next_dst() in failover.
        'modparam("dispatcher", "flags", 2)',
        'modparam("dispatcher", "ds_ping_method", "OPTIONS")',
        f'modparam("dispatcher", "ds_ping_from", "{_ping_from(cfg)}")',
        f'modparam("dispatcher", "ds_ping_interval", {cfg.probe_interval_s})',
        # Probe every worker, not just the failed ones, so a worker that dies
        # between calls is noticed before a caller is sent to it.
        'modparam("dispatcher", "ds_probing_mode", 1)',
        # One missed probe takes a worker out, one answered probe brings it
        # back: workers are on the LAN, where a lost OPTIONS is rare and a
        # caller waiting on a dead worker is worse than a brief false alarm.
        'modparam("dispatcher", "ds_probing_threshold", 1)',
        'modparam("dispatcher", "ds_inactive_threshold", 1)',
        # A worker that rejects OPTIONS with 4xx is still alive and serving.
        'modparam("dispatcher", "ds_ping_reply_codes", "class=2;code=403;code=404;code=405")',
    ]
    return "\n".join(lines) + "\n" + edge_script.render_routes(_script_inputs(cfg))


def _guard_params(cfg: EdgeConfig) -> list[str]:
    flood = cfg.flood
    return [
        # pike counts each source's requests per 2 s window.
        'modparam("pike", "sampling_time_unit", 2)',
        f'modparam("pike", "reqs_density_per_unit", {flood.requests_per_s * 2})',
        'modparam("pike", "remove_latency", 4)',
        f'modparam("htable", "htable", "ban=>size=10;autoexpire={flood.ban_s};")',
        # Calls-per-second pipes measured over one-second intervals.
        'modparam("pipelimit", "timer_interval", 1)',
        'modparam("dialog", "profiles_with_value", "trunk")',
        'modparam("dialog", "dlg_match_mode", 1)',
        # A dialog nobody ended (both sides vanished) is forgotten after 12 h.
        'modparam("dialog", "default_timeout", 43200)',
        'modparam("auth", "nonce_expire", 300)',
        # Supervisors' phones: registrations kept in memory; a restarted edge asks them again
        # at their next refresh (at most max_expires seconds).
        'modparam("usrloc", "db_mode", 0)',
        'modparam("registrar", "max_expires", 600)',
        'modparam("registrar", "min_expires", 30)',
        'modparam("registrar", "max_contacts", 2)',
        *(f'modparam("statistics", "variable", "{name}")' for name in STATS),
    ]


def _script_inputs(cfg: EdgeConfig) -> ScriptInputs:
    routes = []
    for worker in cfg.workers:
        host = _sip_host(worker.host, "worker host")
        contact_hosts = [host]
        # Behind NAT a worker's Contact names the advertised address; it still means
        # this worker.
        if cfg.advertise_host is not None:
            contact_hosts.append(_sip_host(cfg.advertise_host, "advertise_host"))
        routes.append(WorkerRoute(_worker_uri(worker), worker.port, tuple(contact_hosts)))
    return ScriptInputs(
        workers=tuple(routes),
        trunks=cfg.trunks,
        anonymous_sources=normalize_sources(cfg.anonymous_sources),
        anonymous_srtp=cfg.anonymous_srtp,
        calls_per_s=cfg.flood.calls_per_s,
        max_message_bytes=cfg.flood.max_message_bytes,
        fr_timer_ms=WORKER_FR_TIMER_MS,
        fr_inv_timer_ms=WORKER_FR_INV_TIMER_MS,
        in_dialog_fr_timer_ms=IN_DIALOG_FR_TIMER_MS,
        phones=cfg.phones,
    )


def render_tls_config(tls: TlsListener) -> str:
    """tls.cfg: the certificate the edge presents; callers are not asked for one."""
    return "\n".join(
        [
            "# Parley SIP edge TLS, generated by telephony.edge; regenerate, do not edit.",
            "[server:default]",
            "method = TLSv1.2+",
            "verify_certificate = no",
            "require_certificate = no",
            f"certificate = {tls.certificate.resolve()}",
            f"private_key = {tls.private_key.resolve()}",
            "",
            "[client:default]",
            "method = TLSv1.2+",
            "verify_certificate = no",
            "require_certificate = no",
            "",
        ]
    )


def write_files(cfg: EdgeConfig) -> Path:
    """Write kamailio.cfg and dispatcher.list into run_dir; return the cfg path."""
    run_dir = _run_dir(cfg)
    config_text = render_config(cfg)
    list_text = render_dispatcher_list(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_atomically(run_dir / DISPATCHER_LIST_NAME, list_text)
    if cfg.tls is not None:
        _write_atomically(run_dir / TLS_CFG_NAME, render_tls_config(cfg.tls))
    cfg_path = run_dir / CFG_NAME
    _write_atomically(cfg_path, config_text)  # holds trunk passwords: owner-only
    log.info("wrote edge config %s with %d workers", cfg_path, len(cfg.workers))
    return cfg_path


def _write_atomically(path: Path, text: str) -> None:
    # A running edge may be told to reload dispatcher.list at any moment; it
    # must never read a half-written file.
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    tmp.replace(path)


def kamailio_command(cfg: EdgeConfig, cfg_path: Path) -> list[str]:
    """Command line that runs the edge in the foreground, logging to stderr."""
    run_dir = _run_dir(cfg)
    return [
        find_kamailio(),
        # -DD: stay in the foreground (the supervisor tracks this pid) but
        # still fork the SIP worker processes.
        "-DD",
        "-E",
        "-f",
        str(cfg_path.resolve()),
        "-P",
        str(run_dir / PID_NAME),
        # Runtime files go to run_dir, not /run/kamailio, which needs root.
        "-Y",
        str(run_dir),
        "-w",
        str(run_dir),
        "-m",
        str(cfg.shm_mb),
        "-M",
        str(cfg.pkg_mb),
    ]
