"""Several engine servers behind one platform: calls spread over them, and a call whose engine
dies goes on with another.

`EnginePool` is one media worker's view of the engine servers: each one's health (its
`/healthz`, probed in the background) and how many of this worker's sessions it holds. A new
call goes to the ready server with the fewest of them (ties in turn).

`FailoverSession` is an embedded line's session. It keeps what a new engine would need to
take the call over: the conversation so far (the caller's words and what the caller heard
of the agent's) and the caller's audio of the turn under way. When its
engine's connection is lost, that server is marked down at once, a session opens on the
next ready one (no greeting), the conversation is replayed as `conversation.item.create`
items, a turn the old engine heard but did not answer is answered (`response.create`), and
the unanswered audio is sent again, so a question asked while the engine died is still
heard. The call's outputs go on from the new session; the worker sees one `session_moved`
event, with the time the move took. Only when no other server takes the call does the
session fail, and the worker's fallback follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from agent.health import ServerHealth
from agent.realtime import message_item
from agent.remote import END, RealtimeSession, queued_outputs, safe_url
from agent.session import (
    FRAME_MS,
    AgentAudio,
    CallerAudio,
    CallerDtmf,
    EventKind,
    PlayoutReport,
    SessionError,
    SessionEvent,
    SessionOutput,
    pcm_ms,
)

log = logging.getLogger(__name__)

HISTORY_ITEMS = 200  # the turns a new engine is given (an hour of conversation, and more)
UNANSWERED_AUDIO_MS = 15_000  # at most this much of the caller's turn under way, sent again
LEAD_IN_FRAMES = 50  # a second before the old engine heard a turn begin (its VAD's onset lag)


class EnginePool:
    """The engine servers one worker's calls are spread over, by health and load."""

    def __init__(self, health: Mapping[str, ServerHealth]) -> None:
        if not health:
            raise ValueError("an engine pool needs at least one server")
        self.health = dict(health)  # session URL -> its /healthz prober
        self.sessions = dict.fromkeys(self.health, 0)  # this worker's sessions on each
        self._turn = itertools.count()

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(self.health)

    def ready(self) -> bool:
        return any(h.ready for h in self.health.values())

    def choose(self, exclude: Sequence[str] = ()) -> str | None:
        """The ready server with the fewest of this worker's sessions, or None."""
        ready = [url for url, h in self.health.items() if h.ready and url not in exclude]
        if not ready:
            return None
        fewest = min(self.sessions[url] for url in ready)
        least = [url for url in ready if self.sessions[url] == fewest]
        return least[next(self._turn) % len(least)]

    def opened(self, url: str) -> None:
        self.sessions[url] += 1

    def closed(self, url: str) -> None:
        self.sessions[url] = max(0, self.sessions[url] - 1)

    def failed(self, url: str) -> None:
        """A session lost its connection to `url`: no new call goes there until a probe
        says it is back (the prober needs no second failure to believe it)."""
        health = self.health.get(url)
        if health is not None and health.ready:
            log.warning("engine server lost a session; marked down", extra={"url": url})
            health.mark_down(time.monotonic())


OpenAt = Callable[[str, bool], RealtimeSession]  # (url, greet) -> a session, not started


