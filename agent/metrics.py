"""The engine server's Prometheus figures: live sessions, the model hub's work, turn latency.

Served at the engine's GET /metrics (agent/server.py). The hub's counters are read at each
scrape; turn latencies are observed from the `parley.turn_latency` events the engine sends
each session (agent/engine.py), so the figures need nothing from the engine itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.turns import EndReason

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0)
TURN_LATENCY_EVENT = "parley.turn_latency"
# The engine's share of voice-to-voice latency, as admin/projection.py adds it up.
_TURN_PARTS = ("endpointing_ms", "responder_ms", "first_audio_ms")
_TURN_STAGES = {
    "endpointing_ms": "endpointing",
    "asr_ms": "asr",
    "responder_ms": "responder",
    "first_audio_ms": "first_audio",
}
_END_REASONS = frozenset(reason.value for reason in EndReason)
# agent.hub.HubStats fields: (family, help, counter?). A field a hub lacks is left out.
_HUB_FIGURES = {
    "vad_batches": ("parley_engine_vad_batches", "VAD forward passes (batched windows)", True),
    "vad_windows": ("parley_engine_vad_windows", "VAD windows scored", True),
    "vad_busy_s": ("parley_engine_vad_busy_seconds", "Time spent in VAD", True),
    "asr_calls": ("parley_engine_asr_passes", "Whisper generate passes", True),
    "asr_utterances": ("parley_engine_asr_utterances", "Utterances transcribed", True),
    "asr_busy_s": ("parley_engine_asr_busy_seconds", "Time spent in ASR", True),
    "tts_calls": ("parley_engine_tts_calls", "Sentences synthesized", True),
    "tts_busy_s": ("parley_engine_tts_busy_seconds", "Time spent in TTS", True),
    "tts_cache_hits": ("parley_engine_tts_cache_hits", "Sentences served from the TTS cache", True),
    "prerendered": ("parley_engine_prerendered_replies", "Fixed replies synthesized ahead", False),
    "prerender_done": ("parley_engine_prerender_done", "1 once prerendering has finished", False),
}


def ms_to_seconds(ms: object) -> float | None:
    """A duration in ms from an event field, in seconds; None when not a plausible one."""
    if isinstance(ms, bool) or not isinstance(ms, int | float) or not 0 <= ms < 3_600_000:
        return None
    return float(ms) / 1000


@dataclasses.dataclass(frozen=True, slots=True)
class TurnTimes:
    """A turn's latency from the fields of `parley.turn_latency` (also what a media worker
    forwards as the `end_of_turn` agent event), in seconds."""

    total: float | None  # the engine's share; None when a part is missing
    stages: dict[str, float]
    end_reason: str  # an EndReason value, or "other"

    @classmethod
    def of(cls, fields: Mapping[str, object]) -> TurnTimes:
        stages = {
            stage: seconds
            for key, stage in _TURN_STAGES.items()
            if (seconds := ms_to_seconds(fields.get(key))) is not None
        }
        parts = [ms_to_seconds(fields.get(key)) for key in _TURN_PARTS]
        total = None if None in parts else sum(part or 0.0 for part in parts)
        reason = str(fields.get("end_reason", ""))
        return cls(total, stages, reason if reason in _END_REASONS else "other")


class EngineMetrics:
    """The figures of one engine server, in a registry of its own."""

    def __init__(self, *, sessions: Callable[[], int], stats: Callable[[], object]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        r.register(_LiveCollector(sessions, stats))
        self.turn_latency = Histogram(
            "parley_engine_turn_latency_seconds",
            "The engine's share of voice-to-voice latency per turn (endpointing + responder "
            "+ first audio), by why the turn ended",
            ["end_reason"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.turn_stage = Histogram(
            "parley_engine_turn_stage_seconds",
            "Each stage of a turn's latency, by stage",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def observe(self, kind: str, fields: Mapping[str, object]) -> None:
        """Takes note of an event the engine sends a session; only turn latencies count."""
        if kind != TURN_LATENCY_EVENT:
            return
        times = TurnTimes.of(fields)
        for stage, seconds in times.stages.items():
            self.turn_stage.labels(stage).observe(seconds)
        if times.total is not None:
            self.turn_latency.labels(times.end_reason).observe(times.total)

    def exposition(self) -> str:
        return generate_latest(self.registry).decode()


class _LiveCollector:
    """Figures read at each scrape: live sessions and the model hub's counters."""

    def __init__(self, sessions: Callable[[], int], stats: Callable[[], object]) -> None:
        self._sessions = sessions
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        live = GaugeMetricFamily("parley_engine_sessions", "Live sessions (calls) on this engine")
        live.add_metric([], self._sessions())
        yield live
        stats = self._stats()
        if not dataclasses.is_dataclass(stats) or isinstance(stats, type):
            return
        values = dataclasses.asdict(stats)
        for field, (name, text, counter) in _HUB_FIGURES.items():
            value = values.get(field)
            if isinstance(value, int | float):
                family = CounterMetricFamily if counter else GaugeMetricFamily
                yield family(name, text, value=float(value))
