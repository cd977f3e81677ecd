"""Recordings on their own: the encrypted file, and two channels kept aligned on the media
clock with silence for pauses and gaps. (A real call is recorded in test_recording_calls.)"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from agent.session import FRAME_BYTES
from telephony.recording import (
    LEFT,
    RIGHT,
    EncryptedWriter,
    RecordingError,
    StereoRecorder,
    decrypt,
    recording_key,
)

KEY = recording_key(b"a-recording-secret-for-tests-0123456789")
FRAME_NS = 20_000_000


def _frame(value: int) -> bytes:
    return np.full(FRAME_BYTES // 2, value, dtype="<i2").tobytes()


def _sealed(tmp_path: Path, pcm: bytes) -> tuple[Path, str, str]:
    writer = EncryptedWriter(tmp_path / "c.prec", key=KEY, call_id="c" * 32)
    writer.write(pcm)
    return writer.path, *writer.close()


def test_the_file_holds_no_plaintext_and_decrypts_to_what_was_written(tmp_path: Path) -> None:
    pcm = bytes(range(256)) * 1000  # 256 kB: several chunks
    path, pcm_sha256, file_sha256 = _sealed(tmp_path, pcm)
    stored = path.read_bytes()
    assert bytes(range(64)) not in stored
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    audio = decrypt(path, key=KEY)
    assert audio.pcm == pcm and (audio.sample_rate, audio.channels) == (16000, 2)
    assert pcm_sha256 == hashlib.sha256(pcm).hexdigest()
    assert file_sha256 == hashlib.sha256(stored).hexdigest()


def test_a_wrong_key_or_a_changed_reordered_or_cut_file_is_refused(tmp_path: Path) -> None:
    path, _, _ = _sealed(tmp_path, bytes(200_000))
    with pytest.raises(RecordingError, match="not made with this recording key"):
        decrypt(path, key=recording_key(b"another secret"))
    stored = path.read_bytes()
    header_end = stored.index(b"\n") + 1
    blocks, at = [], header_end
    while at < len(stored):
        (length,) = struct.unpack(">I", stored[at : at + 4])
        blocks.append(stored[at : at + 4 + length])
        at += 4 + length
    assert len(blocks) == 4
    header = stored[:header_end]
    cases = {
        "changed": header + blocks[0][:-1] + bytes([blocks[0][-1] ^ 1]) + b"".join(blocks[1:]),
        "reordered": header + blocks[1] + blocks[0] + b"".join(blocks[2:]),
        "last chunk dropped": header + b"".join(blocks[:-1]),
        "cut inside a chunk": stored[:-10],
        "no chunk": header,
    }
    for name, content in cases.items():
        path.write_bytes(content)
        with pytest.raises(RecordingError):
            decrypt(path, key=KEY)
            pytest.fail(name)


def test_two_channels_stay_aligned_with_silence_for_pauses_and_gaps(tmp_path: Path) -> None:
    writer = EncryptedWriter(tmp_path / "s.prec", key=KEY, call_id="s" * 32)
    t0 = 1_000_000_000_000
    recorder = StereoRecorder(writer, start_ns=t0)
    for slot in range(100):  # 2 s; the caller talks throughout
        t = t0 + slot * FRAME_NS + 3_000_000  # callbacks run a little after their tick
        if 40 <= slot < 60 and slot == 40:
            recorder.pause("api", now_ns=t)
        if slot == 60:
            recorder.resume(now_ns=t)
        recorder.put(LEFT, t, _frame(1000))
        if slot % 10 != 9 and not 20 <= slot < 25:  # the right channel misses some ticks
            recorder.put(RIGHT, t, _frame(-2000))
    # A late burst: two callbacks of the right channel within a millisecond take their slots.
    result = recorder.finish(now_ns=t0 + 100 * FRAME_NS)
    assert result.duration_ms == 2000
    assert [(p.start_ms, p.end_ms, p.by) for p in result.pauses] == [(803, 1203, "api")]
    audio = decrypt(result.path, key=KEY)
    samples = np.frombuffer(audio.pcm, dtype="<i2").reshape(-1, 2)
    per_slot = samples.reshape(100, FRAME_BYTES // 2, 2)[:, 0, :]  # first sample of each slot
    left, right = per_slot[:, 0].tolist(), per_slot[:, 1].tolist()
    assert left == [0 if 40 <= slot < 60 else 1000 for slot in range(100)]
    assert right == [
        0 if (40 <= slot < 60 or slot % 10 == 9 or 20 <= slot < 25) else -2000
        for slot in range(100)
    ]
    assert result.pcm_sha256 == hashlib.sha256(audio.pcm).hexdigest()


def test_late_callbacks_take_the_next_free_slot(tmp_path: Path) -> None:
    writer = EncryptedWriter(tmp_path / "l.prec", key=KEY, call_id="l" * 32)
    t0 = 5_000_000_000
    recorder = StereoRecorder(writer, start_ns=t0)
    # The media clock stalled for 60 ms and then delivered three frames at once: they take the
    # slots from their time on, and the frame after them the next free one (both channels are
    # served by the same clock, so they shift together).
    times = [0, 20, 100, 100.5, 101, 120]
    for value, ms in enumerate(times, start=1):
        recorder.put(LEFT, t0 + int(ms * 1_000_000), _frame(value))
    result = recorder.finish(now_ns=t0 + 140 * 1_000_000)
    samples = np.frombuffer(decrypt(result.path, key=KEY).pcm, dtype="<i2").reshape(-1, 2)
    firsts = samples.reshape(-1, FRAME_BYTES // 2, 2)[:, 0, 0].tolist()
    assert firsts == [1, 2, 0, 0, 0, 3, 4, 5, 6]


def test_frames_bunched_before_a_pause_carry_no_sound_into_it(tmp_path: Path) -> None:
    writer = EncryptedWriter(tmp_path / "b.prec", key=KEY, call_id="b" * 32)
    t0 = 7_000_000_000
    recorder = StereoRecorder(writer, start_ns=t0)
    # The media clock stalled, then delivered five frames of 60 ms at once, just before the
    # agent asked for a card number (the pause at 100 ms): they take slots 3 to 7, and the
    # ones pushed past the pause's start must be silence.
    for value, ms in enumerate([0, 20, 40, 60, 60.2, 60.4, 60.6, 60.8], start=1):
        recorder.put(LEFT, t0 + int(ms * 1_000_000), _frame(value))
    recorder.pause("agent", now_ns=t0 + 100_000_000)
    recorder.put(LEFT, t0 + 120_000_000, _frame(99))  # while paused: dropped
    result = recorder.finish(now_ns=t0 + 200_000_000)
    assert [(p.start_ms, p.end_ms) for p in result.pauses] == [(100, 200)]
    samples = np.frombuffer(decrypt(result.path, key=KEY).pcm, dtype="<i2").reshape(-1, 2)
    firsts = samples.reshape(-1, FRAME_BYTES // 2, 2)[:, 0, 0].tolist()
    assert firsts == [1, 2, 3, 4, 5, 0, 0, 0, 0, 0]
