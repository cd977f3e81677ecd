"""The per-call media port: 20 ms frames between pjmedia's conference bridge and asyncio.

pjmedia's clock thread calls `onFrameReceived` (caller audio) and `onFrameRequested` (agent
audio) every 20 ms. Both only copy a frame into or out of a bounded deque and return; the
bridge on the asyncio side does the rest. Caller frames overflowing the queue drop the oldest
(counted); an empty playout queue plays silence (an underrun is counted only mid-utterance).
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pjsua2 as pj

from agent.session import FRAME_BYTES, FRAME_MS, SAMPLE_RATE
from telephony.framecopy import read_bytes, write_bytes

SILENCE = bytes(FRAME_BYTES)


@dataclass(frozen=True, slots=True)
class PortCounters:
    frames_in: int
    frames_out: int
    underruns: int
    rx_overflow_drops: int
    tx_overflow_drops: int


@dataclass(slots=True)
class _Playing:
    utterance_id: str
    played_frames: int = 0


class MediaPort(pj.AudioMediaPort):  # type: ignore[misc]
    """One call's audio tap; create and register it on the pjsua2 thread only."""

    def __init__(
        self,
        *,
        rx_capacity: int = 50,
        tx_capacity: int = 1500,
        on_rx: Callable[[], None] | None = None,
        kind: str = "agent",
        jitter_frames: int = 0,
    ) -> None:
        super().__init__()
        self.kind = kind  # what the worker uses it for (its spares are kept by kind)
        # (pcm, monotonic ns at capture)
        self.rx: collections.deque[tuple[bytes, int]] = collections.deque()
        self._rx_capacity = rx_capacity
        # (utterance id, pcm)
        self.tx: collections.deque[tuple[str, bytes]] = collections.deque()
        self._tx_capacity = tx_capacity
        self._on_rx = on_rx
        # A jitter buffer for audio that arrives over a network (a browser's): once the queue
        # has run dry, nothing plays until this many frames are queued again.
        self._jitter_frames = jitter_frames
        self._primed = jitter_frames == 0
        self._lock = threading.Lock()
        self._playing: _Playing | None = None
        self._played: dict[str, int] = {}
        self.frames_in = 0
        self.frames_out = 0
        self.underruns = 0
        self.rx_overflow_drops = 0
        self.tx_overflow_drops = 0
        self.last_tx_mono_ns = 0

    def reset(self, *, on_rx: Callable[[], None] | None = None) -> None:
        """Ready for its next call: nothing queued, counters at zero. Only for a port with no
        connections in the bridge (no frame callback can run meanwhile)."""
        with self._lock:
            self.rx.clear()
            self.tx.clear()
            self._playing = None
            self._played = {}
            self._primed = self._jitter_frames == 0
            self.frames_in = self.frames_out = self.underruns = 0
            self.rx_overflow_drops = self.tx_overflow_drops = 0
            self.last_tx_mono_ns = 0
            self._on_rx = on_rx

    def create(self, name: str) -> None:
        fmt = pj.MediaFormatAudio()
        fmt.init(pj.PJMEDIA_FORMAT_PCM, SAMPLE_RATE, 1, FRAME_MS * 1000, 16)
        self.createPort(name, fmt)

    # --- pjmedia clock thread: copy and return -------------------------------------------

    def onFrameReceived(self, frame: Any) -> None:  # noqa: N802 (pjsua2's name)
        if frame.type != pj.PJMEDIA_FRAME_TYPE_AUDIO:
            return
        pcm = read_bytes(frame.buf)
        if len(pcm) != FRAME_BYTES:
            return
        rx = self.rx
        was_empty = not rx
        if len(rx) >= self._rx_capacity:
            rx.popleft()
            self.rx_overflow_drops += 1
        rx.append((pcm, time.monotonic_ns()))
        self.frames_in += 1
        if was_empty and self._on_rx is not None:
            self._on_rx()

    def onFrameRequested(self, frame: Any) -> None:  # noqa: N802 (pjsua2's name)
        with self._lock:
            pcm = self._next_frame()
        frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
        write_bytes(frame.buf, pcm)
        frame.size = FRAME_BYTES

    def _next_frame(self) -> bytes:
        if not self._primed:
            if len(self.tx) < self._jitter_frames:
                return SILENCE
            self._primed = True
        while self.tx:
            utterance_id, pcm = self.tx.popleft()
            if not pcm:  # the utterance's end: it has been heard in full
                if self._playing is not None and self._playing.utterance_id == utterance_id:
                    self._playing = None
                continue
            playing = self._playing
            if playing is None or playing.utterance_id != utterance_id:
                # An utterance resumed after a flush (the agent paused for a back-channel)
                # goes on counting: what was heard is a position in the whole utterance.
                playing = self._playing = _Playing(utterance_id, self._played.get(utterance_id, 0))
            playing.played_frames += 1
            self._played[utterance_id] = playing.played_frames
            self.frames_out += 1
            self.last_tx_mono_ns = time.monotonic_ns()
            return pcm
        if self._playing is not None:
            self.underruns += 1
        if self._jitter_frames:
            self._primed = False  # ran dry: fill the jitter buffer again before playing
        return SILENCE

    # --- any thread ----------------------------------------------------------------------

    def queue_playout(self, utterance_id: str, frame_pcm: bytes) -> bool:
        """Queue one 20 ms frame; returns False (and counts it) when the queue was full."""
        with self._lock:
            if len(self.tx) >= self._tx_capacity:
                self.tx.popleft()
                self.tx_overflow_drops += 1
                self.tx.append((utterance_id, frame_pcm))
                return False
            self.tx.append((utterance_id, frame_pcm))
            return True

    def playout_depth(self) -> int:
        """Frames queued for playout (an utterance's end marker counts as one)."""
        return len(self.tx)

    def flush(self) -> tuple[str | None, int]:
        """Drops all queued agent audio at once; returns (utterance id, ms of it played)."""
        with self._lock:
            self.tx.clear()
            playing = self._playing
            self._playing = None
        if playing is None:
            return None, 0
        return playing.utterance_id, playing.played_frames * FRAME_MS

    def played_ms(self, utterance_id: str) -> int:
        with self._lock:
            return self._played.get(utterance_id, 0) * FRAME_MS

    def end_utterance(self, utterance_id: str) -> None:
        """Marks the end of `utterance_id`'s audio: once its last queued frame has played, a
        flush has nothing to cut and the silence after it is not an underrun."""
        with self._lock:
            self.tx.append((utterance_id, b""))

    def counters(self) -> PortCounters:
        return PortCounters(
            frames_in=self.frames_in,
            frames_out=self.frames_out,
            underruns=self.underruns,
            rx_overflow_drops=self.rx_overflow_drops,
            tx_overflow_drops=self.tx_overflow_drops,
        )


