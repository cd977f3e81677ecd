"""A line whose model server is not up refuses calls with 503 + Retry-After; a model that dies
mid-call leaves the caller with an apology, never dead air, and on a line whose callers
supervisors take, waiting for one of them (escalated as a model failure) instead of dropped."""

from __future__ import annotations

import asyncio
import http
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response as HttpResponse

from telephony.events import CallEventKind
from tests.sip_raw import PCMU_SDP, Request, exchange
from tests.support import (
    PlatformConfig,
    answered_since,
    dial,
    escalation_steps,
    free_port_block,
    read_wav,
    start_platform,
    start_worker,
)

pytestmark = pytest.mark.sip


def _embedded_line(tmp: Path, engine_port: int) -> PlatformConfig:
    return PlatformConfig(
        tmp,
        lines=[{"name": "main", "numbers": ["100"], "agent": "embedded"}],
        extra={"engine": {"url": f"ws://127.0.0.1:{engine_port}/v1/realtime"}},
    )


def test_a_line_whose_engine_is_down_refuses_calls_with_retry_after(tmp: Path) -> None:
    config = _embedded_line(tmp, free_port_block(1))  # nothing listens there
    worker = start_worker(config)
    try:
        invite = Request("INVITE", f"sip:100@127.0.0.1:{config.worker_base_port}")
        invite.body = PCMU_SDP.format(host="127.0.0.1", port=40000)
        response = exchange(invite, "127.0.0.1", config.worker_base_port)
    finally:
        assert worker.stop() == 0
    assert response is not None
    assert response.code == 503
    assert response.header("Retry-After") == "5"
    [rejected] = [e for e in config.events() if e.kind is CallEventKind.REJECTED]
    assert rejected.data["reason"] == "not_ready"
    assert not [e for e in config.events() if e.kind is CallEventKind.ANSWERED]


@pytest.fixture
def dying_engine() -> Iterator[int]:
    """A model server that is healthy but whose sessions die a second after they open."""
    port = free_port_block(1)
    ready = threading.Event()
    stop: list[asyncio.Event] = []

    def health(connection: ServerConnection, request: HttpRequest) -> HttpResponse | None:
        if request.path.startswith("/healthz"):
            return connection.respond(http.HTTPStatus.OK, '{"status": "ok"}')
        return None

    async def session(ws: ServerConnection) -> None:
        async def read_everything() -> None:  # as a live engine does, until it crashes
            async for _ in ws:
                pass

        reader = asyncio.create_task(read_everything())
        await asyncio.sleep(1.0)
        await ws.close(1011, "engine crashed")
        reader.cancel()

    async def main() -> None:
        stop.append(asyncio.Event())
        async with serve(session, "127.0.0.1", port, process_request=health):
            ready.set()
            await stop[0].wait()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    ready.wait(10)
    yield port
    loop.call_soon_threadsafe(stop[0].set)
    thread.join(10)


def test_engine_lost_mid_call_plays_the_apology_then_hangs_up(tmp: Path, dying_engine: int) -> None:
    config = _embedded_line(tmp, dying_engine)
    worker = start_worker(config)
    try:
        [result] = dial(f"sip:100@127.0.0.1:{config.worker_base_port}", tmp, hold=15, max_s=20)
    finally:
        assert worker.stop() == 0
    assert result["answered"]
    assert result["reason"] != "rtp_timeout"
    talk_s = (result["ended_mono_ns"] - result["answered_mono_ns"]) / 1e9
    assert 5.0 < talk_s < 8.5, "the worker should hang up right after the apology"
    audio = read_wav(Path(result["recording"]))
    frames = audio[: len(audio) // 320 * 320].reshape(-1, 320)
    voiced = np.sqrt(np.mean(frames**2, axis=1)) > 300
    assert voiced[50:90].any(), "the apology did not start within a moment of the loss"
    assert voiced.sum() * 0.02 > 3.0, "the caller did not hear the apology"
    kinds = [e.kind for e in config.events()]
    assert CallEventKind.SESSION_FAILED in kinds
    [ended] = [e for e in config.events() if e.kind is CallEventKind.ENDED]
    assert ended.data["reason"] == "session_failed"


def test_the_only_engine_dying_on_a_line_people_take_puts_the_caller_on_hold_for_them(
    tmp: Path, dying_engine: int
) -> None:
    """The engine dies a second into the call; the line has a queue and no fallback_transfer.
    The caller hears the apology that asks them to hold and then hold music; the escalation
    service records a model failure and queues the call. Nobody comes within the queue's
    max_wait_s: there being no agent to go back to, the caller is asked to call back and the
    call ends then, not before."""
    config = PlatformConfig(
        tmp,
        lines=[{"name": "main", "numbers": ["100"], "agent": "embedded", "queue": "default"}],
        extra={
            "engine": {"url": f"ws://127.0.0.1:{dying_engine}/v1/realtime"},
            "queues": [{"name": "default", "max_wait_s": 12, "service_level_target_s": 10}],
        },
    )
    platform = start_platform(config, escalation=True)
    try:
        since = time.monotonic_ns()
        [result] = dial(f"sip:100@127.0.0.1:{config.sip_port}", tmp, hold=40, max_s=45)
        call_id = answered_since(config, since)
        steps = escalation_steps(config, call_id)
    finally:
        assert platform.stop(timeout=30) == 0, platform.log()[-3000:]
    assert result["answered"] and result["reason"] != "rtp_timeout", result
    talk_s = (result["ended_mono_ns"] - result["answered_mono_ns"]) / 1e9
    audio = read_wav(Path(result["recording"]))
    frames = audio[: len(audio) // 320 * 320].reshape(-1, 320)
    level = np.sqrt(np.mean(frames**2, axis=1))
    assert (level[50:90] > 300).any(), "the apology did not start within a moment of the loss"
    # The apology (6 s) ends by 8 s; the queue's fallback cannot come before 13 s.
    between = level[int(8 / 0.02) : int(13 / 0.02)]
    assert (between > 100).mean() > 0.2, "no hold music after the apology"
    assert between.max() < 2500, "speech where hold music should be"
    print(f"call of {talk_s:.1f} s; hold music in 8-13 s: {(between > 100).mean():.2f} voiced")
    assert 13.0 < talk_s < 25.0, f"the call lasted {talk_s:.1f} s"
    assert (level[int(13 / 0.02) :] > 2500).sum() > 50, "the caller was not asked to call back"
    events = [e for e in config.events() if e.call_id == call_id]
    kinds = [e.kind for e in events]
    assert CallEventKind.SESSION_FAILED in kinds
    phases = [e.data["phase"] for e in events if e.kind is CallEventKind.PHASE]
    assert phases[-1] == "queued" and "fallback" not in phases, phases
    assert [str(e.data["event"]) for e in steps][:2] == ["request", "enqueue"], steps
    assert steps[0].data.get("reason") == "model_failure", steps[0].data
    [ended] = [e for e in events if e.kind is CallEventKind.ENDED]
    assert ended.data["reason"] == "command:nobody_free", ended.data
