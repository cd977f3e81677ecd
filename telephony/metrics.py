"""A media worker's Prometheus figures, derived from the call events it emits.

Every event leaves a worker through its outlet, so the figures are counted in one place: a
`MeteredOutlet` wraps the outlet, feeds each event to `WorkerFigures` and passes it on. Counting
never raises and never blocks on I/O (it runs on the pjsua2 thread too); a thread of its own
writes the figures, in the Prometheus text format, to `<spool>.prom` beside the worker's event
spool (var/events/worker-0.jsonl: var/events/worker-0.prom) every second while they change and
every few seconds anyway. The API's GET /metrics reads those files (`WorkerFiguresCollector`);
node_exporter's textfile collector can read them too.

Labels hold only bounded, non-personal values: event kinds, end reasons and reject causes as
short identifiers, SIP status codes. Never a number, a digit or a transcript.
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, write_to_textfile
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from agent.metrics import LATENCY_BUCKETS, TurnTimes, ms_to_seconds
from agent.session import EventKind
from telephony.events import CallEvent, CallEventKind, EventOutlet, JsonlOutlet

__all__ = [
    "FiguresFile",
    "MeteredOutlet",
    "WorkerFigures",
    "WorkerFiguresCollector",
    "clear_figures",
    "end_reason",
    "figures_path",
    "label",
    "metered",
    "reject_labels",
]

log = logging.getLogger(__name__)

FIGURES_SUFFIX = ".prom"
WRITE_INTERVAL_S = 1.0  # a change reaches the file within this
HEARTBEAT_S = 5.0  # an unchanged file is written again after this, to show the worker runs
STALE_S = 15.0  # a file not written for this long belongs to a worker that is not running
_LABEL = re.compile(r"[a-z0-9_]{1,40}")
_FILE = re.compile(r"worker-(?P<index>[0-9]{1,4})\.prom")
# Cumulative per-call media counters (call.media_stats, and `media` in call.ended) and the
# counter each one's increase goes to.
_MEDIA_COUNTERS = {
    "rx_packets": "rx_packets",
    "rx_lost": "rx_lost",
    "tx_packets": "tx_packets",
    "frames_in": "frames_in",
    "frames_out": "frames_out",
    "underruns": "late_frames",
    "rx_overflow_drops": "rx_drops",
    "tx_overflow_drops": "tx_drops",
}
JITTER_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2)


def label(text: object, *, default: str = "other") -> str:
    """`text` when it is a short identifier fit for a label, else `default`: a label value
    must never carry free text (it could hold personal data) or grow without bound."""
    value = str(text)
    return value if _LABEL.fullmatch(value) else default


def end_reason(reason: object) -> str:
    """call.ended's reason as a label: `agent:<why>` (the model's words) becomes `agent`."""
    text = str(reason)
    return "agent" if text.startswith("agent:") else label(text)


def reject_labels(data: Mapping[str, object]) -> tuple[str, str]:
    """(status, cause) of a call.rejected event."""
    status = data.get("status")
    code = str(status) if isinstance(status, int) and 100 <= status <= 699 else "other"
    reason = data.get("reason")
    if reason is None:
        return code, "no_line" if code == "404" else "unspecified"
    return code, label(reason)


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return int(value)


class WorkerFigures:
    """The figures of one worker, in a registry of their own. `observe` is pure bookkeeping
    (no I/O) and safe to call from any thread."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.active_calls = Gauge(
            "parley_worker_active_calls", "Calls answered and not yet ended", registry=r
        )
        self.events = Counter(
            "parley_worker_events", "Call events emitted, by kind", ["kind"], registry=r
        )
        self.calls_started = Counter(
            "parley_worker_calls_started", "Calls the worker took", registry=r
        )
        self.calls_ended = Counter(
            "parley_worker_calls_ended",
            "Calls ended, by reason (call.ended)",
            ["reason"],
            registry=r,
        )
        self.calls_rejected = Counter(
            "parley_worker_calls_rejected",
            "Calls refused before answering, by SIP status and cause (call.rejected)",
            ["status", "cause"],
            registry=r,
        )
        self.session_failures = Counter(
            "parley_worker_session_failures",
            "Calls whose model session failed (the fallback prompt played)",
            registry=r,
        )
        self.transfers = Counter("parley_worker_transfers", "Calls transferred", registry=r)
        self.barge_ins = Counter(
            "parley_worker_barge_ins", "Times the caller talked over the agent", registry=r
        )
        self.handoffs = Counter(
            "parley_worker_handoffs_requested",
            "Handoffs to a person the agent asked for",
            registry=r,
        )
        media_help = {
            "rx_packets": ("parley_worker_rx_packets", "RTP packets received"),
            "rx_lost": ("parley_worker_rx_lost_packets", "RTP packets lost on the way in"),
            "tx_packets": ("parley_worker_tx_packets", "RTP packets sent"),
            "frames_in": ("parley_worker_frames_in", "20 ms caller frames taken in"),
            "frames_out": ("parley_worker_frames_out", "20 ms frames played to callers"),
            "late_frames": (
                "parley_worker_late_frames",
                "Frames due mid-utterance with no agent audio ready (playout underruns)",
            ),
        }
        self.media: dict[str, Counter] = {
            key: Counter(name, text, registry=r) for key, (name, text) in media_help.items()
        }
        dropped = Counter(
            "parley_worker_dropped_frames",
            "Frames dropped because a media queue was full, by direction",
            ["direction"],
            registry=r,
        )
        self.media["rx_drops"] = dropped.labels("rx")
        self.media["tx_drops"] = dropped.labels("tx")
        self.jitter = Histogram(
            "parley_worker_rx_jitter_seconds",
            "Mean RTP jitter of a call, sampled at each call.media_stats and at its end",
            buckets=JITTER_BUCKETS,
            registry=r,
        )
        self.turn_latency = Histogram(
            "parley_worker_turn_latency_seconds",
            "The engine's share of voice-to-voice latency per turn: endpointing + responder "
            "+ first audio, by why the turn ended",
            ["end_reason"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.turn_stage = Histogram(
            "parley_worker_turn_stage_seconds",
            "Each stage of a turn's latency, by stage",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._lock = threading.Lock()
        self._live: set[str] = set()
        self._seen: dict[str, dict[str, int]] = {}  # per live call: its last media counters
        self.changed = threading.Event()

    def observe(self, event: CallEvent) -> None:
        with self._lock:
            self.events.labels(event.kind.value).inc()
            self._observe(event)
            self.active_calls.set(len(self._live))
        self.changed.set()

    def _observe(self, event: CallEvent) -> None:
        kind, data = event.kind, event.data
        if kind is CallEventKind.STARTED:
            self.calls_started.inc()
            self._live.add(event.call_id)
        elif kind is CallEventKind.REJECTED:
            self.calls_rejected.labels(*reject_labels(data)).inc()
        elif kind is CallEventKind.MEDIA_STATS:
            self._media(event.call_id, data)
        elif kind is CallEventKind.ENDED:
            media = data.get("media")
            if isinstance(media, dict):
                self._media(event.call_id, media)
            self.calls_ended.labels(end_reason(data.get("reason"))).inc()
            self._live.discard(event.call_id)
            self._seen.pop(event.call_id, None)
        elif kind is CallEventKind.SESSION_FAILED:
            self.session_failures.inc()
        elif kind is CallEventKind.TRANSFERRED:
            self.transfers.inc()
        elif kind is CallEventKind.AGENT:
            self._agent(data)

    def _media(self, call_id: str, stats: Mapping[str, object]) -> None:
        seen = self._seen.setdefault(call_id, {})
        for key, counter in _MEDIA_COUNTERS.items():
            value = _count(stats.get(key))
            if value is None:
                continue
            self.media[counter].inc(max(0, value - seen.get(key, 0)))
            seen[key] = max(value, seen.get(key, 0))
        jitter = ms_to_seconds(stats.get("rx_jitter_ms"))
        if jitter is not None and _count(stats.get("rx_packets")):
            self.jitter.observe(jitter)

    def _agent(self, data: Mapping[str, object]) -> None:
        what = data.get("event")
        if what == EventKind.BARGE_IN:
            self.barge_ins.inc()
        elif what == EventKind.HANDOFF_REQUESTED:
            self.handoffs.inc()
        elif what == EventKind.END_OF_TURN:
            times = TurnTimes.of(data)
            for stage, seconds in times.stages.items():
                self.turn_stage.labels(stage).observe(seconds)
            if times.total is not None:
                self.turn_latency.labels(times.end_reason).observe(times.total)


class FiguresFile:
    """Writes a worker's figures to a .prom file from a thread of its own: within
    WRITE_INTERVAL_S of a change, and every HEARTBEAT_S anyway, so a reader can tell a
    running worker from a file left behind."""

    def __init__(self, figures: WorkerFigures, path: Path) -> None:
        self.figures = figures
        self.path = path
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="metrics-file", daemon=True)

    def start(self) -> None:
        self.write()
        self._thread.start()

    def stop(self) -> None:
        """Stops the thread and writes the figures one last time."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        self.write()

    def write(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_to_textfile(str(self.path), self.figures.registry)
        except OSError as error:
            if not self._failing:
                log.warning(
                    "worker metrics file not written",
                    extra={"path": str(self.path), "error": str(error)},
                )
            self._failing = True
            return
        self._failing = False

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(WRITE_INTERVAL_S):
            now = time.monotonic()
            if self.figures.changed.is_set() or now - last >= HEARTBEAT_S:
                self.figures.changed.clear()
                self.write()
                last = now


class MeteredOutlet:
    """An EventOutlet that counts each event into `figures`, then passes it on."""

    def __init__(
        self, outlet: EventOutlet, figures: WorkerFigures, file: FiguresFile | None = None
    ) -> None:
        self.outlet = outlet
        self.figures = figures
        self.file = file
        self._warned = False

    def emit(self, event: CallEvent) -> None:
        try:
            self.figures.observe(event)
        except Exception as error:  # the figures must never cost an event or a call
            if not self._warned:
                self._warned = True
                log.error(
                    "worker metrics could not count an event",
                    extra={"kind": event.kind.value, "error": repr(error)},
                )
        self.outlet.emit(event)

    def close(self) -> None:
        if self.file is not None:
            self.file.stop()
        self.outlet.close()


def figures_path(spool: Path) -> Path:
    """Where the worker spooling to `spool` writes its figures."""
    return spool.with_suffix(FIGURES_SUFFIX)


def metered(outlet: EventOutlet) -> MeteredOutlet:
    """Wraps a worker's outlet so that its events are counted. A spooling outlet also gets its
    figures written beside the spool, until the process exits."""
    if isinstance(outlet, MeteredOutlet):
        return outlet
    figures = WorkerFigures()
    file = None
    spool = _spool_of(outlet)
    if spool is not None:
        file = FiguresFile(figures, figures_path(spool))
        file.start()
        atexit.register(file.stop)
    return MeteredOutlet(outlet, figures, file)


def _spool_of(outlet: EventOutlet) -> Path | None:
    """The spool behind `outlet`, also when it is one of several a tee feeds."""
    if isinstance(outlet, JsonlOutlet):
        return outlet.spool
    for inner in getattr(outlet, "outlets", ()):
        found = _spool_of(inner)
        if found is not None:
            return found
    return None


def clear_figures(folder: Path) -> int:
    """Deletes the figures files in `folder` (at `parley run` start: a worker that is no longer
    configured must not linger as down). Returns how many."""
    removed = 0
    for path in folder.glob(f"worker-*{FIGURES_SUFFIX}"):
        if _FILE.fullmatch(path.name):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


class WorkerFiguresCollector:
    """Collects the figures files of the workers spooling to `folder`, each labelled with its
    worker; `parley_worker_up` says which files are fresh. A stale file's figures are left out:
    its worker is not running, and its active calls are not."""

    def __init__(self, folder: Path, *, stale_s: float = STALE_S) -> None:
        self.folder = folder
        self.stale_s = stale_s

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "parley_worker_up",
            "1 while the worker writes its figures; 0 when its file is stale",
            labels=["worker"],
        )
        merged: dict[str, Metric] = {}
        now = time.time()
        for index, path in self._files():
            try:
                age = now - path.stat().st_mtime
                text = path.read_text(encoding="utf-8")
            except OSError:
                continue  # deleted between the listing and the read
            fresh = age <= self.stale_s
            up.add_metric([index], 1.0 if fresh else 0.0)
            if fresh:
                _merge(merged, text, index)
        yield up
        yield from merged.values()

    def _files(self) -> list[tuple[str, Path]]:
        found = []
        for path in sorted(self.folder.glob(f"worker-*{FIGURES_SUFFIX}")):
            match = _FILE.fullmatch(path.name)
            if match:
                found.append((str(int(match["index"])), path))
        return found


def _merge(into: dict[str, Metric], text: str, worker: str) -> None:
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as error:
        log.warning("worker metrics file unreadable", extra={"worker": worker, "error": str(error)})
        return
    for family in families:
        if family.name.endswith("_created"):
            continue  # the worker's own creation times: noise once collected
        merged = into.get(family.name)
        if merged is None:
            merged = into[family.name] = Metric(family.name, family.documentation, family.type)
        merged.samples += [
            Sample(s.name, {**s.labels, "worker": worker}, s.value, s.timestamp, s.exemplar)
            for s in family.samples
        ]
