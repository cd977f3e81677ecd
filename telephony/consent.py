"""The disclosure played on answer, and the consent rule that decides what happens next.

Pure: no audio, no timers. The media worker feeds it what happened (the disclosure finished
playing, a key was pressed, the wait ran out, the caller hung up) and acts on the decision.

The rule for interruptions lives here: the caller's keys never cut the disclosure short. A key
pressed while it plays is the caller's answer, acted on once the whole notice was heard; only a
hang-up ends it early (recorded as interrupted).
"""

from __future__ import annotations

import enum
import hashlib
import wave
from dataclasses import dataclass
from pathlib import Path

from agent.session import SAMPLE_RATE


class ConsentMode(enum.StrEnum):
    IMPLIED = "implied"  # staying on the line after the disclosure is consent
    DTMF = "dtmf"  # a key: accept or decline


class NextStep(enum.StrEnum):
    BRIDGE = "bridge"  # on to the agent
    HANGUP = "hangup"  # a goodbye, then the call ends
    TRANSFER = "transfer"  # to the line's consent transfer target


class Phase(enum.StrEnum):
    PLAYING = "playing"
    WAITING = "waiting"  # played; waiting for a key (dtmf only)
    DONE = "done"


@dataclass(frozen=True, slots=True)
class ConsentPolicy:
    mode: ConsentMode = ConsentMode.IMPLIED
    timeout_s: float = 8.0  # dtmf: how long to wait for a key once the disclosure has played
    accept_digit: str = "1"
    decline_digit: str = "2"
    on_decline: NextStep = NextStep.HANGUP
    on_no_response: NextStep = NextStep.HANGUP
    transfer_to: str | None = None  # SIP URI for NextStep.TRANSFER

    def __post_init__(self) -> None:
        if self.accept_digit == self.decline_digit:
            raise ValueError("the accept and decline digits must differ")
        steps = (self.on_decline, self.on_no_response)
        if NextStep.TRANSFER in steps and not self.transfer_to:
            raise ValueError("a consent transfer needs transfer_to (a SIP URI)")


@dataclass(frozen=True, slots=True)
class Decision:
    consent: str  # admin.models.ConsentResult values: granted, declined, no_response
    method: str  # how consent was sought: implied or dtmf
    interrupted: bool  # the caller hung up before the disclosure had played to its end
    next_step: NextStep


class ConsentRun:
    """One call's disclosure, from the first frame to a decision."""

    def __init__(self, policy: ConsentPolicy) -> None:
        self.policy = policy
        self.phase = Phase.PLAYING
        self._answer: str | None = None  # 'granted' or 'declined', from a key
        self.decision: Decision | None = None

    def digit(self, digit: str) -> Decision | None:
        """A key from the caller; decides at once only once the disclosure has been heard."""
        if self.phase is Phase.DONE or self.policy.mode is not ConsentMode.DTMF:
            return None
        if digit == self.policy.accept_digit:
            answer = "granted"
        elif digit == self.policy.decline_digit:
            answer = "declined"
        else:
            return None
        if self._answer is None:
            self._answer = answer  # the first answer counts
        if self.phase is Phase.WAITING:
            return self._decide(self._answer, interrupted=False)
        return None

    def played(self) -> Decision | None:
        """The disclosure has played to its end."""
        if self.phase is not Phase.PLAYING:
            return self.decision
        if self.policy.mode is ConsentMode.IMPLIED:
            return self._decide("granted", interrupted=False)
        if self._answer is not None:
            return self._decide(self._answer, interrupted=False)
        self.phase = Phase.WAITING
        return None

    def timed_out(self) -> Decision | None:
        """No key within the policy's timeout after the disclosure."""
        if self.phase is not Phase.WAITING:
            return self.decision
        return self._decide("no_response", interrupted=False)

    def hung_up(self) -> Decision:
        """The caller left before a decision: no consent, unless a key had already answered."""
        if self.decision is not None:
            return self.decision
        interrupted = self.phase is Phase.PLAYING
        return self._decide(self._answer or "no_response", interrupted=interrupted)

    def _decide(self, consent: str, *, interrupted: bool) -> Decision:
        if consent == "granted":
            step = NextStep.BRIDGE
        elif consent == "declined":
            step = self.policy.on_decline
        else:
            step = self.policy.on_no_response
        self.phase = Phase.DONE
        self.decision = Decision(consent, self.policy.mode.value, interrupted, step)
        return self.decision


# --- the disclosure's audio ------------------------------------------------------------------


class DisclosureAudioError(ValueError):
    """The disclosure's audio file is missing, unreadable, or not the recorded version."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # audio_missing, audio_unreadable, audio_mismatch


@dataclass(frozen=True, slots=True)
class DisclosurePlan:
    """What a line plays on answer: the disclosure's current version, and its consent rule.

    `version`/`sha256` are None when no version was found at start-up; `on_missing` says
    whether such a call goes on without the disclosure (`proceed`) or is refused (`refuse`).
    """

    name: str
    version: int | None
    sha256: str | None
    audio_path: Path | None
    policy: ConsentPolicy
    on_missing: str = "proceed"
    goodbye_path: Path | None = None  # played before hanging up on a declined call


def read_pcm(path: Path, *, sha256: str | None = None) -> bytes:
    """A 16 kHz mono 16-bit WAV's samples; with `sha256`, the file must have that hash.

    Raises DisclosureAudioError saying which of those failed.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DisclosureAudioError("audio_missing", f"{path} does not exist") from None
    except OSError as error:
        raise DisclosureAudioError("audio_unreadable", f"{path}: {error.strerror}") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise DisclosureAudioError(
            "audio_mismatch", f"{path} is not the recorded audio (its SHA-256 differs)"
        )
    try:
        with wave.open(str(path), "rb") as wav:
            shape = (wav.getframerate(), wav.getnchannels(), wav.getsampwidth())
            pcm = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as error:
        raise DisclosureAudioError("audio_unreadable", f"{path}: {error}") from None
    if shape != (SAMPLE_RATE, 1, 2):
        raise DisclosureAudioError(
            "audio_unreadable", f"{path} must be {SAMPLE_RATE} Hz mono 16-bit, not {shape}"
        )
    if not pcm:
        raise DisclosureAudioError("audio_unreadable", f"{path} holds no audio")
    return pcm
