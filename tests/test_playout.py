"""The one playout path and its interruption rule, with pjmedia's clock played by the test."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pjsua2 as pj
import pytest

from agent.session import FRAME_BYTES
from telephony.framecopy import read_bytes
from telephony.mediaport import MediaPort
from telephony.pjthread import library_only
from telephony.playout import Cause, Playout, Sound, interrupts


@pytest.fixture(scope="module", autouse=True)
def pjlib() -> Iterator[None]:
    with library_only():
        yield


@pytest.mark.parametrize(
    ("cause", "sound", "cut"),
    [
        (Cause.BARGE_IN, Sound.SPEECH, True),
        (Cause.BARGE_IN, Sound.PROMPT, False),  # a disclosure is heard in full
        (Cause.BARGE_IN, Sound.HOLD, False),
        (Cause.CONTROL, Sound.HOLD, True),
        (Cause.CONTROL, Sound.PROMPT, True),
        (Cause.FAILURE, Sound.SPEECH, True),
    ],
)
def test_the_interruption_rule(cause: Cause, sound: Sound, cut: bool) -> None:
    assert interrupts(cause, sound) is cut


def _pull(port: MediaPort, frames: int) -> list[bytes]:
    out = []
    for _ in range(frames):
        frame = pj.MediaFrame()
        port.onFrameRequested(frame)
        out.append(read_bytes(frame.buf))
    return out


def test_a_prompt_plays_in_full_through_a_barge_in_and_is_cut_by_control() -> None:
    async def scenario() -> None:
        port = MediaPort()
        player = Playout(port)
        runner = asyncio.create_task(player.run())
        clock_ticks = 0

        async def clock() -> None:  # pjmedia's 20 ms clock, faster
            nonlocal clock_ticks
            while True:
                _pull(port, 1)
                clock_ticks += 1
                await asyncio.sleep(0.002)

        ticking = asyncio.create_task(clock())
        prompt = b"\x01" * FRAME_BYTES * 30 + b"\x01" * 100  # a partial last frame
        playing = asyncio.create_task(player.play("disclosure", prompt))
        await asyncio.sleep(0.01)
        assert player.flush(Cause.BARGE_IN) is None  # the caller spoke: it goes on
        assert await playing is True
        assert port.counters().frames_out == 31  # the partial frame padded and heard

        hold = asyncio.create_task(player.play("hold", b"\x02" * FRAME_BYTES * 500, Sound.HOLD))
        await asyncio.sleep(0.02)
        cut = player.flush(Cause.CONTROL)
        assert cut is not None and cut[0] == "hold" and cut[2]
        assert await hold is False
        assert not player.busy()
        for task in (ticking, runner):
            task.cancel()
        await asyncio.gather(ticking, runner, return_exceptions=True)

    asyncio.run(scenario())


def test_a_reused_port_starts_its_next_call_clean() -> None:
    """Media workers reuse a port for the next call instead of destroying it (worker.py)."""
    woken: list[str] = []
    port = MediaPort(on_rx=lambda: woken.append("first"), kind="prompt")
    port.queue_playout("u1", b"\x01" * FRAME_BYTES)
    port.queue_playout("u1", b"\x01" * FRAME_BYTES)
    _pull(port, 1)  # one frame heard, one still queued
    assert port.playout_depth() == 1 and port.played_ms("u1") == 20
    port.reset(on_rx=lambda: woken.append("second"))
    assert port.kind == "prompt" and port.playout_depth() == 0 and port.played_ms("u1") == 0
    assert port.counters() == port.counters().__class__(0, 0, 0, 0, 0)
    assert _pull(port, 1) == [bytes(FRAME_BYTES)]  # silence, not the last call's audio
    assert port.underruns == 0  # and no utterance in progress to count an underrun for
