"""Prometheus figures: the event-to-figure mapping, the files workers write, the edge's and the
pipeline's collectors, and the real thing: the API's and the engine's GET /metrics, parsed."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from admin.api.app import create_app_from_settings
from admin.ingest import OFFSETS_FILE
from admin.pipeline_lag import PipelineCollector, RedisStream
from admin.settings import Settings
from agent.hub import HubStats
from agent.metrics import EngineMetrics, TurnTimes
from agent.resample import resample
from telephony.edge import EdgeConfig, WorkerAddress, kamailio_command, write_files
from telephony.edge_stats import EdgeCollector, edge_families, parse_statistics
from telephony.events import CallEvent, CallEventKind, JsonlOutlet, MemoryOutlet
from telephony.metrics import (
    MeteredOutlet,
    WorkerFigures,
    WorkerFiguresCollector,
    clear_figures,
    end_reason,
    metered,
    reject_labels,
)
from tests.private_servers import PrivateRedis
from tests.support import EngineProcess, PlatformConfig, Running, dial, free_port_block

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

CALL = "c" * 32
NUMBER = "+15551234567"


def samples(text: str) -> Samples:
    """Every sample of a scrape, by name and labels (the parser rejects a malformed page)."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: Samples, metric: str, /, **labels: str) -> float | None:
    return found.get((metric, frozenset(labels.items())))


def scrape(registry: CollectorRegistry) -> Samples:
    return samples(generate_latest(registry).decode())


def event(kind: CallEventKind, /, **data: object) -> CallEvent:
    return CallEvent(CALL, kind, dict(data))


# --- the event-to-figure mapping -------------------------------------------------------------


def test_a_call_is_counted_from_start_to_end_with_its_media_as_increases() -> None:
    figures = WorkerFigures()
    figures.observe(event(CallEventKind.STARTED, **{"from": NUMBER, "to": "100"}))
    assert figures.registry.get_sample_value("parley_worker_active_calls") == 1
    media = {"rx_packets": 100, "rx_lost": 2, "rx_jitter_ms": 4.0, "underruns": 1}
    figures.observe(event(CallEventKind.MEDIA_STATS, **media, frames_out=40))
    figures.observe(event(CallEventKind.MEDIA_STATS, **{**media, "rx_packets": 150}))
    final = {"rx_packets": 180, "rx_lost": 5, "rx_jitter_ms": 12.0, "underruns": 3}
    figures.observe(event(CallEventKind.ENDED, reason="hangup", media=final))

    found = scrape(figures.registry)
    assert value(found, "parley_worker_active_calls") == 0
    assert value(found, "parley_worker_calls_started_total") == 1
    assert value(found, "parley_worker_calls_ended_total", reason="hangup") == 1
    # Cumulative per-call counters add up to the call's final figures, counted once.
    assert value(found, "parley_worker_rx_packets_total") == 180
    assert value(found, "parley_worker_rx_lost_packets_total") == 5
    assert value(found, "parley_worker_late_frames_total") == 3
    assert value(found, "parley_worker_frames_out_total") == 40
    assert value(found, "parley_worker_rx_jitter_seconds_count") == 3
    assert value(found, "parley_worker_rx_jitter_seconds_bucket", le="0.005") == 2
    assert value(found, "parley_worker_events_total", kind="call.media_stats") == 2
    assert NUMBER not in generate_latest(figures.registry).decode()


def test_rejects_are_counted_by_status_and_cause_without_the_dialled_number() -> None:
    figures = WorkerFigures()
    figures.observe(event(CallEventKind.REJECTED, status=503, to=NUMBER, reason="not_ready"))
    figures.observe(event(CallEventKind.REJECTED, status=404, to=NUMBER))
    figures.observe(event(CallEventKind.REJECTED, status=503, reason="Caller " + NUMBER))
    found = scrape(figures.registry)
    rejected = "parley_worker_calls_rejected_total"
    assert value(found, rejected, status="503", cause="not_ready") == 1
    assert value(found, rejected, status="404", cause="no_line") == 1
    assert value(found, rejected, status="503", cause="other") == 1
    assert NUMBER not in generate_latest(figures.registry).decode()
    assert value(found, "parley_worker_active_calls") == 0


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("hangup", "hangup"),
        ("sip_487", "sip_487"),
        ("agent:the caller said goodbye", "agent"),
        ("consent_declined", "consent_declined"),
        ("Bye " + NUMBER, "other"),
        (None, "other"),
        ("x" * 41, "other"),
    ],
)
def test_end_reasons_become_short_labels(reason: object, label: str) -> None:
    assert end_reason(reason) == label


