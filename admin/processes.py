"""The processes `parley run` supervises: how each starts, is probed, and stops in turn.

Stop order: the edge is drained first (every worker disabled in its dispatcher, so new INVITEs
get 503), then the media workers hang up their calls (their BYEs still go through the edge),
then the edge stops, then the engine, storage and the API.
"""

from __future__ import annotations

import functools
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from admin.event_pipeline import heartbeat_path
from admin.heartbeat import fresh
from admin.supervisor import Liveness, ProcessSpec
from admin.worker_loss import worker_host, write_reset
from agent.health import health_url, probe
from telephony.edge import CTL_SOCKET_NAME, WORKER_SET, EdgeConfig, kamailio_command
from telephony.edge_stats import find_kamcmd
from telephony.sipprobe import options_ping

log = logging.getLogger(__name__)

WORKERS_STAGE, EDGE_STAGE, REST_STAGE = 0, 1, 2
ENGINE_PROBE_TIMEOUT_S = 2.0  # a loaded engine may answer late; a stopped one never does
# The ingester's loop turns at least every few seconds even when stalled (its longest wait is
# a retry backoff of events.max_backoff_s, 5 s by default, or a blocking read of the stream).
INGEST_HEARTBEAT_MAX_AGE_S = 20.0


def _parley(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "admin.cli", *args)


def local_address(host: str) -> str:
    """Where this host reaches a service listening on `host`."""
    return "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host


def sip_answers(host: str, port: int) -> bool:
    """Whether a SIP endpoint answers OPTIONS at all (any status: it is not hung)."""
    try:
        options_ping(host, port, timeout_s=1.0)
    except (TimeoutError, OSError):
        return False
    return True


def platform_specs(
    settings: Any, edge: EdgeConfig, cfg_path: Path, env: dict[str, str]
) -> list[ProcessSpec]:
    sip = settings.sip
    specs = []
    if settings.engine_needed():
        url = health_url(settings.engine.ws_url())
        specs.append(
            ProcessSpec(
                "engine",
                _parley("engine"),
                env,
                # Loading the models takes 10-20 s, longer on a busy machine: probes count
                # once it has answered.
                liveness=Liveness(
                    lambda: probe(url, timeout_s=ENGINE_PROBE_TIMEOUT_S),
                    f"GET {url}",
                    after_healthy=True,
                ),
            )
        )
    for i in range(sip.workers):
        host, port = local_address(sip.worker_host), sip.worker_base_port + i
        specs.append(
            ProcessSpec(
                f"worker-{i}",
                _parley("worker", "--index", str(i)),
                env,
                liveness=Liveness(
                    functools.partial(sip_answers, host, port), f"SIP OPTIONS to {host}:{port}"
                ),
                stop_stage=WORKERS_STAGE,
            )
        )
    edge_host, edge_port = local_address(sip.host), sip.port
    specs.append(
        ProcessSpec(
            "sip-edge",
            tuple(kamailio_command(edge, cfg_path)),
            # Any answer will do: a refusal (403 when this host is not anonymous) is alive.
            liveness=Liveness(
                functools.partial(sip_answers, edge_host, edge_port),
                f"SIP OPTIONS to {edge_host}:{edge_port}",
            ),
            stop_stage=EDGE_STAGE,
        )
    )
    heartbeat = heartbeat_path(settings)
    specs.append(
        ProcessSpec(
            "ingest",
            _parley("ingest"),
            env,
            liveness=Liveness(
                functools.partial(fresh, heartbeat, max_age_s=INGEST_HEARTBEAT_MAX_AGE_S),
                f"heartbeat {heartbeat}",
                after_healthy=True,
            ),
        )
    )
    if settings.escalation_needed():
        specs.append(ProcessSpec("escalation", _parley("escalation"), env))
    specs.append(ProcessSpec("api", _parley("api"), env))
    if settings.jobs.enabled:
        specs.append(ProcessSpec("jobs", _parley("jobs", "worker"), env))
    return specs


def worker_index(spec: ProcessSpec) -> int | None:
    name, _, index = spec.name.partition("-")
    return int(index) if name == "worker" and index.isdigit() else None


def write_worker_reset(settings: Any, spec: ProcessSpec, cause: str) -> None:
    """After a media worker exited or was killed as hung, before it restarts: its calls are
    over, and storage hears it even if it never comes back."""
    index = worker_index(spec)
    if index is None:
        return
    write_reset(
        settings.events_dir() / f"worker-{index}.jsonl",
        worker=index,
        host=worker_host(settings.events.source),
        cause=cause,
        segment_bytes=settings.events.segment_bytes,
    )


def drain_edge(edge: EdgeConfig) -> None:
    """Disables every worker in the running edge's dispatcher: new calls get 503 at once,
    calls up go on (in-dialog requests do not use the dispatcher)."""
    kamcmd = find_kamcmd()
    if kamcmd is None:
        log.warning(
            "edge not drained: kamcmd is not installed; new calls may reach stopping workers"
        )
        return
    socket = edge.run_dir.resolve() / CTL_SOCKET_NAME
    argv = [kamcmd, "-s", f"unix:{socket}", "dispatcher.set_state", "d", str(WORKER_SET), "all"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        problem = str(error)
    else:
        if done.returncode == 0:
            log.info("edge drained: new calls are refused while the workers hang up")
            return
        problem = (done.stderr or done.stdout).strip()[:200] or f"kamcmd exited {done.returncode}"
    log.warning("edge not drained; new calls may reach stopping workers", extra={"error": problem})
