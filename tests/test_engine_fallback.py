"""When the voice model is unreachable or dies, the caller hears an apology, never dead air."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from telephony.events import CallEventKind
from tests.support import PlatformConfig, dial, free_port_block, read_wav, start_worker

pytestmark = pytest.mark.sip


def test_unreachable_engine_plays_the_apology_then_hangs_up(tmp: Path) -> None:
    dead_port = free_port_block(1)  # nothing listens here
    config = PlatformConfig(
        tmp,
        lines=[{"name": "main", "numbers": ["100"], "agent": "embedded"}],
        extra={"engine": {"url": f"ws://127.0.0.1:{dead_port}/v1/realtime"}},
    )
    worker = start_worker(config)
    try:
        [result] = dial(f"sip:100@127.0.0.1:{config.worker_base_port}", tmp, hold=15, max_s=20)
    finally:
        assert worker.stop() == 0
    assert result["answered"]
    assert result["reason"] != "rtp_timeout"
    talk_s = (result["ended_mono_ns"] - result["answered_mono_ns"]) / 1e9
    assert 4.0 < talk_s < 7.0, "the worker should hang up right after the apology"
    audio = read_wav(Path(result["recording"]))
    frames = audio[: len(audio) // 320 * 320].reshape(-1, 320)
    voiced = np.sqrt(np.mean(frames**2, axis=1)) > 300
    assert voiced[:25].any(), "the apology did not start within half a second"
    assert voiced.sum() * 0.02 > 3.0, "the caller did not hear the apology"
    kinds = [e.kind for e in config.events()]
    assert CallEventKind.SESSION_FAILED in kinds
    [ended] = [e for e in config.events() if e.kind is CallEventKind.ENDED]
    assert ended.data["reason"] == "session_failed"