def test_reject_labels_never_carry_a_status_that_is_not_one() -> None:
    assert reject_labels({"status": "503; drop table", "reason": "not_ready"}) == (
        "other",
        "not_ready",
    )
    assert reject_labels({"status": True}) == ("other", "unspecified")


def test_agent_events_give_turn_latency_barge_ins_and_handoffs() -> None:
    figures = WorkerFigures()
    turn = {"endpointing_ms": 250, "asr_ms": 40, "responder_ms": 30, "first_audio_ms": 90}
    figures.observe(event(CallEventKind.AGENT, event="end_of_turn", end_reason="question", **turn))
    figures.observe(event(CallEventKind.AGENT, event="end_of_turn", asr_ms=55, end_reason="?"))
    figures.observe(event(CallEventKind.AGENT, event="barge_in"))
    figures.observe(event(CallEventKind.AGENT, event="handoff_requested", reason="asked"))
    figures.observe(event(CallEventKind.AGENT, event="caller_transcript", text=NUMBER))
    found = scrape(figures.registry)
    latency = "parley_worker_turn_latency_seconds"
    assert value(found, f"{latency}_count", end_reason="question") == 1
    assert value(found, f"{latency}_sum", end_reason="question") == pytest.approx(0.37)
    assert value(found, f"{latency}_count", end_reason="other") is None  # incomplete turn
    assert value(found, "parley_worker_turn_stage_seconds_count", stage="asr") == 2
    assert value(found, "parley_worker_barge_ins_total") == 1
    assert value(found, "parley_worker_handoffs_requested_total") == 1
    assert NUMBER not in generate_latest(figures.registry).decode()


def test_turn_times_take_nothing_implausible() -> None:
    times = TurnTimes.of({"endpointing_ms": -5, "responder_ms": "10", "first_audio_ms": True})
    assert times.total is None
    assert times.stages == {}
    assert times.end_reason == "other"


def test_a_broken_figure_never_costs_the_event() -> None:
    class Broken(WorkerFigures):
        def observe(self, event: CallEvent) -> None:
            raise RuntimeError("bug in the figures")

    inner = MemoryOutlet()
    outlet = MeteredOutlet(inner, Broken())
    outlet.emit(event(CallEventKind.STARTED))
    outlet.emit(event(CallEventKind.ENDED, reason="hangup", media="not a dict"))
    assert [e.kind for e in inner.events] == [CallEventKind.STARTED, CallEventKind.ENDED]


def test_odd_event_data_is_counted_without_raising() -> None:
    figures = WorkerFigures()
    figures.observe(event(CallEventKind.MEDIA_STATS, rx_packets="many", rx_jitter_ms=None))
    figures.observe(event(CallEventKind.ENDED, media={"rx_packets": -1, "underruns": 2.5}))
    found = scrape(figures.registry)
    assert value(found, "parley_worker_rx_packets_total") == 0
    assert value(found, "parley_worker_late_frames_total") == 2
    assert value(found, "parley_worker_calls_ended_total", reason="other") == 1


# --- the workers' figures files ---------------------------------------------------------------


def test_figures_files_are_collected_per_worker_and_stale_ones_reported_down(
    tmp_path: Path,
) -> None:
    for index in (0, 1):
        outlet = metered(JsonlOutlet(tmp_path / f"worker-{index}.jsonl"))
        outlet.emit(CallEvent(f"{index}" * 32, CallEventKind.STARTED))
        outlet.close()
    old = time.time() - 60
    os.utime(tmp_path / "worker-1.prom", (old, old))
    (tmp_path / "worker-x.prom").write_text("not a worker's file\n")

    registry = CollectorRegistry()
    registry.register(WorkerFiguresCollector(tmp_path))
    found = scrape(registry)
    assert value(found, "parley_worker_up", worker="0") == 1
    assert value(found, "parley_worker_up", worker="1") == 0
    assert value(found, "parley_worker_active_calls", worker="0") == 1
    assert value(found, "parley_worker_active_calls", worker="1") is None  # not running
    assert not any(name.endswith("_created") for name, _ in found)

    assert clear_figures(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.glob("*.prom")) == ["worker-x.prom"]


