"""`parley run` when its processes fail: a worker killed or hung mid-call, an orderly stop.

Each lost call must end in storage as `worker_lost`, with every event written before the
fault stored; a stop must refuse new calls first and hang up the calls that are up with BYE.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from admin.db import create_engine
from admin.models import Call, CallEventRecord
from admin.processes import drain_edge
from admin.settings import Settings
from telephony.events import CallEvent, CallEventKind
from telephony.sipprobe import wait_answering
from tests.ingest_support import wait_for
from tests.sip_raw import PCMU_SDP, Request, exchange
from tests.support import (
    PlatformConfig,
    Running,
    chirp_noise,
    dial,
    start_platform,
    wait_edge_sees_workers,
    write_wav,
)

pytestmark = [pytest.mark.sip, pytest.mark.slow]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> PlatformConfig:
    # Two workers; and the background jobs, so that one platform here runs every process.
    return PlatformConfig(
        tmp_path_factory.mktemp("faults"), capacity=8, extra={"jobs": {"enabled": True}}
    )


@pytest.fixture(scope="module")
def platform(config: PlatformConfig) -> Iterator[Running]:
    running = start_platform(config)
    yield running
    running.stop(timeout=30)


@pytest.fixture(scope="module")
def database(config: PlatformConfig, platform: Running) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{config.tmp / 'var' / 'parley.db'}")
    yield engine
    engine.dispose()


def _pid_of(platform: Running, name: str) -> int:
    pids = re.findall(rf"process started\s+child={name} pid=(\d+)", platform.log())
    assert pids, f"no pid for {name} in the platform log"
    return int(pids[-1])


def _call_up(config: PlatformConfig, tmp: Path, name: str) -> tuple[Any, str, int]:
    """A long call through the edge: (its dial process, its call id, its worker)."""
    play = write_wav(tmp / f"{name}.wav", chirp_noise(30.0))
    since = {e.call_id for e in config.events()}
    proc = dial(
        f"sip:100@127.0.0.1:{config.sip_port}",
        tmp,
        play=play,
        hold=0.2,
        max_s=40,
        rtp_timeout_s=6.0,
        name=name,
        background=True,
    )

    def started() -> list[CallEvent]:
        events = config.events()
        return [e for e in events if e.kind is CallEventKind.STARTED and e.call_id not in since]

    wait_for(lambda: bool(started()), 20, "the call to start")
    [event] = started()
    return proc, event.call_id, int(str(event.data["worker"]))


def _stored(database: Engine, call_id: str) -> tuple[str | None, set[str]] | None:
    """(end reason, or None while live; ids of its stored events), or None if not stored."""
    with Session(database) as session:
        call = session.get(Call, call_id)
        ids = session.scalars(
            select(CallEventRecord.event_id).where(CallEventRecord.call_id == call_id)
        ).all()
        return None if call is None else (call.end_reason, set(ids))


def _ends_as_worker_lost(database: Engine, call_id: str, written: set[str]) -> None:
    def ended() -> bool:
        stored = _stored(database, call_id)
        return stored is not None and stored[0] is not None

    wait_for(ended, 60, "the call to end in storage")
    stored = _stored(database, call_id)
    assert stored is not None
    reason, events = stored
    assert reason == "worker_lost"
    assert written <= events, "events written before the fault were lost"


def test_the_ready_line_comes_once_calls_can_be_served(
    platform: Running, config: PlatformConfig
) -> None:
    wait_for(lambda: "Parley is ready" in platform.log(), 15, "the ready line")
    log = platform.log()
    var = config.tmp / "var"
    assert f"Parley: data in {var}\n" in log
    assert f"database: sqlite:///{var / 'parley.db'}" in log
    keys = next(line for line in log.splitlines() if line.strip().startswith("keys: "))
    assert str(var) not in keys  # never beside the database
    ready = log.index("Parley is ready")
    assert f"Try: parley dial sip:100@127.0.0.1:{config.sip_port}" in log[ready:]
    assert log.rindex("media worker ready") < ready


def test_a_killed_workers_call_ends_as_worker_lost(
    platform: Running, config: PlatformConfig, database: Engine, tmp: Path
) -> None:
    proc, call_id, worker = _call_up(config, tmp, "killed")
    wait_for(lambda: _stored(database, call_id) is not None, 20, "the call in storage")
    time.sleep(2.0)  # media stats on the way
    os.kill(_pid_of(platform, f"worker-{worker}"), signal.SIGKILL)
    written = {e.event_id for e in config.events() if e.call_id == call_id}
    _ends_as_worker_lost(database, call_id, written)
    wait_answering("127.0.0.1", config.worker_base_port + worker, timeout_s=20)
    proc.wait(60)


def test_a_hung_worker_is_killed_and_its_call_ends_as_worker_lost(
    platform: Running, config: PlatformConfig, database: Engine, tmp: Path
) -> None:
    proc, call_id, worker = _call_up(config, tmp, "hung")
    wait_for(lambda: _stored(database, call_id) is not None, 20, "the call in storage")
    pid = _pid_of(platform, f"worker-{worker}")
    os.kill(pid, signal.SIGSTOP)
    written = {e.event_id for e in config.events() if e.call_id == call_id}
    _ends_as_worker_lost(database, call_id, written)
    assert re.search(rf"process hung; killing it\s+child=worker-{worker}", platform.log())
    assert not Path(f"/proc/{pid}").exists()
    wait_answering("127.0.0.1", config.worker_base_port + worker, timeout_s=20)
    assert _pid_of(platform, f"worker-{worker}") != pid
    proc.wait(60)


def test_a_hung_ingester_is_restarted_and_stores_what_came_meanwhile(
    platform: Running, config: PlatformConfig, database: Engine, tmp: Path
) -> None:
    pid = _pid_of(platform, "ingest")
    os.kill(pid, signal.SIGSTOP)
    since = time.monotonic_ns()
    [result] = dial(f"sip:100@127.0.0.1:{config.sip_port}", tmp, hold=0.5, name="meanwhile")
    assert result["answered"]
    [call_id] = {
        e.call_id
        for e in config.events()
        if e.kind is CallEventKind.STARTED and e.t_mono_ns >= since
    }
    # Its heartbeat goes stale (20 s), three probes fail, the process group is killed.
    wait_for(lambda: _stored(database, call_id) is not None, 60, "the call stored after restart")
    assert re.search(r"process hung; killing it\s+child=ingest", platform.log())
    assert not Path(f"/proc/{pid}").exists()
    assert _pid_of(platform, "ingest") != pid


def test_stopping_refuses_new_calls_then_hangs_up_with_bye(
    platform: Running, config: PlatformConfig, tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wait_edge_sees_workers(config)
    proc, _, _ = _call_up(config, tmp, "stopping")
    time.sleep(2.0)
    monkeypatch.setenv("PARLEY_CONFIG", str(config.tmp / "parley.yaml"))
    drain_edge(Settings().edge_config())  # what the stop does first
    invite = Request("INVITE", f"sip:100@127.0.0.1:{config.sip_port}")
    invite.body = PCMU_SDP.format(host="127.0.0.1", port=40000)
    refused = exchange(invite, "127.0.0.1", config.sip_port)
    assert refused is not None and refused.code == 503

    assert platform.stop(timeout=30) == 0
    proc.wait(30)
    result = (tmp / "stopping.json").read_text()
    assert '"reason": "Normal call clearing"' in result  # the worker's BYE, through the edge
    log = platform.log()
    order = [
        log.index("edge drained"),
        log.rindex("process stopped  child=worker-"),
        log.index("process stopped  child=sip-edge"),
        log.index("process stopped  child=api"),
    ]
    assert order == sorted(order), log[-3000:]
