"""Who has the floor while the agent talks: the rule for what may interrupt it, in one place.

Pure: no audio, no clock of its own, no tasks. The engine (agent/engine.py) feeds it what it
observes on the stream clock — the agent started or finished being audible, each VAD window
of caller voice or silence, the words of the caller's overlapping speech when Whisper has
them — and carries out the acts it returns. Tested on timelines (tests/test_floor.py).

A person does not stop talking for "uh-huh". So caller voice over the agent does not stop it
at once: the floor is *contested*, the agent talks on, and the overlap is decided from its
first `decide_ms` of voice:

- its first words are decoded as soon as there are `decide_ms` of them (`Act.DECODE_ONSET`),
  and once more at `second_look_ms` when the first decode did not settle it (Whisper often
  has nothing yet for the first 160 ms of "Sorry," or "No"): a stop request, a question word
  or a negation takes the floor (`Act.STOP`); "yeah", "uh", "mm", "okay", "I see" do not;
- voice that goes on past `max_backchannel_ms` takes the floor whatever its words: a
  back-channel is a syllable or two;
- once the overlap has ended, its whole text is judged (`judge_overlap`): an acknowledgement
  or a cough leaves the agent talking (`Act.IGNORED`); a turn stops it then, late; a brief
  sound it cannot place leaves it talking, unless the caller goes on within
  `unsure_resume_ms`, when the sound opens their turn;
- a blip shorter than `min_speech_ms` is nothing.

Stopping is final: the agent's audio is cleared at the client, the reply is truncated to what
the caller heard, and the caller's words open their turn. (A supervisor's whisper never takes
the floor either: the dialogue holds it for the agent's next answer.)
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from agent.backchannel import Overlap, judge_onset, judge_overlap


class Floor(enum.StrEnum):
    OPEN = "open"  # the agent is not audible: the caller may speak, the turn detector decides
    AGENT = "agent"  # the agent is audible and the caller quiet
    CONTESTED = "contested"  # caller voice over the agent, not decided: the agent talks on
    SETTLING = "settling"  # the overlap ended; its words are being decoded: the agent talks on
    UNSURE = "unsure"  # a brief sound nobody could place: talk on unless the caller goes on


class Act(enum.StrEnum):
    DECODE_ONSET = "decode_onset"  # decode the overlap's first words (urgent)
    DECODE_OVERLAP = "decode_overlap"  # the overlap ended: decode all of it (urgent)
    STOP = "stop"  # the caller takes the floor: stop the agent for good
    IGNORED = "ignored"  # it was a back-channel (or a cough): the agent talked through it


@dataclass(frozen=True, slots=True)
class FloorConfig:
    barge_in_ms: int = 64  # caller voice over the agent before the floor is contested
    min_speech_ms: int = 96  # shorter voice is a click, not speech
    decide_ms: int = 160  # voice whose first words decide the overlap
    second_look_ms: int = 256  # ... looked at again, when the first words did not decide it
    max_backchannel_ms: int = 800  # voice longer than this takes the floor, whatever its words
    hangover_ms: int = 64  # silence that ends an overlap
    unsure_resume_ms: int = 240  # an unplaceable sound settles after this much silence

    def __post_init__(self) -> None:
        if not (
            0 < self.barge_in_ms <= self.decide_ms <= self.second_look_ms < self.max_backchannel_ms
        ):
            raise ValueError(
                "FloorConfig needs 0 < barge_in_ms <= decide_ms <= second_look_ms"
                " < max_backchannel_ms"
            )
        if self.min_speech_ms <= 0 or self.hangover_ms <= 0 or self.unsure_resume_ms <= 0:
            raise ValueError("FloorConfig waits must be positive milliseconds")


@dataclass(frozen=True, slots=True)
class Decided:
    """Why the floor went to the caller (`Act.STOP`) or stayed with the agent (`IGNORED`)."""

    act: Act
    reason: str  # onset_words | too_long | words | went_on | backchannel | noise | unsure
    text: str = ""
    voiced_ms: int = 0
    onset_ms: int = 0  # stream time the caller's overlapping voice began


Judge = Callable[[str, int], Overlap]


class FloorControl:
    """The floor state machine for one conversation (see the module docstring).

    The methods fed caller audio and words return the acts to carry out, in order;
    `Act.STOP` and `Act.IGNORED` come with `decided`, set until the next overlap begins.
    """

    def __init__(self, config: FloorConfig | None = None, judge: Judge | None = None) -> None:
        self.config = config or FloorConfig()
        self._judge = judge or judge_overlap
        self.state = Floor.OPEN
        self.decided: Decided | None = None
        self._onset_ms = 0
        self._voiced_ms = 0
        self._silent_ms = 0
        self._looks = 0  # onset decodes asked for in this overlap
        self._unsure_text = ""

    # --- the agent ------------------------------------------------------------------------

    def agent_audible(self) -> None:
        """The agent started (or went on) being audible to the caller."""
        if self.state is Floor.OPEN:
            self.state = Floor.AGENT

    def agent_quiet(self) -> None:
        """The agent's audio finished playing: nothing left to contest. Voice over its last
        words goes on as the caller's turn; an overlap whose words are still being decoded
        waits for them (they may be a turn the caller began over the agent's last word)."""
        if self.state in (Floor.AGENT, Floor.CONTESTED):
            # Its words, if any, are the caller's turn now: the turn detector has them.
            self.state = Floor.OPEN
            self._reset_overlap()

    @property
    def agent_has_floor(self) -> bool:
        return self.state is not Floor.OPEN

    @property
    def onset_ms(self) -> int:
        """When the caller's voice over the agent began (the current or last overlap)."""
        return self._onset_ms

    @property
    def overlapping(self) -> bool:
        """Caller speech over the agent is being decided: it is not (yet) a turn."""
        return self.state in (Floor.CONTESTED, Floor.SETTLING, Floor.UNSURE)

    # --- the caller's voice while the agent is audible -------------------------------------

    def window(self, t_ms: int, voiced: bool, window_ms: int) -> list[Act]:
        """One VAD window of caller audio (`t_ms`: its end), echo already discounted."""
        if self.state is Floor.OPEN:
            return []
        config = self.config
        if voiced:
            self._silent_ms = 0
            if self.state is Floor.UNSURE:
                # The caller went on after a sound nobody could place: it opened their turn.
                return self._stop("went_on", self._unsure_text)
            if self.state is Floor.SETTLING:
                # More voice before the overlap's words came back: still the same overlap.
                self.state = Floor.CONTESTED
            if self._voiced_ms == 0:
                self._onset_ms = t_ms - window_ms
            self._voiced_ms += window_ms
            if self.state is Floor.AGENT and self._voiced_ms >= config.barge_in_ms:
                self.state = Floor.CONTESTED
                self.decided = None
            if self.state is Floor.CONTESTED:
                if self._voiced_ms > config.max_backchannel_ms:
                    return self._stop("too_long")
                marks = (config.decide_ms, config.second_look_ms)
                if self._looks < len(marks) and self._voiced_ms >= marks[self._looks]:
                    self._looks += 1
                    return [Act.DECODE_ONSET]
            return []
        self._silent_ms += window_ms
        if self.state is Floor.UNSURE and self._silent_ms >= config.unsure_resume_ms:
            return self._ignore("unsure", self._unsure_text)
        if self.state is Floor.AGENT:
            self._voiced_ms = 0  # a blip under barge_in_ms
            return []
        if self.state is Floor.CONTESTED and self._silent_ms >= config.hangover_ms:
            if self._voiced_ms < config.min_speech_ms:
                return self._ignore("noise")
            self.state = Floor.SETTLING
            return [Act.DECODE_OVERLAP]
        return []

    # --- words ----------------------------------------------------------------------------

    def onset_words(self, text: str) -> list[Act]:
        """The overlap's first `decide_ms` of voice, decoded."""
        if self.state is not Floor.CONTESTED:
            return []  # already settled (it ended, or ran too long)
        if judge_onset(text) is Overlap.TURN:
            return self._stop("onset_words", text)
        return []

    def overlap_words(self, text: str) -> list[Act]:
        """The whole overlap, decoded after it ended."""
        if self.state is not Floor.SETTLING:
            return []
        verdict = self._judge(text, self._voiced_ms)
        if verdict is Overlap.TURN:
            return self._stop("words", text)
        if verdict is Overlap.UNSURE:
            self.state = Floor.UNSURE
            self._unsure_text = text
            self._silent_ms = min(self._silent_ms, self.config.hangover_ms)
            return []
        return self._ignore("backchannel", text)

    # --- outcomes -------------------------------------------------------------------------

    def _stop(self, reason: str, text: str = "") -> list[Act]:
        self.decided = Decided(Act.STOP, reason, text, self._voiced_ms, self._onset_ms)
        self.state = Floor.OPEN
        self._reset_overlap()
        return [Act.STOP]

    def _ignore(self, reason: str, text: str = "") -> list[Act]:
        self.decided = Decided(Act.IGNORED, reason, text, self._voiced_ms, self._onset_ms)
        self.state = Floor.AGENT
        self._reset_overlap()
        return [Act.IGNORED]

    def _reset_overlap(self) -> None:
        self._voiced_ms = 0
        self._silent_ms = 0
        self._looks = 0  # onset decodes asked for in this overlap
        self._unsure_text = ""
