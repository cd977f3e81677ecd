"""What the API's GET /metrics serves: its own process's figures and the platform's.

On a single host the API is the one scrape target: besides its own process it collects the
media workers' figures files (telephony.metrics), the edge's statistics (telephony.edge_stats)
and the event pipeline's backlog (admin.pipeline_lag), each at scrape time. The engine serves
its own GET /metrics (agent/metrics.py). No figure carries personal data; docs/operators.md
lists them.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)

from admin.pipeline_lag import PipelineCollector, redis_stream
from telephony.edge_stats import EdgeCollector
from telephony.metrics import WorkerFiguresCollector

if TYPE_CHECKING:
    from admin.settings import Settings


def process_registry() -> CollectorRegistry:
    """A registry with this process's own figures (CPU, memory, open files, GC, Python)."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def platform_registry(settings: Settings) -> CollectorRegistry:
    """The API process's figures and those of the platform `settings` describe."""
    registry = process_registry()
    events_dir = settings.events_dir()
    registry.register(WorkerFiguresCollector(events_dir))
    registry.register(EdgeCollector(settings.edge_config().run_dir))
    stream = None
    if settings.events_carrier() == "redis" and settings.redis_url:
        events = settings.events
        stream = redis_stream(
            settings.redis_url,
            stream=events.stream,
            group=events.group,
            source=events.source or socket.gethostname(),
        )
    registry.register(PipelineCollector(events_dir, redis_stream=stream))
    return registry
