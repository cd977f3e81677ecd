"""Drives SIPp (Debian `sip-tester`) as scripted callers that stream RTP audio.

Used by the load tests and `bench/`. The scenario (scenarios/uac_rtp.xml) goes through a
record-routing edge: ACK and BYE carry the learnt Route set.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np

SCENARIO_TEMPLATE = Path(__file__).with_name("scenarios") / "uac_rtp.xml"


class SippMissing(RuntimeError):
    pass


def _mulaw(samples: np.ndarray) -> bytes:
    """G.711 mu-law encoding of 16-bit samples (the 14-bit reference algorithm)."""
    x = samples.astype(np.int32) >> 2
    mask = np.where(x < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(x), 8159) + 0x21
    segment = np.searchsorted(_SEGMENT_ENDS, magnitude)
    code = np.where(
        segment >= len(_SEGMENT_ENDS), 0x7F, (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F)
    )
    return bytes((code ^ mask).astype(np.uint8).tobytes())


_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def write_mulaw_wav(path: Path, seconds: float = 1.0, hz: float = 300.0) -> Path:
    """A tone as an 8 kHz mu-law WAV, the format SIPp's rtp_stream sends as PCMU."""
    t = np.arange(int(8000 * seconds)) / 8000
    data = _mulaw(np.sin(2 * np.pi * hz * t) * 8000)
    fmt = struct.pack("<HHIIHHH", 7, 1, 8000, 8000, 1, 8, 0)  # WAVE_FORMAT_MULAW
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def prepare(workdir: Path) -> Path:
    """Writes the caller audio and the scenario into `workdir`; returns the scenario path."""
    audio = write_mulaw_wav(workdir / "caller.wav")
    scenario = workdir / "uac_rtp.xml"
    scenario.write_text(SCENARIO_TEMPLATE.read_text().replace("@AUDIO@", str(audio)))
    return scenario


def command(
    target: str,
    scenario: Path,
    *,
    local_port: int,
    calls: int,
    rate: int,
    hold_ms: int,
    limit: int,
    stats: Path,
    transport: str = "u1",
    local_host: str = "127.0.0.1",
) -> list[str]:
    sipp = shutil.which("sipp")
    if sipp is None:
        raise SippMissing("sipp is not installed: apt-get install sip-tester")
    return [
        sipp, target, "-sf", str(scenario), "-s", "100", "-i", local_host,
        "-p", str(local_port), "-t", transport, "-m", str(calls), "-r", str(rate),
        "-d", str(hold_ms), "-l", str(limit), "-timeout", "120", "-timeout_error",
        "-nostdin", "-trace_stat", "-stf", str(stats), "-fd", "1",
    ]  # fmt: skip


def final_stats(stats: Path) -> dict[str, str]:
    """The last row of SIPp's statistics file, keyed by column name."""
    header, *rows = stats.read_text().splitlines()
    if not rows:
        raise ValueError(f"{stats} has no statistics rows")
    return dict(zip(header.split(";"), rows[-1].split(";"), strict=False))
