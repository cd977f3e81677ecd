"""Voice activity detection for many calls at once: Silero VAD batched across streams.

The engine server hears every live call. Running Silero once per call per 32 ms window costs
a Python round trip and a tiny forward pass each; stacking the windows of all calls that have
one ready into a single forward pass costs barely more than one call alone (see bench/models.py).

Silero's TorchScript wrapper keeps one recurrent state and one 64-sample context for the whole
batch and resets both whenever the batch size changes, so it cannot serve calls that come and
go. `BatchedVad` calls the inner 16 kHz network directly and owns the per-stream state: each
stream has a slot in a state pool; a tick gathers the slots of the streams present, runs the
network once, and scatters the new states back. A stream absent from a tick simply keeps its
state, so batch membership can change freely and each stream sees exactly what it would alone.

`SpeechSegmenter` turns one stream's probabilities into speech start/stop events.
"""

from __future__ import annotations

import enum
import importlib.util
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from agent.audio import to_float32
from agent.session import SAMPLE_RATE

log = logging.getLogger(__name__)

WINDOW_SAMPLES = 512
"""Samples per VAD window at 16 kHz (32 ms); the only size Silero accepts at this rate."""
WINDOW_MS = WINDOW_SAMPLES * 1000 / SAMPLE_RATE
CONTEXT_SAMPLES = 64
"""Tail of the previous window that Silero prepends to each new one."""
_STATE_LAYERS = 2
_STATE_SIZE = 128


def default_model_path() -> Path:
    """The TorchScript model shipped inside the `silero-vad` package.

    Located without importing `silero_vad`: its import calls torch.set_num_threads(1) for the
    whole process behind our back.
    """
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the silero-vad package is not installed; pass model_path")
    return Path(spec.origin).parent / "data" / "silero_vad.jit"


class BatchedVad:
    """Silero VAD over many independent streams, one forward pass per `process` call.

    Not thread-safe: call it from the one thread that owns the engine's VAD tick.
    """

    def __init__(self, model_path: Path | None = None, threads: int = 1) -> None:
        path = model_path if model_path is not None else default_model_path()
        if not path.is_file():
            raise FileNotFoundError(f"Silero VAD model not found: {path}")
        self._threads = max(1, threads)
        self._use_threads()
        started = time.perf_counter()
        with warnings.catch_warnings():
            # torch 2.13 deprecates TorchScript loading in favour of torch.export, but Silero
            # ships TorchScript; the warning is noise for an operator.
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        module.eval()
        net = getattr(module, "_model", None)
        if net is None:
            raise ValueError(f"{path} is not a Silero VAD TorchScript model (no _model)")
        self._net: torch.jit.ScriptModule = net
        self._capacity = 0
        self._states = torch.zeros((_STATE_LAYERS, 0, _STATE_SIZE))
        self._contexts = torch.zeros((0, CONTEXT_SAMPLES))
        self._slots: dict[int, int] = {}
        self._free: list[int] = []
        self._next_sid = 1
        self._grow(8)
        self._warm_up()
        log.info("silero vad loaded from %s in %.2fs", path, time.perf_counter() - started)

    def _use_threads(self) -> None:
        # torch's intra-op thread count is process-wide, and more: torch and CTranslate2 share
        # one OpenMP runtime, so building a WhisperAsr(threads=2) silently sets torch to 2 as
        # well. With 2 threads a small VAD batch costs several times more (OpenMP fork/join
        # per op), so the count is re-asserted before each tick; the check is ~100 ns.
        if torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)

    def _warm_up(self) -> None:
        # TorchScript's profiling executor optimises on the first calls; doing them here keeps
        # that cost out of the first live ticks.
        for batch in (1, 2, 1, 3):
            x = torch.zeros((batch, CONTEXT_SAMPLES + WINDOW_SAMPLES))
            state = torch.zeros((_STATE_LAYERS, batch, _STATE_SIZE))
            with torch.no_grad():
                self._net(x, state)

    def _grow(self, capacity: int) -> None:
        extra = capacity - self._capacity
        self._states = torch.cat(
            [self._states, torch.zeros((_STATE_LAYERS, extra, _STATE_SIZE))], dim=1
        )
        self._contexts = torch.cat([self._contexts, torch.zeros((extra, CONTEXT_SAMPLES))], dim=0)
        self._free.extend(range(capacity - 1, self._capacity - 1, -1))
        self._capacity = capacity

    @property
    def threads(self) -> int:
        """torch intra-op threads used for each tick."""
        return self._threads

    @property
    def streams(self) -> int:
        """How many streams are open."""
        return len(self._slots)

    def open_stream(self) -> int:
        """A new stream id with fresh (silent) state."""
        if not self._free:
            self._grow(self._capacity * 2)
        slot = self._free.pop()
        self._states[:, slot].zero_()
        self._contexts[slot].zero_()
        sid = self._next_sid
        self._next_sid += 1
        self._slots[sid] = slot
        return sid

    def close_stream(self, sid: int) -> None:
        """Forget a stream; closing an unknown or already closed id is a no-op."""
        slot = self._slots.pop(sid, None)
        if slot is not None:
            self._free.append(slot)

    def reset_stream(self, sid: int) -> None:
        """Clear a stream's state, as if it had just been opened (e.g. after a hold)."""
        slot = self._slots[sid]
        self._states[:, slot].zero_()
        self._contexts[slot].zero_()

    def process(self, windows: dict[int, npt.NDArray[np.generic]]) -> dict[int, float]:
        """Speech probability of each stream's next 512-sample window, in one forward pass.

        Windows are int16 PCM or float32 in [-1, 1]. Raises KeyError for a stream that is not
        open and ValueError for a window of the wrong size (before touching any state).
        """
        if not windows:
            return {}
        sids = list(windows)
        slots = [self._slots[sid] for sid in sids]
        batch = np.empty((len(sids), WINDOW_SAMPLES), dtype=np.float32)
        for row, sid in enumerate(sids):
            samples = to_float32(windows[sid])
            if samples.shape[0] != WINDOW_SAMPLES:
                raise ValueError(
                    f"stream {sid}: window has {samples.shape[0]} samples, "
                    f"expected {WINDOW_SAMPLES}"
                )
            batch[row] = samples
        index = torch.tensor(slots, dtype=torch.long)
        self._use_threads()
        with torch.no_grad():
            x = torch.cat([self._contexts.index_select(0, index), torch.from_numpy(batch)], dim=1)
            state = self._states.index_select(1, index)
            prob, new_state = self._net(x, state)
            self._states.index_copy_(1, index, new_state)
            self._contexts.index_copy_(0, index, x[:, -CONTEXT_SAMPLES:])
        values: list[float] = prob.reshape(-1).tolist()
        return dict(zip(sids, values, strict=True))


