"""Which lines a media worker can serve right now: those whose model server answers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agent.health import ServerHealth, health_url
from telephony.lines import Line


class LineReadiness:
    """Ready when the line's model server (if it has one) answers its health probe.

    `server_of(line)` names the session URL a line's calls go to, or None for a line that
    needs no server (the echo test). One prober per distinct server, however many lines.
    """

    def __init__(
        self,
        lines: tuple[Line, ...],
        server_of: Callable[[Line], str | None],
        *,
        interval_s: float = 1.0,
    ) -> None:
        self._by_line: dict[str, ServerHealth | None] = {}
        probers: dict[str, ServerHealth] = {}
        for line in lines:
            url = server_of(line)
            if url is None:
                self._by_line[line.name] = None
                continue
            target = health_url(url)
            if target not in probers:
                probers[target] = ServerHealth(target, interval_s=interval_s)
            self._by_line[line.name] = probers[target]
        self.probers = tuple(probers.values())

    def __call__(self, line: Line) -> bool:
        health = self._by_line.get(line.name)
        return health is None or health.ready

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(prober.run(stop) for prober in self.probers))
