"""The Kamailio edge's statistics as Prometheus figures, read over its control socket.

`kamcmd -s unix:<run_dir>/kamailio_ctl stats.get_statistics all` prints one `group:name = value`
line per statistic: the edge script's own `parley_*` counters (telephony.edge_script.STATS, in
the `script` group) and Kamailio's (core, tmx, sl, dialog, pike, shmem, tcp). A scrape that
finds the edge down, slow or its socket missing reports `parley_edge_up 0`, never an error.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    UnknownMetricFamily,
)

from telephony.edge import CTL_SOCKET_NAME, EdgeUnavailable, find_kamailio

log = logging.getLogger(__name__)

KAMCMD_TIMEOUT_S = 1.0
_LINE = re.compile(r"(?P<group>[\w.-]+):(?P<name>[\w.-]+) = (?P<value>-?[0-9]+)")
_REJECTED = "parley_rejected_"
# The script's other counters, each its own family.
_SCRIPT_COUNTERS = {
    "parley_calls_routed": ("parley_edge_calls_routed", "INVITEs handed to a media worker"),
    "parley_banned_sources": (
        "parley_edge_banned_sources",
        "Sources banned for flooding (pike)",
    ),
    "parley_dropped_banned": (
        "parley_edge_dropped_banned",
        "Requests ignored because their source was banned",
    ),
}

Statistics = dict[tuple[str, str], int]


class EdgeStatsUnavailable(RuntimeError):
    """The edge's statistics could not be read (edge down, socket missing, kamcmd absent)."""


def parse_statistics(text: str) -> Statistics:
    """{(group, name): value} from kamcmd's `stats.get_statistics all` output; ValueError on a
    line that is not `group:name = value`."""
    found: Statistics = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise ValueError(f"not a Kamailio statistic: {line[:80]!r}")
        found[(match["group"], match["name"])] = int(match["value"])
    return found


def find_kamcmd() -> str | None:
    """kamcmd, on PATH or beside kamailio (Debian: /usr/sbin); None when not installed."""
    found = shutil.which("kamcmd")
    if found is not None:
        return found
    try:
        beside = Path(find_kamailio()).with_name("kamcmd")
    except EdgeUnavailable:
        return None
    return str(beside) if os.access(beside, os.X_OK) else None


def read_statistics(
    socket: Path, *, kamcmd: str | None = None, timeout_s: float = KAMCMD_TIMEOUT_S
) -> Statistics:
    """Every statistic of the edge listening on `socket`; raises EdgeStatsUnavailable."""
    program = kamcmd or find_kamcmd()
    if program is None:
        raise EdgeStatsUnavailable("kamcmd is not installed (Debian package kamailio)")
    if not socket.exists():
        raise EdgeStatsUnavailable(f"no edge control socket at {socket}")
    try:
        done = subprocess.run(
            [program, "-s", f"unix:{socket}", "stats.get_statistics", "all"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise EdgeStatsUnavailable(f"kamcmd failed: {error}") from None
    if done.returncode != 0:
        raise EdgeStatsUnavailable(f"kamcmd exited {done.returncode}: {done.stderr.strip()[:200]}")
    try:
        return parse_statistics(done.stdout)
    except ValueError as error:
        raise EdgeStatsUnavailable(str(error)) from None


def edge_families(stats: Statistics) -> list[Metric]:
    """The figures for a set of statistics: rejects by cause, routed calls, bans, the active
    dialogs, and every Kamailio statistic as `parley_edge_kamailio_stat{group, name}`."""
    rejected = CounterMetricFamily(
        "parley_edge_rejected",
        "Requests the edge refused, by cause (docs/operators.md: which answer each cause gets)",
        labels=["cause"],
    )
    script = {
        name: CounterMetricFamily(family, text) for name, (family, text) in _SCRIPT_COUNTERS.items()
    }
    dialogs = GaugeMetricFamily("parley_edge_active_dialogs", "Calls up through the edge")
    kamailio = UnknownMetricFamily(
        "parley_edge_kamailio_stat",
        "Kamailio's own statistics (counters and gauges), as kamcmd stats.get_statistics shows",
        labels=["group", "name"],
    )
    for (group, name), value in sorted(stats.items()):
        if group == "script" and name.startswith(_REJECTED):
            rejected.add_metric([name.removeprefix(_REJECTED)], value)
        elif group == "script" and name in script:
            script[name].add_metric([], value)
        elif group != "script":
            kamailio.add_metric([group, name], value)
            if (group, name) == ("dialog", "active_dialogs"):
                dialogs.add_metric([], value)
    return [rejected, *(f for f in script.values() if f.samples), dialogs, kamailio]


class EdgeCollector:
    """Reads the edge's statistics at each scrape, with a short timeout."""

    def __init__(self, run_dir: Path, *, kamcmd: str | None = None) -> None:
        self.socket = run_dir / CTL_SOCKET_NAME
        self.kamcmd = kamcmd
        self._down_logged = False

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("parley_edge_up", "1 when the edge answered its statistics query")
        try:
            stats = read_statistics(self.socket, kamcmd=self.kamcmd)
        except EdgeStatsUnavailable as error:
            if not self._down_logged:
                log.warning("edge statistics unavailable", extra={"error": str(error)})
                self._down_logged = True
            up.add_metric([], 0)
            yield up
            return
        self._down_logged = False
        up.add_metric([], 1)
        yield up
        yield from edge_families(stats)