class SpeechEventKind(enum.StrEnum):
    START = "start"
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class SpeechEvent:
    kind: SpeechEventKind
    at_ms: float
    """Where the speech started or stopped, in ms from the first window pushed (window-aligned);
    this lies in the past when the event is emitted, by min_speech_ms or min_silence_ms."""


class SpeechSegmenter:
    """Per-window speech probabilities → speech start/stop events, with hysteresis.

    Silence → speech: a window at or above `onset` opens a candidate; it becomes speech once
    it has lasted `min_speech_ms` with every window at or above `offset` (a dip below
    `offset` first discards it, so clicks and short noises never start a turn).
    Speech → silence: a window below `offset` starts a silence run; a window at or above
    `onset` cancels it; windows in between neither start nor cancel it. The run becomes a stop
    once it has lasted `min_silence_ms`. Pure and cheap: one per stream.
    """

    def __init__(
        self,
        *,
        onset: float = 0.5,
        offset: float = 0.35,
        min_speech_ms: float = 96.0,
        min_silence_ms: float = 320.0,
        window_ms: float = WINDOW_MS,
    ) -> None:
        if not 0.0 <= offset <= onset <= 1.0:
            raise ValueError(f"need 0 <= offset <= onset <= 1, got {offset=} {onset=}")
        if window_ms <= 0:
            raise ValueError("window_ms must be positive")
        self.onset = onset
        self.offset = offset
        self.min_speech_ms = min_speech_ms
        self.min_silence_ms = min_silence_ms
        self.window_ms = window_ms
        self.reset()

    def reset(self) -> None:
        self._index = 0
        self._in_speech = False
        self._run_start: int | None = None  # window where a candidate speech/silence run began

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def elapsed_ms(self) -> float:
        """Audio pushed so far, in ms."""
        return self._index * self.window_ms

    def push(self, prob: float) -> SpeechEvent | None:
        """Feed the next window's probability; returns an event when a state change is confirmed."""
        i = self._index
        self._index += 1
        if not self._in_speech:
            if self._run_start is None:
                if prob >= self.onset:
                    self._run_start = i
            elif prob < self.offset:
                self._run_start = None
            if self._run_start is not None and (self._index - self._run_start) * self.window_ms >= (
                self.min_speech_ms
            ):
                start, self._run_start, self._in_speech = self._run_start, None, True
                return SpeechEvent(SpeechEventKind.START, start * self.window_ms)
            return None
        if prob < self.offset:
            if self._run_start is None:
                self._run_start = i
        elif prob >= self.onset:
            self._run_start = None
        if self._run_start is not None and (self._index - self._run_start) * self.window_ms >= (
            self.min_silence_ms
        ):
            stop, self._run_start, self._in_speech = self._run_start, None, False
            return SpeechEvent(SpeechEventKind.STOP, stop * self.window_ms)
        return None

    def finish(self) -> SpeechEvent | None:
        """End of stream: a stop for speech still open (at its silence run if one began)."""
        event = None
        if self._in_speech:
            stop = self._run_start if self._run_start is not None else self._index
            event = SpeechEvent(SpeechEventKind.STOP, stop * self.window_ms)
        self.reset_keep_clock()
        return event

    def reset_keep_clock(self) -> None:
        """Back to silence without restarting the time base."""
        self._in_speech = False
        self._run_start = None
