"""Call recordings: stereo (caller left; agent, prompts or supervisor right), encrypted at rest.

A recording starts only once the caller's consent was given, and is taken from two listening
ports in pjmedia's conference bridge (telephony.mediaport.ListeningPort): one hears the caller,
the other whatever the caller hears. Their frames arrive on the media clock thread;
`StereoRecorder` files each frame under its 20 ms slot of the recording's timeline, and a
writer thread joins the two channels, slot by slot,
with silence wherever a channel had nothing (a pause, a gap in the call's audio), so the channels
stay aligned for the whole call.

A PCI pause (a card number being given) disconnects both ports and drops any frame that still
arrives: the paused stretch is silence in the file, and its interval is reported.

The file (`.prec`) is encrypted as it is written; no plaintext audio ever reaches the disk:

    line 1: a JSON header (format, call id, audio layout, the file's data key wrapped with the
            recording key by AES-256-GCM, the call id as associated data)
    then:   chunks of 4-byte big-endian length + AES-256-GCM ciphertext of up to 64 KiB of
            interleaved s16le PCM; nonce = the chunk's number; associated data = SHA-256 of the
            header line, the chunk's number and whether it is the last one

so a chunk cannot be changed, reordered, dropped, or the file cut short without `decrypt`
refusing it. `pcm_sha256` (of the decrypted audio) and `file_sha256` (of the file as stored)
are reported when it ends, and stored with the call.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import logging
import os
import secrets
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent.session import FRAME_BYTES, FRAME_MS, SAMPLE_RATE

log = logging.getLogger(__name__)

FORMAT = "parley-recording-1"
SUFFIX = ".prec"
CHANNELS = 2
LEFT, RIGHT = 0, 1  # caller; agent, prompts or supervisor
_FRAME_NS = FRAME_MS * 1_000_000
_SILENCE = bytes(FRAME_BYTES)
_CHUNK_BYTES = 64 * 1024
_LAG_SLOTS = 5  # slots (100 ms) a late frame may still arrive in before its slot is written
_WRITE_EVERY_S = 0.1
_KEY_CONTEXT = b"parley recording key v1"


class RecordingError(Exception):
    """A recording that cannot be read: wrong key, changed, reordered or cut short."""


def recording_key(secret: bytes) -> bytes:
    """The AES-256 key that wraps each file's data key, from the configured secret."""
    return hashlib.sha256(_KEY_CONTEXT + secret).digest()


# --- the file ------------------------------------------------------------------------------------


