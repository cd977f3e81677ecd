"""The dashboard's feed: one subscription to the live event fan-out per API process, folded
into the board (admin.dashboard.board) and pushed to every browser watching.

Nothing is polled from the database: the events come from the workers' and the escalation
service's fan-out (telephony.fanout.subscribe) as they happen. The only reads are a line's
queue, looked up once per line (and again after `LINE_CACHE_S`) when one of its calls starts.

Each watcher has its own bounded queue of messages. One that falls behind (a browser on a slow
link) is not allowed to hold anybody up: its queue is emptied and it is sent the whole board
again (`{"type": "board"}`, and its open call's detail), so it is right again at once.

Messages (JSON), every one with `t_event` (the event's wall time, for the latency a page sees):
- `{"type": "board", "calls": [card…]}` on joining, and after a resync;
- `{"type": "call", "call": card}` when a card changed;
- `{"type": "ended", "call_id"}` when a call ended;
- `{"type": "detail", "call_id", "call", "transcript", "timeline"}` for the call a watcher
  opened (`watch`), then `{"type": "lines", "call_id", "lines"}` and
  `{"type": "timeline", "call_id", "items"}` as they come.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from admin.dashboard.board import Board, Change
from telephony.events import CallEvent, CallEventKind
from telephony.fanout import RedisChannel, follow, subscribe

log = logging.getLogger("parley.dashboard")

WATCHER_QUEUE = 2000  # messages waiting for one browser before it is resynchronised
LINE_CACHE_S = 60.0

LineQueue = Callable[[str], Awaitable[str | None]]


@dataclass(eq=False, slots=True)
class Watcher:
    """One browser's socket: what it is sent, and the call it has open."""

    name: str
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(WATCHER_QUEUE))
    watching: str | None = None
    resyncs: int = 0


class BoardFeed:
    def __init__(
        self,
        source: Path | RedisChannel,
        *,
        board: Board | None = None,
        line_queue: LineQueue | None = None,
        events: Callable[[], AsyncIterator[CallEvent]] | None = None,
    ) -> None:
        self.source = source
        self._line_queue = line_queue
        self._queues: dict[str, tuple[str | None, float]] = {}
        self.board = board or Board(queue_of_line=self._cached_queue)
        self._events = events or (lambda: subscribe(self.source))
        self._watchers: set[Watcher] = set()
        self.events_seen = 0

    # --- watchers ----------------------------------------------------------------------

    def join(self, name: str) -> Watcher:
        watcher = Watcher(name)
        self._watchers.add(watcher)
        self._send(watcher, self._board_message(time.time()))
        return watcher

    def leave(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def watch(self, watcher: Watcher, call_id: str | None) -> None:
        """Opens one call on the watcher's page (None: closes it); sends what is known."""
        watcher.watching = call_id
        if call_id is not None:
            self._send(watcher, self._detail_message(call_id, time.time()))

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    # --- events ------------------------------------------------------------------------

    async def run(self) -> None:
        """Follows the live events until cancelled; a failing subscription is retried."""
        await follow(self._events, self.handle, who="dashboard")

    async def handle(self, event: CallEvent) -> None:
        """Folds one event into the board and tells the watchers what changed."""
        self.events_seen += 1
        if event.kind is CallEventKind.STARTED:
            await self._learn_queue(event)
        try:
            changes = self.board.apply(event)
        except Exception:  # one bad event must not end every page's feed
            log.exception(
                "live event not shown on the board",
                extra={"call_id": event.call_id, "kind": event.kind.value},
            )
            return
        for change in changes:
            self._publish(change, event.t_wall)

    def _publish(self, change: Change, t_event: float) -> None:
        if change.card is not None:
            self._broadcast({"type": "call", "call": change.card, "t_event": t_event})
        watching = [w for w in self._watchers if w.watching == change.call_id]
        for kind, key, content in (
            ("lines", "lines", change.lines),
            ("timeline", "items", change.timeline),
        ):
            if content and watching:
                text = _dumps(
                    {"type": kind, "call_id": change.call_id, key: content, "t_event": t_event}
                )
                for watcher in watching:
                    self._send(watcher, text)
        if change.ended:
            self._broadcast({"type": "ended", "call_id": change.call_id, "t_event": t_event})

    def _broadcast(self, message: dict[str, Any]) -> None:
        text = _dumps(message)
        for watcher in list(self._watchers):
            self._send(watcher, text)

    def _send(self, watcher: Watcher, text: str) -> None:
        try:
            watcher.queue.put_nowait(text)
        except asyncio.QueueFull:
            self._resync(watcher)

    def _resync(self, watcher: Watcher) -> None:
        """The watcher fell behind: drop what it has not read, send it the board afresh."""
        while not watcher.queue.empty():
            watcher.queue.get_nowait()
        watcher.resyncs += 1
        log.warning(
            "dashboard watcher fell behind; sending the board again",
            extra={"watcher": watcher.name, "resyncs": watcher.resyncs},
        )
        now = time.time()
        watcher.queue.put_nowait(self._board_message(now))
        if watcher.watching is not None:
            watcher.queue.put_nowait(self._detail_message(watcher.watching, now))

    def _board_message(self, t_event: float) -> str:
        return _dumps({"type": "board", "calls": self.board.cards(), "t_event": t_event})

    def _detail_message(self, call_id: str, t_event: float) -> str:
        detail = self.board.detail(call_id)
        if detail is None:
            return _dumps({"type": "unknown", "call_id": call_id, "t_event": t_event})
        return _dumps({"type": "detail", "call_id": call_id, **detail, "t_event": t_event})

    # --- lines' queues -----------------------------------------------------------------

    async def _learn_queue(self, event: CallEvent) -> None:
        line = event.data.get("line")
        if not isinstance(line, str) or self._line_queue is None:
            return
        known = self._queues.get(line)
        if known is not None and time.monotonic() - known[1] < LINE_CACHE_S:
            return
        try:
            queue = await self._line_queue(line)
        except Exception as error:  # the database may be down; the card shows no queue
            log.warning(
                "line's queue not known", extra={"line": line[:64], "error": repr(error)[:200]}
            )
            return
        self._queues[line] = (queue, time.monotonic())

    def _cached_queue(self, line: str | None) -> str | None:
        known = self._queues.get(line) if line is not None else None
        return known[0] if known is not None else None


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
