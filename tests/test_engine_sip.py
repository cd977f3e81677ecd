"""End to end over SIP: a softphone asks the embedded engine a knowledge-base question."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.asr import WhisperAsr
from telephony.events import CallEventKind
from tests.engine_harness import silence, speak
from tests.support import (
    EngineProcess,
    PlatformConfig,
    Running,
    dial,
    read_wav,
    start_worker,
    write_wav,
)

pytestmark = [pytest.mark.sip, pytest.mark.slow]


@pytest.fixture(scope="module")
def engine_config(
    tmp_path_factory: pytest.TempPathFactory, engine: EngineProcess
) -> PlatformConfig:
    return PlatformConfig(
        tmp_path_factory.mktemp("engine-sip"),
        lines=[{"name": "main", "numbers": ["100"], "agent": "embedded"}],
        extra={"engine": {"url": engine.url}},
    )


@pytest.fixture(scope="module")
def worker(engine_config: PlatformConfig) -> Iterator[Running]:
    running = start_worker(engine_config)
    yield running
    assert running.stop() == 0, running.log()[-3000:]


def test_caller_hears_the_answer_to_a_knowledge_base_question(
    worker: Running, engine_config: PlatformConfig, tmp: Path
) -> None:
    # The greeting plays first; the caller asks once it is over.
    question = speak("How much does shipping cost?")
    play = np.concatenate([silence(7000), question, silence(9000)])
    [result] = dial(
        f"sip:100@127.0.0.1:{engine_config.worker_base_port}",
        tmp,
        play=write_wav(tmp / "question.wav", play.astype(np.float64)),
        hold=0.5,
        max_s=40,
    )
    assert result["answered"], result
    heard = read_wav(Path(result["recording"])).astype(np.int16)
    asked_at = (7000 + len(question) // 16) * 16
    reply = WhisperAsr().transcribe(heard[asked_at : asked_at + 16000 * 8]).text.lower()
    assert "fifty dollars" in reply or "free" in reply, reply
    kinds = [e.data.get("event") for e in engine_config.events() if e.kind is CallEventKind.AGENT]
    assert "end_of_turn" in kinds and "caller_transcript" in kinds
