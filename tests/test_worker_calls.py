"""Real SIP calls from a softphone process into one media worker process (no edge)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from telephony.events import CallEventKind
from tests.support import (
    PlatformConfig,
    Running,
    chirp_noise,
    dial,
    echo_match,
    read_wav,
    write_wav,
)

pytestmark = pytest.mark.sip


def _events_for(config: PlatformConfig, kind: CallEventKind) -> list[dict[str, object]]:
    return [{"call_id": e.call_id, **e.data} for e in config.events() if e.kind is kind]


@pytest.mark.parametrize("codec", ["g722", "pcmu"])
def test_two_way_audio_echoes_back(codec: str, worker_uri: str, tmp: Path) -> None:
    sent = chirp_noise(2.0)
    play = write_wav(tmp / "sent.wav", sent)
    [result] = dial(worker_uri, tmp, play=play, hold=0.6, codec=codec)
    assert result["answered"], result
    assert result["codec"].lower() == codec
    received = read_wav(Path(result["recording"]))
    score, lag = echo_match(sent[8000:24000], received)
    assert score > 0.9, f"echo does not match what was sent (corr {score:.2f})"
    # The echo comes back one loopback round trip later, not a second later.
    assert 8000 <= lag < 8000 + 16000 * 0.3
    assert result["rx_lost"] == 0


def test_dtmf_arrives_in_order_and_is_sent_back(
    worker_uri: str, worker_config: PlatformConfig, tmp: Path
) -> None:
    [result] = dial(worker_uri, tmp, dtmf="1234*", dtmf_at=0.3, hold=2.5)
    assert result["answered"]
    # The echo session sends every digit but * back as RFC 4733 DTMF; * hangs up.
    assert result["dtmf_received"] == "1234"
    assert result["reason"] != "rtp_timeout"
    started = [e for e in worker_config.events() if e.kind is CallEventKind.STARTED]
    call_id = started[-1].call_id
    # The spool records each press, in order, but never the digit (a card number or a PIN
    # keyed in); '*' and '#' are kept.
    pressed = [
        e.data
        for e in worker_config.events()
        if e.kind is CallEventKind.DTMF and e.call_id == call_id
    ]
    assert pressed == [{"masked": True}] * 4 + [{"digit": "*"}]


def test_flush_stops_agent_audio_at_once(
    worker: Running, worker_config: PlatformConfig, tmp: Path
) -> None:
    # Line 200 echoes with 500 ms delay, so half a second of agent audio is always queued.
    uri = f"sip:200@127.0.0.1:{worker_config.worker_base_port}"
    play = write_wav(tmp / "long.wav", chirp_noise(3.0))
    [result] = dial(uri, tmp, play=play, dtmf="#", dtmf_at=2.0, hold=1.0)
    assert result["answered"]
    flushes = [
        e
        for e in worker_config.events()
        if e.kind is CallEventKind.PLAYOUT_FLUSHED and e.data["reason"] == "dtmf"
    ]
    assert flushes, "the worker never flushed"
    flush = flushes[-1]
    assert 1400 <= int(str(flush.data["played_ms"])) <= 1700
    received = read_wav(Path(result["recording"]))
    times = np.array(result["frame_times_ns"], dtype=np.int64)
    energy = np.sqrt(np.mean(received[: len(times) * 320].reshape(-1, 320) ** 2, axis=1))
    loud_before = energy[(times < flush.t_mono_ns) & (times > flush.t_mono_ns - 300_000_000)]
    assert loud_before.min() > 300, "agent audio was not playing before the flush"
    after = (times > flush.t_mono_ns) & (times < flush.t_mono_ns + 500_000_000)
    quiet = times[after][energy[after] < 100]
    assert len(quiet), "agent audio never stopped after the flush"
    stop_ms = (int(quiet[0]) - flush.t_mono_ns) / 1e6
    # The worker's next frame after the flush is silence; what the caller measures on top is
    # one frame of packetisation plus its own jitter buffer (40-60 ms on this loopback, more
    # when both cores are busy).  Half a second of queued audio would show as ~500 ms.
    assert stop_ms < 300, f"caller still heard agent audio {stop_ms:.0f} ms after the flush"