def test_a_worker_writes_its_figures_within_a_second_or_two(tmp_path: Path) -> None:
    outlet = metered(JsonlOutlet(tmp_path / "worker-3.jsonl"))
    try:
        outlet.emit(event(CallEventKind.STARTED))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            text = (tmp_path / "worker-3.prom").read_text()
            if "parley_worker_active_calls 1.0" in text:
                break
            time.sleep(0.1)
        assert "parley_worker_active_calls 1.0" in text
    finally:
        outlet.close()


# --- the edge's statistics ---------------------------------------------------------------------

KAMCMD_OUTPUT = """core:rcv_requests = 12
dialog:active_dialogs = 2
script:parley_calls_routed = 7
script:parley_rejected_no_worker = 3
script:parley_rejected_cps = 1
script:parley_banned_sources = 0
sl:5xx_replies = 4
tmx:5xx_transactions = 3
"""


def test_kamcmd_statistics_become_rejects_by_cause_and_kamailio_stats() -> None:
    stats = parse_statistics(KAMCMD_OUTPUT)
    assert stats[("script", "parley_rejected_no_worker")] == 3
    registry = CollectorRegistry()

    class Fixed:
        def collect(self) -> Iterator[object]:
            yield from edge_families(stats)

    registry.register(Fixed())  # type: ignore[arg-type]
    found = scrape(registry)
    assert value(found, "parley_edge_rejected_total", cause="no_worker") == 3
    assert value(found, "parley_edge_rejected_total", cause="cps") == 1
    assert value(found, "parley_edge_calls_routed_total") == 7
    assert value(found, "parley_edge_banned_sources_total") == 0
    assert value(found, "parley_edge_active_dialogs") == 2
    assert value(found, "parley_edge_kamailio_stat", group="sl", name="5xx_replies") == 4
    assert (
        value(found, "parley_edge_kamailio_stat", group="script", name="parley_calls_routed")
        is None
    )


@pytest.mark.parametrize("text", ["core:rcv_requests 12", "error: no such command", "a:b = x"])
def test_output_that_is_not_statistics_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kamailio statistic"):
        parse_statistics(text)


