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
import re
import wave
from dataclasses import dataclass
from pathlib import Path

from agent.session import SAMPLE_RATE
from telephony.jurisdiction import Recording as RecordingRule
from telephony.jurisdiction import Requirements, RuleBook
from telephony.lines import Line


class ConsentMode(enum.StrEnum):
    IMPLIED = "implied"  # staying on the line after the disclosure is consent
    DTMF = "dtmf"  # a key: accept or decline
    SPOKEN = "spoken"  # "yes" or "no" (heard through the ASR), or a key

    @property
    def asks(self) -> bool:
        """Whether the caller must answer (a key, or a word)."""
        return self is not ConsentMode.IMPLIED


class NextStep(enum.StrEnum):
    BRIDGE = "bridge"  # on to the agent
    HANGUP = "hangup"  # a goodbye, then the call ends
    TRANSFER = "transfer"  # to the line's consent transfer target


class Phase(enum.StrEnum):
    PLAYING = "playing"
    WAITING = "waiting"  # played; waiting for a key or a word (dtmf, spoken)
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
    # A call that goes on to the agent without consent: store its words (redacted), or none.
    keep_words: bool = False
    # The caller's speech or a key may cut a notice short (off: every notice plays in full).
    barge_in: bool = False

    def __post_init__(self) -> None:
        if self.accept_digit == self.decline_digit:
            raise ValueError("the accept and decline digits must differ")
        steps = (self.on_decline, self.on_no_response)
        if NextStep.TRANSFER in steps and not self.transfer_to:
            raise ValueError("a consent transfer needs transfer_to (a SIP URI)")


@dataclass(frozen=True, slots=True)
class Decision:
    consent: str  # admin.models.ConsentResult values: granted, declined, no_response
    method: str  # how it was given or sought: implied, dtmf or speech
    interrupted: bool  # the caller hung up before the disclosure had played to its end
    next_step: NextStep
    said: str = ""  # the words that answered (spoken consent), redacted by the worker


class ConsentRun:
    """One call's disclosure, from the first frame to a decision."""

    def __init__(self, policy: ConsentPolicy, *, asking: bool = True) -> None:
        self.policy = policy
        # False while a notice that asks nothing plays (an AI notice before the recording
        # notice): a key or a word then is no answer to a question not yet put.
        self.asking = asking
        self.phase = Phase.PLAYING
        self._answer: str | None = None  # 'granted' or 'declined', from a key or a word
        self._how = "speech" if policy.mode is ConsentMode.SPOKEN else policy.mode.value
        self._said = ""
        self.decision: Decision | None = None

    def digit(self, digit: str) -> Decision | None:
        """A key from the caller; decides at once only once the disclosure has been heard."""
        if self.phase is Phase.DONE or not self.policy.mode.asks or not self.asking:
            return None
        if digit == self.policy.accept_digit:
            answer = "granted"
        elif digit == self.policy.decline_digit:
            answer = "declined"
        else:
            return None
        return self._answered(answer, "dtmf", "")

    def spoken(self, words: str) -> Decision | None:
        """What the caller said (an utterance's transcript): a yes or a no answers, like a
        key; anything else ("what?", "um") leaves the question open."""
        if self.phase is Phase.DONE or self.policy.mode is not ConsentMode.SPOKEN:
            return None
        if not self.asking:
            return None
        answer = spoken_answer(words)
        if answer is None:
            return None
        return self._answered(answer, "speech", words)

    def _answered(self, answer: str, how: str, said: str) -> Decision | None:
        if self._answer is None:  # the first answer counts
            self._answer, self._how, self._said = answer, how, said
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
        self.decision = Decision(consent, self._how, interrupted, step, self._said)
        return self.decision