class FailoverSession:
    """A DuplexSession on the pool's engines that moves to another one when its engine dies."""

    def __init__(self, pool: EnginePool, open_at: OpenAt) -> None:
        self.pool = pool
        self.open_at = open_at
        self.url = ""
        self._inner: RealtimeSession | None = None
        self._out: asyncio.Queue[SessionOutput | SessionError | object] = asyncio.Queue()
        self._forward: asyncio.Task[None] | None = None
        self._moving: asyncio.Task[bool] | None = None
        self._closing = False
        self._history: deque[dict[str, Any]] = deque(maxlen=HISTORY_ITEMS)
        self._answered = True  # whether the last caller turn got an answer under way
        self._unheard: deque[CallerAudio] = deque(maxlen=UNANSWERED_AUDIO_MS // FRAME_MS)
        self._frames_in = 0  # caller frames so far (the last of them are `_unheard`)
        # The frame the caller's turn under way began at (with a lead-in), until its words
        # are in: what a new engine must hear again. None: no turn under way.
        self._turn_from: int | None = None
        self._speaking: str | None = None  # the agent utterance under way, and its audio so far
        self._speaking_ms = 0
        self.moves = 0

    async def start(self) -> None:
        tried: list[str] = []
        while (url := self.pool.choose(exclude=tried)) is not None:
            tried.append(url)
            session = self.open_at(url, True)
            try:
                await session.start()
            except SessionError as error:
                if not error.retryable:
                    raise
                self.pool.failed(url)
                continue
            self._attach(url, session)
            return
        raise SessionError(_none_up(tried), retryable=True)

    def _attach(self, url: str, session: RealtimeSession) -> None:
        self.url, self._inner = url, session
        self.pool.opened(url)
        self._forward = asyncio.create_task(self._relay(session), name="engine-relay")

    async def _relay(self, session: RealtimeSession) -> None:
        """The session's outputs onto the call's until it ends; a lost connection starts
        the move (the move reports a failure it cannot get past)."""
        try:
            async for item in session.outputs():
                self._note(item)
                self._out.put_nowait(item)
        except SessionError as error:
            if self._closing or session is not self._inner:
                return
            if error.retryable:
                self._lost(session, str(error))
            else:
                self._out.put_nowait(error)
            return
        if session is self._inner:  # ended as asked
            self._out.put_nowait(END)

    def _note(self, item: SessionOutput) -> None:
        """Keeps what another engine would need: the turns, and the agent's open utterance."""
        if isinstance(item, AgentAudio):
            self._speaking_ms += pcm_ms(item.pcm)
            return
        if not isinstance(item, SessionEvent):
            return
        data = item.data
        if item.kind is EventKind.CALLER_SPEECH_STARTED and self._turn_from is None:
            self._turn_from = self._frames_in - LEAD_IN_FRAMES
        elif item.kind is EventKind.CALLER_TRANSCRIPT:
            self._turn_from = None  # heard and written down: the new engine gets the words
            if str(data.get("text", "")).strip():
                self._history.append(message_item("user", str(data["text"])))
                self._answered = False
        elif item.kind is EventKind.AGENT_UTTERANCE_STARTED:
            self._speaking, self._speaking_ms = str(data.get("utterance_id", "")), 0
            self._answered = True
        elif item.kind is EventKind.AGENT_UTTERANCE_DONE:
            self._speaking = None
        elif item.kind is EventKind.AGENT_TRANSCRIPT:
            said = str(data.get("heard_text") or data.get("text") or "")
            if said.strip():
                self._history.append(message_item("assistant", said))

    def _lost(self, session: RealtimeSession, why: str) -> None:
        """The current session's connection is gone (a read or a send found it so)."""
        if session is self._inner and self._moving is None and not self._closing:
            self._inner = None  # retired: whatever it still says is not the call's
            self._moving = asyncio.create_task(self._move(session, why), name="engine-move")

    async def _move(self, session: RealtimeSession, why: str) -> bool:
        started = time.monotonic()
        old_url = self.url
        self.pool.failed(old_url)
        self.pool.closed(old_url)
        log.warning("engine connection lost; moving the call", extra={"url": old_url})
        if self._speaking is not None:
            # What the caller already has of the cut answer plays out; it ends here.
            self._out.put_nowait(
                SessionEvent(
                    EventKind.AGENT_UTTERANCE_DONE,
                    {"utterance_id": self._speaking, "audio_ms": self._speaking_ms},
                )
            )
            self._speaking = None
        with contextlib.suppress(Exception):
            await session.close()
        tried = [old_url]
        try:
            while (url := self.pool.choose(exclude=tried)) is not None:
                tried.append(url)
                fresh = self.open_at(url, False)
                try:
                    await fresh.start()
                    await fresh.replay(list(self._history), answer=not self._answered)
                    resent = await self._send_unheard(fresh)
                except asyncio.CancelledError:  # the call ended meanwhile
                    with contextlib.suppress(Exception):
                        await fresh.close()
                    raise
                except SessionError as error:
                    log.warning("engine server did not take the call", extra={"url": url})
                    with contextlib.suppress(Exception):
                        await fresh.close()
                    if not error.retryable:
                        break
                    self.pool.failed(url)
                    continue
                if self._closing:
                    await fresh.close()
                    return True
                self.moves += 1
                self._attach(url, fresh)
                self._out.put_nowait(
                    SessionEvent(
                        EventKind.SESSION_MOVED,
                        {
                            "from": safe_url(old_url),
                            "to": safe_url(url),
                            "why": why,
                            "move_ms": round((time.monotonic() - started) * 1000, 1),
                            "turns": len(self._history),
                            "audio_ms": resent * FRAME_MS,
                        },
                    )
                )
                return True
            log.error("no engine server took the call", extra={"tried": len(tried)})
            self._out.put_nowait(SessionError(_none_up(tried), retryable=False))
            return False
        finally:
            self._moving = None

    async def _send_unheard(self, fresh: RealtimeSession) -> int:
        """The caller's turn under way (from a little before the old engine heard it begin),
        or with none the last second (words the old engine had not yet noticed), and what
        arrives while it goes, until it is all sent (the next frame goes to `fresh` by
        itself). Never the quiet before: to a new engine that would be a silence to fill."""
        upto = self._turn_from if self._turn_from is not None else self._frames_in - LEAD_IN_FRAMES
        sent = 0
        while upto < self._frames_in:
            first = self._frames_in - len(self._unheard)  # the number of _unheard[0]
            upto = max(upto, first)
            await fresh.send_audio(self._unheard[upto - first])
            upto += 1
            sent += 1
        return sent

    async def _call(self, send: Callable[[RealtimeSession], Any]) -> None:
        """One request to the current engine; while the call moves, after the move. Once
        no engine took the call, requests go nowhere (the outputs said why)."""
        if self._moving is not None:
            await asyncio.shield(self._moving)
        session = self._inner
        if session is None:
            return
        try:
            await send(session)
        except SessionError as error:
            if self._closing or not error.retryable:
                raise
            self._lost(session, str(error))

    async def send_audio(self, frame: CallerAudio) -> None:
        """Per caller frame (50 a second): kept for a move, then straight to the engine."""
        self._unheard.append(frame)
        self._frames_in += 1
        session = self._inner
        if self._moving is not None or session is None:
            return  # kept in `_unheard`: the new engine gets it (or no engine took the call)
        try:
            await session.send_audio(frame)
        except SessionError as error:
            if self._closing or not error.retryable:
                raise
            self._lost(session, str(error))

    async def send_dtmf(self, digit: CallerDtmf) -> None:
        await self._call(lambda s: s.send_dtmf(digit))

    async def send_instruction(self, text: str) -> None:
        await self._call(lambda s: s.send_instruction(text))

    async def resume(self, note: str | None) -> None:
        await self._call(lambda s: s.resume(note))

    async def playout_report(self, report: PlayoutReport) -> None:
        if self._moving is None:
            await self._call(lambda s: s.playout_report(report))

    def outputs(self) -> AsyncIterator[SessionOutput]:
        return queued_outputs(self._out)

    async def close(self) -> None:
        self._closing = True
        if self._moving is not None:
            self._moving.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._moving
        if self._inner is not None:
            await self._inner.close()
            self.pool.closed(self.url)
        if self._forward is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._forward, timeout=2.0)


def _none_up(tried: Sequence[str]) -> str:
    where = ", ".join(safe_url(url) for url in tried) or "none is ready"
    return f"no engine server took the call (tried: {where})"