def test_an_edge_that_is_not_running_is_reported_down_not_an_error(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    registry.register(EdgeCollector(tmp_path))
    found = scrape(registry)
    assert value(found, "parley_edge_up") == 0
    assert not any(name.startswith("parley_edge_rejected") for name, _ in found)


# --- the event pipeline's backlog ---------------------------------------------------------------


def _spool(folder: Path, events: int) -> list[int]:
    """Writes `events` events to worker-0's spool; returns each line's length in bytes."""
    outlet = JsonlOutlet(folder / "worker-0.jsonl")
    emitted = [event(CallEventKind.DTMF, digit="1") for _ in range(events)]
    for each in emitted:
        outlet.emit(each)
    outlet.close()
    return [len(each.to_json()) + 1 for each in emitted]


def test_the_file_carrier_backlog_is_what_the_ingester_has_not_taken(tmp_path: Path) -> None:
    sizes = _spool(tmp_path, 3)
    registry = CollectorRegistry()
    registry.register(PipelineCollector(tmp_path))
    found = scrape(registry)
    assert value(found, "parley_events_spool_backlog_bytes", spool="worker-0") == sum(sizes)
    age = value(found, "parley_events_spool_backlog_age_seconds", spool="worker-0")
    assert age is not None and 0 <= age < 60

    (tmp_path / OFFSETS_FILE).write_text(json.dumps({"worker-0": f"1:{sum(sizes)}"}))
    found = scrape(registry)
    assert value(found, "parley_events_spool_backlog_bytes", spool="worker-0") == 0
    assert value(found, "parley_events_spool_backlog_age_seconds", spool="worker-0") == 0


def test_the_redis_carrier_backlog_lag_and_pending(tmp_path: Path) -> None:
    sizes = _spool(tmp_path, 2)
    with PrivateRedis() as server:
        client = redis.Redis.from_url(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        stream = RedisStream(client, "parley:events", "parley-ingest", "host-a")
        client.hset(stream.offsets_key, "host-a/worker-0", f"1:{sizes[0]}")
        client.hset(stream.offsets_key, "host-b/worker-0", "1:0")  # another host's spool
        client.xgroup_create(stream.stream, stream.group, id="0", mkstream=True)
        for index in range(3):
            client.xadd(stream.stream, {"id": str(index)})
        client.xreadgroup(stream.group, "ingester", {stream.stream: ">"}, count=1)

        registry = CollectorRegistry()
        registry.register(PipelineCollector(tmp_path, redis_stream=stream))
        found = scrape(registry)
        assert value(found, "parley_events_stream_up") == 1
        assert value(found, "parley_events_spool_backlog_bytes", spool="worker-0") == sizes[1]
        assert value(found, "parley_events_stream_lag", group="parley-ingest") == 2
        assert value(found, "parley_events_stream_pending", group="parley-ingest") == 1

        server.stop()
        started = time.monotonic()
        found = scrape(registry)
        assert time.monotonic() - started < 3
        assert value(found, "parley_events_stream_up") == 0
        assert value(found, "parley_events_spool_backlog_bytes", spool="worker-0") is None


# --- the real thing: a worker, an edge, the API and the engine ---------------------------------


def _api_metrics(settings: Settings) -> Samples:
    with TestClient(create_app_from_settings(settings)) as client:
        response = client.get("/metrics")  # no login
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert NUMBER not in response.text
    return samples(response.text)


@pytest.mark.sip
def test_api_metrics_include_a_real_workers_figures_after_a_call(
    worker: Running, worker_config: PlatformConfig, worker_uri: str, tmp: Path
) -> None:
    result = dial(worker_uri, tmp, hold=1.5)
    assert result[0]["answered"], result
    settings = Settings(data_dir=worker_config.tmp / "var")
    figures = worker_config.tmp / "var" / "events" / "worker-0.prom"
    deadline = time.monotonic() + 10
    while "parley_worker_calls_ended_total" not in figures.read_text():
        assert time.monotonic() < deadline, figures.read_text()
        time.sleep(0.2)

    found = _api_metrics(settings)
    assert value(found, "parley_worker_up", worker="0") == 1
    assert (value(found, "parley_worker_calls_started_total", worker="0") or 0) >= 1
    ended = [v for (name, labels), v in found.items() if name == "parley_worker_calls_ended_total"]
    assert sum(ended) >= 1
    assert value(found, "parley_worker_active_calls", worker="0") == 0
    assert (value(found, "parley_worker_rx_packets_total", worker="0") or 0) > 50
    assert (value(found, "parley_worker_frames_out_total", worker="0") or 0) > 50
    assert value(found, "parley_worker_late_frames_total", worker="0") is not None
    # Nothing ingests this worker's spool: its events wait, and the figures say so.
    backlog = value(found, "parley_events_spool_backlog_bytes", spool="worker-0")
    assert backlog is not None and backlog > 0
    # The API's own process, and an edge that is not running here.
    assert value(found, "process_cpu_seconds_total") is not None
    assert value(found, "parley_edge_up") == 0


def _bye_outside_any_dialog(port: int) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        sock.bind(("127.0.0.1", 0))
        local = int(sock.getsockname()[1])
        request = (
            "BYE sip:someone@203.0.113.9:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-metrics-1\r\n"
            "From: <sip:a@127.0.0.1>;tag=1\r\n"
            f"To: <sip:b@127.0.0.1:{port}>;tag=2\r\n"
            "Call-ID: parley-metrics-test\r\n"
            "CSeq: 2 BYE\r\n"
            "Max-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.sendto(request.encode(), ("127.0.0.1", port))
        return sock.recv(65535).decode(errors="replace")


@pytest.mark.sip
def test_api_metrics_include_a_real_edges_statistics(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    port = free_port_block(2)
    edge = EdgeConfig(
        listen_host="127.0.0.1",
        listen_port=port,
        workers=(WorkerAddress("127.0.0.1", port + 1),),
        run_dir=settings.edge_config().run_dir,
    )
    log_path = tmp_path / "kamailio.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            kamailio_command(edge, write_files(edge)), stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 10
        reply = ""
        while not reply:
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            try:
                reply = _bye_outside_any_dialog(port)
            except (TimeoutError, ConnectionRefusedError):
                time.sleep(0.1)
        assert reply.startswith("SIP/2.0 403"), reply
        found = _api_metrics(settings)
        assert value(found, "parley_edge_up") == 1
        assert value(found, "parley_edge_rejected_total", cause="relay") == 1
        assert value(found, "parley_edge_rejected_total", cause="no_worker") == 0
        assert value(found, "parley_edge_active_dialogs") == 0
        requests = value(found, "parley_edge_kamailio_stat", group="core", name="rcv_requests")
        assert requests is not None and requests >= 1
    finally:
        proc.terminate()
        proc.wait(10)
    # Once the edge is gone the page still answers, and says so.
    assert value(_api_metrics(settings), "parley_edge_up") == 0


def test_engine_metrics_count_sessions_model_work_and_turns() -> None:
    live = {"sessions": 2}
    metrics = EngineMetrics(
        sessions=lambda: live["sessions"], stats=lambda: HubStats(vad_batches=5)
    )
    turn = {"endpointing_ms": 300, "responder_ms": 20, "first_audio_ms": 80}
    metrics.observe("parley.turn_latency", {**turn, "end_reason": "complete", "asr_ms": 40})
    metrics.observe("response.output_audio.delta", {"delta": "AAAA"})
    found = samples(metrics.exposition())
    assert value(found, "parley_engine_sessions") == 2
    assert value(found, "parley_engine_vad_batches_total") == 5
    assert value(found, "parley_engine_prerender_done") == 0
    latency = "parley_engine_turn_latency_seconds"
    assert value(found, f"{latency}_sum", end_reason="complete") == pytest.approx(0.4)
    assert value(found, "parley_engine_turn_stage_seconds_count", stage="asr") == 1


def _engine_metrics(engine: EngineProcess) -> Samples:
    url = f"http://127.0.0.1:{engine.port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return samples(answer.read().decode())


def _one_spoken_turn(port: int) -> dict[str, object]:
    """Asks the engine one question over its Realtime socket; returns its turn latency."""
    from tests.engine_harness import silence, speak

    question = (speak("What are your opening hours?").astype("<i2")).tobytes()
    pcm = resample(question + silence(2500).tobytes(), 16_000, 24_000)

    async def talk() -> dict[str, object]:
        async with connect(f"ws://127.0.0.1:{port}/v1/realtime", max_size=2**22) as ws:

            async def send_audio() -> None:
                await asyncio.sleep(6.0)  # let the greeting finish
                for offset in range(0, len(pcm), 960):
                    chunk = base64.b64encode(pcm[offset : offset + 960]).decode()
                    await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
                    await asyncio.sleep(0.02)
                silent = base64.b64encode(bytes(960)).decode()
                while True:  # the line stays open, as a phone's does
                    await ws.send(
                        json.dumps({"type": "input_audio_buffer.append", "audio": silent})
                    )
                    await asyncio.sleep(0.02)

            sender = asyncio.create_task(send_audio())
            try:
                async with asyncio.timeout(40):
                    async for message in ws:
                        received = json.loads(message)
                        if received.get("type") == "parley.turn_latency":
                            return dict(received)
            finally:
                sender.cancel()
        raise AssertionError("the engine ended the session without a turn")

    return asyncio.run(talk())


@pytest.mark.slow
def test_the_engine_serves_metrics_with_turn_latency(engine: EngineProcess) -> None:
    before = _engine_metrics(engine)
    assert value(before, "parley_engine_sessions") == 0
    assert value(before, "parley_engine_vad_batches_total") is not None
    assert value(before, "process_resident_memory_bytes") is not None

    def turns(found: Samples) -> float:
        return sum(
            v
            for (name, _), v in found.items()
            if name == "parley_engine_turn_latency_seconds_count"
        )

    latency = _one_spoken_turn(engine.port)
    deadline = time.monotonic() + 5
    after = _engine_metrics(engine)
    while value(after, "parley_engine_sessions") != 0 and time.monotonic() < deadline:
        time.sleep(0.1)  # the server notices the closed socket
        after = _engine_metrics(engine)
    assert turns(after) == turns(before) + 1, latency
    assert (value(after, "parley_engine_vad_windows_total") or 0) > (
        value(before, "parley_engine_vad_windows_total") or 0
    )
    assert value(after, "parley_engine_sessions") == 0