def wake_on(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> Callable[[], None]:
    """A thread-safe callback that sets an asyncio event on its loop."""

    def wake() -> None:
        try:
            loop.call_soon_threadsafe(event.set)
        except RuntimeError:
            pass  # the loop closed during shutdown; nobody is waiting any more

    return wake


class ListeningPort(pj.AudioMediaPort):  # type: ignore[misc]
    """A port in the conference bridge that only listens (a recording's channel): each frame
    it hears goes to `on_frame(monotonic ns, pcm)`; it says nothing. Create and register it on
    the pjsua2 thread only."""

    def __init__(self, on_frame: Callable[[int, bytes], None]) -> None:
        super().__init__()
        self._on_frame = on_frame

    def create(self, name: str) -> None:
        fmt = pj.MediaFormatAudio()
        fmt.init(pj.PJMEDIA_FORMAT_PCM, SAMPLE_RATE, 1, FRAME_MS * 1000, 16)
        self.createPort(name, fmt)

    def onFrameReceived(self, frame: Any) -> None:  # noqa: N802 (pjsua2's name)
        if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO:
            self._on_frame(time.monotonic_ns(), read_bytes(frame.buf))

    def onFrameRequested(self, frame: Any) -> None:  # noqa: N802 (pjsua2's name)
        frame.type = pj.PJMEDIA_FRAME_TYPE_NONE