class EncryptedWriter:
    """Writes one `.prec` file; `write` takes PCM, `close` seals it and returns its hashes."""

    def __init__(self, path: Path, *, key: bytes, call_id: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.path = path
        self._file: BinaryIO = os.fdopen(fd, "wb")
        data_key = AESGCM.generate_key(bit_length=256)
        wrap_nonce = secrets.token_bytes(12)
        wrapped = AESGCM(key).encrypt(wrap_nonce, data_key, call_id.encode())
        header = {
            "format": FORMAT,
            "call_id": call_id,
            "sample_rate": SAMPLE_RATE,
            "channels": CHANNELS,
            "sample_width": 2,
            "cipher": "AES-256-GCM",
            "wrap_nonce": base64.b64encode(wrap_nonce).decode(),
            "wrapped_key": base64.b64encode(wrapped).decode(),
        }
        line = json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        self._aad_head = hashlib.sha256(line).digest()
        self._cipher = AESGCM(data_key)
        self._file_hash = hashlib.sha256(line)
        self._pcm_hash = hashlib.sha256()
        self._pending = bytearray()
        self._chunk = 0
        self.pcm_bytes = 0
        self._file.write(line)

    def write(self, pcm: bytes) -> None:
        self._pcm_hash.update(pcm)
        self.pcm_bytes += len(pcm)
        self._pending += pcm
        while len(self._pending) >= _CHUNK_BYTES:
            self._seal(bytes(self._pending[:_CHUNK_BYTES]), last=False)
            del self._pending[:_CHUNK_BYTES]

    def close(self) -> tuple[str, str]:
        """(pcm_sha256, file_sha256), once the last chunk is on disk."""
        self._seal(bytes(self._pending), last=True)
        self._pending.clear()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self._pcm_hash.hexdigest(), self._file_hash.hexdigest()

    def _seal(self, plain: bytes, *, last: bool) -> None:
        nonce = self._chunk.to_bytes(12, "big")
        sealed = self._cipher.encrypt(nonce, plain, _aad(self._aad_head, self._chunk, last))
        block = struct.pack(">I", len(sealed)) + sealed
        self._file.write(block)
        self._file_hash.update(block)
        self._chunk += 1


def _aad(head: bytes, chunk: int, last: bool) -> bytes:
    return head + chunk.to_bytes(8, "big") + (b"\x01" if last else b"\x00")


@dataclass(frozen=True, slots=True)
class Decrypted:
    call_id: str
    pcm: bytes  # interleaved s16le, `channels` channels at `sample_rate`
    sample_rate: int
    channels: int


def decrypt(path: Path, *, key: bytes) -> Decrypted:
    """The audio of a `.prec` file; RecordingError if it is not whole, or not this key's."""
    with path.open("rb") as file:
        line = file.readline(64 * 1024)
        try:
            header = json.loads(line)
            if header.get("format") != FORMAT:
                raise RecordingError(f"{path.name} is not a Parley recording")
            call_id = str(header["call_id"])
            data_key = AESGCM(key).decrypt(
                base64.b64decode(header["wrap_nonce"]),
                base64.b64decode(header["wrapped_key"]),
                call_id.encode(),
            )
        except InvalidTag:
            raise RecordingError(f"{path.name} was not made with this recording key") from None
        except (ValueError, KeyError, TypeError) as error:
            raise RecordingError(f"{path.name} has no readable header: {error}") from None
        cipher = AESGCM(data_key)
        head = hashlib.sha256(line).digest()
        pcm = bytearray()
        for number, (sealed, last) in enumerate(_blocks(file, path)):
            try:
                pcm += cipher.decrypt(number.to_bytes(12, "big"), sealed, _aad(head, number, last))
            except InvalidTag:
                raise RecordingError(
                    f"{path.name}: chunk {number} was changed, moved or is not the last one"
                ) from None
    return Decrypted(call_id, bytes(pcm), int(header["sample_rate"]), int(header["channels"]))


def _blocks(file: BinaryIO, path: Path) -> Iterator[tuple[bytes, bool]]:
    """The sealed chunks, each with whether it is the file's last; a file without its sealed
    last chunk is cut short."""
    sealed = _block(file, path)
    if sealed is None:
        raise RecordingError(f"{path.name} holds no audio chunk: it was cut short")
    while True:
        following = _block(file, path)
        yield sealed, following is None
        if following is None:
            return
        sealed = following


def _block(file: BinaryIO, path: Path) -> bytes | None:
    size = file.read(4)
    if not size:
        return None
    if len(size) < 4:
        raise RecordingError(f"{path.name} ends inside a chunk: it was cut short")
    (length,) = struct.unpack(">I", size)
    sealed = file.read(length)
    if len(sealed) < length or length > _CHUNK_BYTES + 16:
        raise RecordingError(f"{path.name} ends inside a chunk: it was cut short")
    return sealed


def wav_bytes(audio: Decrypted) -> bytes:
    """A decrypted recording as a WAV file (what `parley recording export` writes)."""
    import io
    import wave

    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(audio.channels)
        wav.setsampwidth(2)
        wav.setframerate(audio.sample_rate)
        wav.writeframes(audio.pcm)
    return out.getvalue()


# --- the call's two channels ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pause:
    start_ms: int  # from the recording's start
    end_ms: int | None  # None: still paused when the call ended
    by: str  # api, dtmf, agent (the AI collecting a card number)


@dataclass(slots=True)
class RecordingResult:
    path: Path
    pcm_sha256: str
    file_sha256: str
    duration_ms: int
    pauses: list[Pause] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RecordingStore:
    """Where a worker's recordings go, and the key that seals them."""

    folder: Path
    key: bytes  # from `recording_key`

    def path(self, call_id: str) -> Path:
        return self.folder / f"{call_id}{SUFFIX}"

    def start(self, call_id: str) -> StereoRecorder:
        """A recorder writing the call's file (OSError if it cannot be created)."""
        writer = EncryptedWriter(self.path(call_id), key=self.key, call_id=call_id)
        return StereoRecorder(writer)


class StereoRecorder:
    """One call's recording, from the frames of its two listening ports to the sealed file.

    `put` runs on the media clock thread and only queues; a thread of its own writes."""

    def __init__(self, writer: EncryptedWriter, *, start_ns: int | None = None) -> None:
        self._writer = writer
        self.start_ns = start_ns if start_ns is not None else time.monotonic_ns()
        self._arrived: collections.deque[tuple[int, int, bytes]] = collections.deque()
        self._slots: dict[int, list[bytes | None]] = {}
        self._last_slot = [-1, -1]  # per channel
        self._written = 0  # slots written so far
        self._paused_since: tuple[int, str] | None = None
        self.pauses: list[Pause] = []
        self._closed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="parley-recorder", daemon=True)
        self._thread.start()

    @property
    def path(self) -> Path:
        return self._writer.path

    @property
    def paused(self) -> bool:
        return self._paused_since is not None

    def put(self, channel: int, t_ns: int, pcm: bytes) -> None:
        if self._paused_since is None and not self._closed and len(pcm) == FRAME_BYTES:
            self._arrived.append((channel, t_ns, pcm))

    def pause(self, by: str, now_ns: int | None = None) -> bool:
        """Silence from now until `resume`; False if already paused."""
        if self._paused_since is not None:
            return False
        self._paused_since = (self._ms(now_ns), by)
        return True

    def resume(self, now_ns: int | None = None) -> Pause | None:
        if self._paused_since is None:
            return None
        start_ms, by = self._paused_since
        self._paused_since = None
        pause = Pause(start_ms, self._ms(now_ns), by)
        self.pauses.append(pause)
        return pause

    def finish(self, now_ns: int | None = None) -> RecordingResult:
        """Writes what is left, seals the file and reports it."""
        end_ms = self._ms(now_ns)
        self._closed = True
        if self._paused_since is not None:
            start_ms, by = self._paused_since
            self.pauses.append(Pause(start_ms, end_ms, by))
            self._paused_since = None
        self._stop.set()
        self._thread.join()
        self._file_slots(final_slot=end_ms // FRAME_MS)
        if self._slots:  # frames filed ahead of the clock (after a stall): kept, not cut
            self._file_slots(final_slot=max(self._slots) + 1)
        pcm_sha256, file_sha256 = self._writer.close()
        duration_ms = self._writer.pcm_bytes // (CHANNELS * 2) * 1000 // SAMPLE_RATE
        return RecordingResult(
            self._writer.path, pcm_sha256, file_sha256, duration_ms, list(self.pauses)
        )

    def _ms(self, now_ns: int | None) -> int:
        now = now_ns if now_ns is not None else time.monotonic_ns()
        return max(0, (now - self.start_ns) // 1_000_000)

    def _paused_spans(self) -> list[tuple[int, int]]:
        """The pauses so far (ms from the start), the open one running on."""
        spans = [
            (pause.start_ms, pause.end_ms if pause.end_ms is not None else 2**62)
            for pause in list(self.pauses)
        ]
        current = self._paused_since
        if current is not None:
            spans.append((current[0], 2**62))
        return spans

    def _run(self) -> None:
        while not self._stop.wait(_WRITE_EVERY_S):
            try:
                now_slot = (time.monotonic_ns() - self.start_ns) // _FRAME_NS
                self._file_slots(final_slot=now_slot - _LAG_SLOTS)
            except Exception:  # a full disk: the call goes on, the recording is cut short
                log.exception("recording write failed", extra={"path": str(self._writer.path)})
                return

    def _file_slots(self, *, final_slot: int) -> None:
        """Files the frames that arrived and writes every slot before `final_slot`."""
        while self._arrived:
            channel, t_ns, pcm = self._arrived.popleft()
            by_time = (t_ns - self.start_ns + _FRAME_NS // 2) // _FRAME_NS
            # The clock's frames come one per slot; a late callback takes the next free slot,
            # a gap (a pause, a leg not yet connected) jumps ahead to the frame's time.
            slot = max(self._last_slot[channel] + 1, by_time, self._written)
            self._last_slot[channel] = slot
            self._slots.setdefault(slot, [None, None])[channel] = pcm
        if final_slot <= self._written:
            return
        paused = self._paused_spans()
        left = bytearray()
        right = bytearray()
        for slot in range(self._written, final_slot):
            pair = self._slots.pop(slot, None) or [None, None]
            middle_ms = slot * FRAME_MS + FRAME_MS // 2
            if any(start <= middle_ms < end for start, end in paused):
                # Silence, whatever was filed here: frames delivered late in a bunch before a
                # pause are pushed into later slots, and must not carry sound into it.
                pair = [None, None]
            left += pair[LEFT] or _SILENCE
            right += pair[RIGHT] or _SILENCE
        self._written = final_slot
        self._writer.write(_interleave(bytes(left), bytes(right)))


def _interleave(left: bytes, right: bytes) -> bytes:
    import numpy as np  # only where recordings are written: settings import this module

    stereo = np.empty(len(left), dtype="<i2")
    stereo[0::2] = np.frombuffer(left, dtype="<i2")
    stereo[1::2] = np.frombuffer(right, dtype="<i2")
    return stereo.tobytes()