# --- a spoken answer --------------------------------------------------------------------------

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_YES = frozenset(
    [
        "yes",
        "yeah",
        "yep",
        "yup",
        "yah",
        "ya",
        "sure",
        "okay",
        "ok",
        "alright",
        "agree",
        "agreed",
        "consent",
        "accept",
        "fine",
        "absolutely",
        "certainly",
        "definitely",
        "correct",
        "right",
    ]
)
_YES_PHRASES = ("go ahead", "of course", "that's fine", "that is fine", "no problem", "why not")
_NO = frozenset(
    [
        "no",
        "nope",
        "nah",
        "don't",
        "dont",
        "decline",
        "refuse",
        "disagree",
        "object",
        "not",
        "never",
        "stop",
    ]
)
_NO_PHRASES = ("do not", "rather not", "no thanks", "no thank you")
_UNSURE = ("not sure", "don't know", "dont know", "do not know")  # no answer yet


def spoken_answer(words: str) -> str | None:
    """'granted' for a yes ("yes", "sure, go ahead"), 'declined' for a no ("no", "I don't
    agree", "please don't record"), None for anything else. A no anywhere wins: "yes... no,
    actually" and "not okay" are a no; so is an answer that says both."""
    text = words.lower().replace("\u2019", "'")
    tokens = _WORD.findall(text)
    if not tokens:
        return None
    joined = f" {' '.join(tokens)} "
    for unsure in _UNSURE:
        joined = joined.replace(f" {unsure} ", " ? ")
    said_yes = any(f" {phrase} " in joined for phrase in _YES_PHRASES)
    for phrase in _YES_PHRASES:  # "no problem", "why not": a no-word that says yes
        joined = joined.replace(f" {phrase} ", " yes ")
    left = joined.split()
    if _NO.intersection(left) or any(f" {phrase} " in joined for phrase in _NO_PHRASES):
        return "declined"
    if said_yes or _YES.intersection(left):
        return "granted"
    return None


# --- the disclosure's audio ------------------------------------------------------------------


class DisclosureAudioError(ValueError):
    """The disclosure's audio file is missing, unreadable, or not the recorded version."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # audio_missing, audio_unreadable, audio_mismatch


@dataclass(frozen=True, slots=True)
class Notice:
    """A disclosure's current version: what it is, its audio, and what it discloses."""

    name: str
    version: int | None
    sha256: str | None
    audio_path: Path | None
    covers: frozenset[str] = frozenset({"ai"})  # "ai", "recording"


@dataclass(frozen=True, slots=True)
class DisclosurePlan:
    """What a line plays on answer: the disclosure's current version, and its consent rule.

    `version`/`sha256` are None when no version was found at start-up; `on_missing` says
    whether such a call goes on without the disclosure (`proceed`) or is refused (`refuse`).
    `recording_notice` follows it on a recorded call where it does not cover recording;
    `rules` decide, per call, what the caller's and the line's places require.
    """

    name: str
    version: int | None
    sha256: str | None
    audio_path: Path | None
    policy: ConsentPolicy
    on_missing: str = "proceed"
    goodbye_path: Path | None = None  # played before hanging up on a declined call
    covers: frozenset[str] = frozenset({"ai"})
    recording_notice: Notice | None = None
    rules: RuleBook | None = None

    @property
    def notice(self) -> Notice:
        return Notice(self.name, self.version, self.sha256, self.audio_path, self.covers)

    def requirements(self, line: Line, caller: str | None) -> Requirements | None:
        """What this call needs, by the line's and the caller's places (None: no rules)."""
        if self.rules is None:
            return None
        return self.rules.requirements(line.jurisdiction, caller, region=line.redaction.region)

    def recording_notice_for(self, line: Line, needs: Requirements | None) -> Notice | None:
        """The recording notice to play after the first, if any: on a line that records, when
        the first does not cover recording and the call could be recorded at all (an explicit
        yes is required but the line asks for none: the notice would promise nothing)."""
        if not line.record_calls or "recording" in self.covers or self.recording_notice is None:
            return None
        if (
            needs is not None
            and needs.recording is RecordingRule.EXPLICIT
            and self.policy.mode is ConsentMode.IMPLIED
        ):
            return None
        return self.recording_notice


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
