"""Which lines a media worker can serve right now: those whose model server answers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from agent.health import ServerHealth, health_url
from telephony.lines import Line


class LineReadiness:
    """Ready when one of the line's model servers (if it has any) answers its health probe.

    `servers_of(line)` names the session URLs a line's calls may go to (several engine
    servers), or none for a line that needs no server (the echo test, a hosted model). One
    prober per distinct server, however many lines; `health` has them by session URL.
    """

    def __init__(
        self,
        lines: tuple[Line, ...],
        servers_of: Callable[[Line], Sequence[str]],
        *,
        interval_s: float = 1.0,
    ) -> None:
        self.health: dict[str, ServerHealth] = {}
        self._by_line: dict[str, tuple[ServerHealth, ...]] = {}
        probers: dict[str, ServerHealth] = {}
        for line in lines:
            mine = []
            for url in servers_of(line):
                target = health_url(url)
                if target not in probers:
                    probers[target] = ServerHealth(target, interval_s=interval_s)
                self.health[url] = probers[target]
                mine.append(probers[target])
            self._by_line[line.name] = tuple(mine)
        self.probers = tuple(probers.values())

    def __call__(self, line: Line) -> bool:
        servers = self._by_line.get(line.name, ())
        return not servers or any(health.ready for health in servers)

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(prober.run(stop) for prober in self.probers))
