"""The one playout path: agent speech, prompts and hold audio, paced into a media port.

Audio of any length is cut into 20 ms frames and moved into the port no more than
`ahead_frames` ahead of pjmedia's clock, so that whatever is still upstream can be dropped at
once. What may cut what is decided in one place, `interrupts`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import math
import time
from collections.abc import Callable

from agent.session import FRAME_BYTES, FRAME_MS
from telephony.mediaport import MediaPort

__all__ = ["AHEAD_FRAMES", "Cause", "Playout", "Sound", "interrupts"]

# Queued ahead of the playout clock: enough to ride out scheduling hiccups, small enough that
# anything still upstream can be dropped instantly on a flush.
AHEAD_FRAMES = 10


class Sound(enum.StrEnum):
    """What is playing."""

    SPEECH = "speech"  # the agent talking
    PROMPT = "prompt"  # a recorded or synthesized prompt: disclosure, fallback, goodbye, summary
    HOLD = "hold"  # hold audio and queue announcements


class Cause(enum.StrEnum):
    """Why something might be cut."""

    BARGE_IN = "barge_in"  # the caller spoke over it (the session's ClearPlayout)
    CONTROL = "control"  # call control moved on: hold ended, agent detached, mode changed
    FAILURE = "failure"  # the model failed; the fallback prompt takes over


def interrupts(cause: Cause, sound: Sound) -> bool:
    """The one interruption rule. A caller's speech cuts the agent, never a prompt (a
    disclosure is heard in full) nor hold audio; call control and a failure cut anything (a
    line that lets the caller cut its notice is call control: the worker decides)."""
    if cause is Cause.BARGE_IN:
        return sound is Sound.SPEECH
    return True


class Playout:
    """Paces one port's outgoing audio. `run()` is its task; everything else is non-blocking
    except `play`, which returns when its audio has gone out (or was cut)."""

    def __init__(self, port: MediaPort, *, ahead_frames: int = AHEAD_FRAMES) -> None:
        self.port = port
        self.ahead_frames = ahead_frames
        self.sound = Sound.SPEECH  # what the queued audio is, for the interruption rule
        self._pending: collections.deque[tuple[str, bytes]] = collections.deque()
        self._partial = b""
        self._ready = asyncio.Event()
        self._cuts = 0  # bumped by every flush: a `play` in progress learns it was cut

    def push(self, utterance_id: str, pcm: bytes, sound: Sound = Sound.SPEECH) -> None:
        """Queues audio of any length; a trailing partial frame waits for the next push."""
        self.sound = sound
        data = self._partial + pcm
        whole = len(data) - len(data) % FRAME_BYTES
        for offset in range(0, whole, FRAME_BYTES):
            self._pending.append((utterance_id, data[offset : offset + FRAME_BYTES]))
        self._partial = data[whole:]
        self._ready.set()

    def end(self, utterance_id: str) -> None:
        """The utterance is complete: its last partial frame is padded so it is heard, then its
        end marker goes in (a caller speaking after it played is not a barge-in)."""
        if self._partial:
            self._pending.append((utterance_id, self._partial.ljust(FRAME_BYTES, b"\0")))
            self._partial = b""
        self._pending.append((utterance_id, b""))
        self._ready.set()

    def busy(self) -> bool:
        return bool(self._pending) or self.port.playout_depth() > 0

    def flush(self, cause: Cause) -> tuple[str | None, int, bool] | None:
        """Drops everything queued when `cause` may cut what plays. Returns None when it may
        not; else (utterance id, ms of it heard, whether anything was pending at all)."""
        if not interrupts(cause, self.sound):
            return None
        had_pending = bool(self._pending)
        self._pending.clear()
        self._partial = b""
        self._cuts += 1
        utterance_id, played_ms = self.port.flush()
        return utterance_id, played_ms, had_pending or utterance_id is not None

    async def play(self, tag: str, pcm: bytes, sound: Sound = Sound.PROMPT) -> bool:
        """Plays `pcm` in full and returns True once its last frame is on its way to the
        listener; False when it was cut first."""
        cuts = self._cuts
        self.push(tag, pcm, sound)
        self.end(tag)
        await self.drained(stop=lambda: self._cuts != cuts)
        return self._cuts == cuts

    async def drained(self, *, limit_s: float = math.inf, stop: Callable[[], bool] = bool) -> None:
        """Returns once everything queued has gone out and its last frame is on its way to
        the listener, or after `limit_s`, or as soon as `stop()` is true."""
        deadline = time.monotonic() + limit_s
        while self.busy() and time.monotonic() < deadline:
            if stop():
                return
            await asyncio.sleep(FRAME_MS / 1000)
        await asyncio.sleep(FRAME_MS / 1000)  # the last frame is on its way to the listener

    async def run(self) -> None:
        port = self.port
        pending = self._pending
        ready = self._ready
        while True:
            while pending and port.playout_depth() < self.ahead_frames:
                utterance_id, frame = pending.popleft()
                if frame:
                    port.queue_playout(utterance_id, frame)
                else:
                    port.end_utterance(utterance_id)
            ready.clear()
            if not pending:
                await ready.wait()
                continue
            # The port is full: top it up when half has played, or at once when audio
            # arrives (after a flush emptied both queues, a resumed or new reply must not
            # wait out this pause).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), FRAME_MS / 1000 * (self.ahead_frames // 2))
