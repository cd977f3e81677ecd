"""One conversation inside the embedded engine: VAD → turn-taking → ASR → responder → TTS.

The session runs on the stream's own clock — milliseconds of caller audio received — so
it behaves the same over a phone line and in an offline test fed faster than real time.
Caller audio is never gated: listening continues while the agent speaks.

The floor: caller speech over the agent does not stop it at once. A person talks on through
"uh-huh", so the floor state machine (agent/floor.py) decides the overlap from its first words
while the agent goes on talking; only when the caller takes the floor is the agent stopped
(the client is told with `input_audio_buffer.speech_started`, clears its playout and
truncates the item to what was heard), and an acknowledgement never opens a gap. Speech
quieter than the agent's own recent output (line echo) does not count while the agent speaks.

Latency: the reply is prepared while the turn detector is still waiting. Whisper starts on the
utterance at the first short silence (`asr_lookahead_ms`, before the VAD's hangover), and as
soon as the turn's text is known the responder answers it on a fork of the dialogue and the
first sentence is synthesized. When the turn ends on that same text the fork is adopted and its
audio goes out at once; if the caller spoke on, or anything else changed the dialogue, the
prepared reply is thrown away.

Supervision: a whisper is handed to the dialogue, which says it in its next answer to the
caller; nothing is said at the moment it arrives. A hand-back is said at once ("I'm back", then
the note). Both change the dialogue, so a reply prepared before them is not used.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from agent.backchannel import Overlap
from agent.floor import Act, FloorConfig, FloorControl
from agent.hesitation import final_island
from agent.realtime import audio_b64, new_id
from agent.tools import END_CALL, TRANSFER_TO_HUMAN
from agent.turns import is_filled_pause

log = logging.getLogger(__name__)

MODEL_NAME = "parley-embedded"  # how its turns are told apart from a hosted model's

RATE = 16_000
VAD_WINDOW = 512  # samples: 32 ms


class Models(Protocol):
    """What a session needs from the shared model hub (see hub.py)."""

    async def vad(self, stream_id: int, window: np.ndarray) -> float: ...

    def open_vad_stream(self) -> int: ...

    def close_vad_stream(self, stream_id: int) -> None: ...

    async def transcribe(self, pcm: np.ndarray, *, urgent: bool = False) -> str: ...

    async def synthesize(self, sentence: str) -> np.ndarray: ...

    def sentences(self, text: str) -> list[str]: ...


class Dialogue(Protocol):
    """The responder for one call (agent.responder.Conversation)."""

    def greeting(self) -> Any: ...

    def respond(self, caller_text: str) -> Any: ...

    def dtmf(self, digit: str) -> Any: ...

    def silence(self) -> Any: ...

    def instruct(self, text: str) -> None:
        """Hold a supervisor's whisper for the next answer to the caller."""
        ...

    def resume(self, note: str | None) -> Any:
        """The reply that says the agent is back after a supervisor's takeover."""
        ...

    def fork(self) -> Dialogue:
        """An independent copy of the dialogue state, to answer speculatively."""
        ...


class Turns(Protocol):
    def speech_started(self, t_ms: int) -> None: ...

    def speech_stopped(self, t_ms: int) -> None: ...

    def partial_transcript(self, text: str, t_ms: int) -> None: ...

    def judged(self, text: str, *, understood: bool, number_taken: bool = False) -> None: ...

    def heard_filler(self, text: str) -> None: ...

    def tick(self, t_ms: int) -> Any: ...

    def reset(self) -> None: ...


@dataclass(frozen=True)
class EngineConfig:
    onset_threshold: float = 0.5
    offset_threshold: float = 0.35
    min_speech_ms: int = 96  # three VAD windows: a click is not speech
    hangover_ms: int = 160  # silence before the VAD says the caller stopped
    # Caller voice over the agent (agent/floor.py): after `barge_in_ms` of it the floor is
    # contested and the agent talks on; the first `decide_ms` of voice are decoded at once,
    # and again at `second_look_ms` if that did not settle it: a stop word, a negation or a
    # question word stops the agent; voice going on past `max_backchannel_ms` takes the floor
    # whatever it says; an overlap that ended is judged on all its words
    # `overlap_hangover_ms` after it, and a brief sound nobody can place leaves the agent
    # talking unless the caller goes on within `unsure_resume_ms`.
    barge_in_ms: int = 64
    decide_ms: int = 160
    second_look_ms: int = 256
    max_backchannel_ms: int = 800
    overlap_hangover_ms: int = 64
    unsure_resume_ms: int = 240
    # Silence after which the utterance so far is transcribed ahead of the hangover; thrown
    # away if the caller goes on. 0 disables the look-ahead.
    asr_lookahead_ms: int = 64
    # Prepare the reply (responder and first sentence of audio) while the turn detector waits.
    speculate: bool = True
    echo_ratio: float = 0.5  # caller RMS must exceed this share of the agent's recent RMS
    max_utterance_ms: int = 25_000  # a monologue is transcribed in rolling windows
    silence_reprompt_ms: int = 6_000
    greet: bool = True
    # Optional "mm-hm"s while the caller talks at length, without taking the turn.
    agent_backchannels: bool = False
    backchannel_every_ms: int = 5_000
    backchannel_text: str = "Mm-hm."
    delta_ms: int = 100  # audio per response.output_audio.delta
    # The functions the client declared (agent/tools.py): a handoff or the end of the call is
    # then also a function call, as a hosted model makes it (a client of the plain Realtime
    # protocol does not read parley.* events).
    tools: frozenset[str] = frozenset()
    # False: the engine only decides the caller's turns (speech started, the turn's end and
    # its words) and says nothing: Parley's turn-taking for a hosted model (agent/turn_source.py).
    answers: bool = True

    def floor(self) -> FloorConfig:
        return FloorConfig(
            barge_in_ms=self.barge_in_ms,
            min_speech_ms=self.min_speech_ms,
            decide_ms=self.decide_ms,
            second_look_ms=self.second_look_ms,
            max_backchannel_ms=self.max_backchannel_ms,
            hangover_ms=self.overlap_hangover_ms,
            unsure_resume_ms=self.unsure_resume_ms,
        )


@dataclass
class _Response:
    response_id: str
    item_id: str
    text: str
    audio: list[np.ndarray] = field(default_factory=list)  # every chunk synthesized so far
    sent_samples: int = 0
    start_t_ms: int = 0  # stream time when the first audio went out
    heard_ms: int | None = None  # set when the client truncated
    done: bool = False
    end_call: bool = False
    stopped: bool = False  # cut off by the caller: the client dropped what it had not played


@dataclass
class _Prepared:
    """A reply made ahead of the turn's end, on a fork of the dialogue."""

    text: str  # the caller's words it answers
    epoch: int  # the dialogue epoch it forked from
    fork: Dialogue
    task: asyncio.Task[tuple[Any, float]]  # (reply, responder ms)
    # Whether the responder took the words as a request it can answer (None: not answered yet).
    understood: bool | None = None
    number_taken: bool = False  # and whether they ended in the whole number it asked for


@dataclass(frozen=True)
class _Heard:
    text: str
    filler: bool  # the audio ended in a filled pause (the text may have left it out)


Send = Callable[[str, dict[str, Any]], Awaitable[None]]


class EngineSession:
    def __init__(
        self,
        *,
        models: Models,
        dialogue: Dialogue,
        turns: Turns,
        send: Send,
        judge_overlap: Callable[[str, int], Overlap],
        config: EngineConfig | None = None,
    ) -> None:
        self.models = models
        self.dialogue = dialogue
        self.turns = turns
        self.send = send
        self.config = config or EngineConfig()
        self.stream = models.open_vad_stream()
        self.t_ms = 0  # the stream clock: caller audio received
        self._pending = np.zeros(0, dtype=np.int16)
        self._utterance: list[np.ndarray] = []
        self._turn_power = (0.0, 0)  # the turn's speech so far: (sum of squares, samples)
        self._in_speech = False
        self._speech_run_ms = 0
        self._silence_run_ms = 0
        self._speech_start_ms = 0
        self._speech_stop_ms = 0
        self._response: _Response | None = None
        self._agent_tail: list[float] = []  # RMS of recent agent output, 20 ms each
        self._turn_task: asyncio.Task[None] | None = None
        self._speak_task: asyncio.Task[None] | None = None
        self._last_activity_ms = 0
        self._hold_text = ""  # the caller's words so far in this turn
        self._asr_ms = 0.0  # time the last transcription took
        self._asr_task: asyncio.Task[None] | None = None
        self._lookahead: asyncio.Task[_Heard] | None = None
        self._prepared: _Prepared | None = None
        self._epoch = 0  # bumped whenever the real dialogue's state may have changed
        self._unanswered: Any = None  # the reply to a user message added, until response.create
        self._last_backchannel_ms = 0
        self._backchannel_task: asyncio.Task[None] | None = None
        self.floor = FloorControl(self.config.floor(), judge_overlap)
        self._floor_tasks: set[asyncio.Task[None]] = set()
        # The caller's current stretch of speech began over the agent and is the floor's to
        # judge, not the turn detector's, unless it takes the floor.
        self._overlap_segment = False
        # The last second or so of caller audio, every window: an overlap is decoded from it
        # with the sound just before its onset (Whisper needs to hear a word begin).
        self._recent: deque[np.ndarray] = deque(maxlen=_RECENT_WINDOWS)
        self.closed = False

    # --- input --------------------------------------------------------------------------

    async def start(self) -> None:
        if self.config.greet:
            await self._speak(self.dialogue.greeting())

    async def audio(self, pcm16k: np.ndarray) -> None:
        self._pending = np.concatenate([self._pending, pcm16k])
        while len(self._pending) >= VAD_WINDOW:
            window, self._pending = self._pending[:VAD_WINDOW], self._pending[VAD_WINDOW:]
            await self._window(window)

    async def dtmf(self, digit: str) -> None:
        self._epoch += 1
        reply = self.dialogue.dtmf(digit)
        if reply is not None:
            await self._interrupt_agent("dtmf")
            await self._speak(reply)

    async def instruction(self, text: str) -> None:
        """A supervisor's whisper: the next answer says it. An idle agent stays quiet and waits
        for the caller; an agent mid-sentence finishes it."""
        if not text.strip():
            return
        self.dialogue.instruct(text)
        self._epoch += 1  # a reply prepared before the whisper does not carry it
        self._drop_prepared()
        log.info("supervisor instruction held", extra={"chars": len(text)})

    async def resume(self, note: str | None) -> None:
        """Back on the call after a supervisor's takeover: say so at once, with the note.

        What the caller said before the takeover is forgotten: the supervisor has dealt with
        it, and the bridge sent nothing of what was said while the agent was away."""
        await self._interrupt_agent("resumed")
        self._drop_lookahead()
        self._drop_prepared()
        self._hold_text = ""
        self.turns.reset()
        self._epoch += 1
        reply = await asyncio.to_thread(self.dialogue.resume, note)
        self._last_activity_ms = self.t_ms
        await self.send("parley.agent_resumed", {"note": bool(note)})
        await self._speak(reply)

    async def add_user_text(self, text: str) -> None:
        """A user message (conversation.item.create) joins the conversation, as in the
        Realtime API: nothing is said until `response.create`. A worker that moves a call
        here from an engine that died replays the call's turns this way, so the dialogue
        (the facts, the last answer) is where the caller left it."""
        self._drop_prepared()
        self._epoch += 1
        self._unanswered = await asyncio.to_thread(self.dialogue.respond, text)
        self._last_activity_ms = self.t_ms

    async def create_response(self) -> None:
        """`response.create`: answers the last user message not yet answered; with none,
        there is nothing new to say (the greeting is the session's own, `greet`)."""
        reply, self._unanswered = self._unanswered, None
        if reply is None:
            log.info("response.create with nothing unanswered")
            return
        await self._interrupt_agent("new_turn")
        await self._speak(reply)

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        response = self._response
        if response is not None and response.item_id == item_id:
            response.heard_ms = audio_end_ms
            await self.send(
                "conversation.item.truncated",
                {"item_id": item_id, "content_index": 0, "audio_end_ms": audio_end_ms},
            )

    async def cancel(self) -> None:
        await self._interrupt_agent("cancelled")

    async def close(self) -> None:
        self.closed = True
        self._drop_lookahead()
        self._drop_prepared()
        for task in (self._turn_task, self._speak_task, self._asr_task, *self._floor_tasks):
            if task is not None:
                task.cancel()
        self.models.close_vad_stream(self.stream)

    # --- listening ----------------------------------------------------------------------

    def _agent_audible(self) -> bool:
        response = self._response
        if response is None or response.stopped:
            return False
        played_ms = response.sent_samples * 1000 // RATE
        return self.t_ms < response.start_t_ms + played_ms + 200

    def _echo_floor(self) -> float:
        return max(self._agent_tail[-12:], default=0.0) * self.config.echo_ratio

    async def _window(self, window: np.ndarray) -> None:
        config = self.config
        window_ms = VAD_WINDOW * 1000 // RATE
        self.t_ms += window_ms
        probability = await self.models.vad(self.stream, window)
        rms = float(np.sqrt(np.mean(window.astype(np.float32) ** 2)))
        voiced = probability >= (
            config.offset_threshold if self._in_speech else config.onset_threshold
        )
        audible = self._agent_audible()
        if voiced and audible and rms < self._echo_floor():
            voiced = False  # the agent's own voice coming back down the line
        if audible:
            self.floor.agent_audible()
        elif self.floor.agent_has_floor:
            self.floor.agent_quiet()
            if not self.floor.agent_has_floor and self.floor.decided is None:
                self._overlap_segment = False  # the agent finished: the caller's turn goes on
        if self._in_speech or voiced:
            self._utterance.append(window)
        self._recent.append(window)
        await self._act(self.floor.window(self.t_ms, voiced, window_ms))
        if self.floor.overlapping and (voiced or self._in_speech):
            self._overlap_segment = True
        if voiced:
            self._speech_run_ms += window_ms
            self._silence_run_ms = 0
            if self._lookahead is not None:
                # The caller went on inside the hangover: the look-ahead text, and any reply
                # prepared from it, would be short of what they are saying.
                self._drop_lookahead()
                self._drop_prepared()
            await self._maybe_backchannel()
            if not self._in_speech and self._speech_run_ms >= config.min_speech_ms:
                await self._speech_started()
        else:
            self._silence_run_ms += window_ms
            if not self._in_speech:
                self._speech_run_ms = 0
                self._utterance = self._utterance[-3:]  # keep the onset's lead-in
            elif self._silence_run_ms >= config.hangover_ms:
                await self._speech_stopped()
            elif (
                config.asr_lookahead_ms
                and self._silence_run_ms >= config.asr_lookahead_ms
                and self._lookahead is None
                and not self._overlap_segment  # the floor decodes an overlap itself
            ):
                audio = np.concatenate(self._utterance)
                self._lookahead = asyncio.create_task(self._hear(audio, ahead=True))
        if sum(len(w) for w in self._utterance) * 1000 // RATE > config.max_utterance_ms:
            self._roll_utterance()
        # No turn ends on a guess while its words are still being decoded: the reply needs them
        # anyway, and under load they arrive after the no-transcript wait, when they may say
        # "my order number is um" (wait on) rather than a question (answer now). Nor while the
        # caller is audibly starting again (an "um" not yet long enough to count as speech).
        # Nor before the responder has read the words it would answer: the reply has to wait
        # for it anyway, and its reading sets the wait (see `_tell_judged`). Nor while speech
        # over the agent is still being judged: it may be no turn at all.
        decoding = self._asr_task is not None and not self._asr_task.done()
        if (
            not decoding
            and not self._judging()
            and self._speech_run_ms == 0
            and not self.floor.overlapping
        ):
            decision = self.turns.tick(self.t_ms)
            if decision is not None and self._turn_task is None and not self._in_speech:
                self._turn_task = asyncio.create_task(self._end_of_turn(decision))
        await self._check_silence()

    # --- the floor ------------------------------------------------------------------------

    async def _act(self, acts: list[Act]) -> None:
        for act in acts:
            if act in (Act.DECODE_ONSET, Act.DECODE_OVERLAP):
                since_ms = self.floor.onset_ms - _OVERLAP_LEAD_MS
                windows = min(len(self._recent), max(1, (self.t_ms - since_ms) // _WINDOW_MS))
                audio = np.concatenate(list(self._recent)[-windows:])
                task = asyncio.create_task(self._decode_overlap(act, audio))
                self._floor_tasks.add(task)
                task.add_done_callback(self._floor_tasks.discard)
            elif act is Act.STOP:
                await self._caller_takes_floor()
            elif act is Act.IGNORED:
                await self._talked_through()

    async def _decode_overlap(self, act: Act, audio: np.ndarray) -> None:
        # Urgent: ahead of other sessions' turns in the hub's queue, since the agent is
        # talking over the caller until this text says whether it should.
        text = await self.models.transcribe(audio, urgent=True)
        if act is Act.DECODE_ONSET:
            await self._act(self.floor.onset_words(text))
        else:
            await self._act(self.floor.overlap_words(text))

    async def _caller_takes_floor(self) -> None:
        """The caller took the floor over the agent: it stops for good (the client clears its
        playout and truncates the reply to what was heard), and the caller's words open
        their turn."""
        decided = self.floor.decided
        response = self._response
        onset_ms = decided.onset_ms if decided is not None else self.t_ms
        await self.send(
            "input_audio_buffer.speech_started",
            {"audio_start_ms": onset_ms, "item_id": new_id("item")},
        )
        if response is not None:
            await self.send(
                "parley.barge_in",
                {
                    "item_id": response.item_id,
                    "after_speech_ms": self.t_ms - onset_ms,
                    "reason": decided.reason if decided is not None else "",
                    "text": decided.text if decided is not None else "",
                },
            )
            response.stopped = True
        await self._interrupt_agent("barge_in")
        self._overlap_segment = False  # what is still being said is the caller's turn
        text = decided.text if decided is not None else ""
        if text and not self._in_speech:
            # The overlap has ended and its audio is gone, decoded: its words open the turn.
            # (Still speaking, the caller's utterance is transcribed whole when it ends.)
            self._hold_text = text
            self.turns.partial_transcript(text, self.t_ms)
            if self.config.speculate:
                self._prepare(text)

    async def _talked_through(self) -> None:
        """The overlap was a back-channel, a cough or a click: the agent never stopped, and
        the turn detector forgets it."""
        decided = self.floor.decided
        response = self._response
        ignored: dict[str, Any] = {
            "text": decided.text if decided is not None else "",
            "duration_ms": decided.voiced_ms if decided is not None else 0,
            "reason": decided.reason if decided is not None else "",
        }
        if response is not None:
            ignored["item_id"] = response.item_id  # the reply that goes on
        await self.send("parley.backchannel_ignored", ignored)
        self.turns.reset()

    async def _maybe_backchannel(self) -> None:
        config = self.config
        if not config.agent_backchannels or not self._in_speech or self._agent_audible():
            return
        talking_ms = self.t_ms - max(self._speech_start_ms, self._last_backchannel_ms)
        if talking_ms < config.backchannel_every_ms or self._backchannel_task is not None:
            return
        self._last_backchannel_ms = self.t_ms
        self._backchannel_task = asyncio.create_task(self._send_backchannel())

    async def _send_backchannel(self) -> None:
        """A short acknowledgement, sent as its own item: it is not the agent's turn."""
        try:
            audio = await self.models.synthesize(self.config.backchannel_text)
            item_id = new_id("item")
            await self.send("parley.agent_backchannel", {"item_id": item_id})
            await self.send(
                "response.output_audio.delta",
                {
                    "response_id": new_id("resp"),
                    "item_id": item_id,
                    "output_index": 0,
                    "content_index": 0,
                    "delta": audio_b64(audio.astype("<i2").tobytes()),
                },
            )
            await self.send("response.output_audio.done", {"item_id": item_id, "output_index": 0})
        finally:
            self._backchannel_task = None

    async def _speech_started(self) -> None:
        self._drop_prepared()  # the turn goes on: its text will change
        self._in_speech = True
        self._speech_start_ms = self.t_ms - self._speech_run_ms
        self._last_activity_ms = self.t_ms
        self.turns.speech_started(self._speech_start_ms)
        if not self._agent_audible() and not self._overlap_segment:
            await self.send(
                "input_audio_buffer.speech_started",
                {"audio_start_ms": self._speech_start_ms, "item_id": new_id("item")},
            )

    async def _speech_stopped(self) -> None:
        self._in_speech = False
        trailing = self._silence_run_ms // (VAD_WINDOW * 1000 // RATE)
        voiced_until = self.t_ms - self._silence_run_ms
        # Silero stays above its offset threshold a little past the last sound (0-70 ms on
        # speech ending in a fricative or a fading vowel): turn waits count from where the
        # energy actually fell.
        self._speech_stop_ms = voiced_until - _energy_tail_ms(self._utterance, trailing)
        self._speech_run_ms = 0
        self._last_activity_ms = self.t_ms
        self.turns.speech_stopped(self._speech_stop_ms)
        await self.send("input_audio_buffer.speech_stopped", {"audio_end_ms": self._speech_stop_ms})
        audio = np.concatenate(self._utterance) if self._utterance else np.zeros(0, np.int16)
        power, samples = self._turn_power
        self._turn_power = (
            power + float(np.square(audio, dtype=np.float64).sum()),
            samples + audio.size,
        )
        lookahead, self._lookahead = self._lookahead, None
        if self._overlap_segment:
            # Speech over the agent: the floor has its words decoded and judges them.
            self._overlap_segment = False
            self._utterance = []
            if lookahead is not None:
                _discard(lookahead)
            return
        self._utterance = []
        # Start decoding at the first silence so the text is ready when the turn ends; listening
        # goes on meanwhile (the turn detector waits for text it has not got yet).
        previous = self._asr_task
        self._asr_task = asyncio.create_task(self._transcribe_segment(audio, previous, lookahead))

    async def _transcribe_segment(
        self,
        audio: np.ndarray,
        previous: asyncio.Task[None] | None,
        lookahead: asyncio.Task[_Heard] | None,
    ) -> None:
        # asr_ms: how long after the VAD's speech_stopped the text was there.
        started = time.perf_counter()
        if previous is not None:
            await previous  # segments join the turn's text in the order they were spoken
        heard = await (lookahead or self._hear(audio))
        self._asr_ms = (time.perf_counter() - started) * 1000
        self._hold_text = f"{self._hold_text} {heard.text}".strip()
        self.turns.partial_transcript(self._hold_text, self.t_ms)
        if heard.filler:
            self.turns.heard_filler(self._hold_text)
        if self.config.speculate and not self._in_speech and self._hold_text:
            self._prepare(self._hold_text)
            self._tell_judged()

    async def _hear(self, audio: np.ndarray, *, ahead: bool = False) -> _Heard:
        """The utterance's words, and whether its audio ended in a filled pause: its last
        stretch of sound, decoded on its own, is nothing but a filler (agent/hesitation.py).
        Both are asked for together, so the hub decodes them in one pass. `ahead`: a
        look-ahead, whose words are answered ahead as soon as they are in."""
        island = final_island(audio)
        last = None if island is None else asyncio.ensure_future(self.models.transcribe(island))
        try:
            text = await self.models.transcribe(audio)
            if ahead:
                self._answer_ahead(text)  # while the last stretch is decoded
            return _Heard(text, filler=last is not None and is_filled_pause(await last))
        finally:
            if last is not None and not last.done():
                last.cancel()

    def _answer_ahead(self, words: str) -> None:
        # The caller has been quiet since the look-ahead began: answer ahead on these words
        # without waiting for the hangover, unless an earlier segment of the turn is still
        # being decoded.
        if not self.config.speculate or (self._asr_task is not None and not self._asr_task.done()):
            return
        text = f"{self._hold_text} {words}".strip()
        if text:
            self._prepare(text)

    def _prepare(self, text: str) -> None:
        prepared = self._prepared
        if prepared is not None and prepared.text == text and prepared.epoch == self._epoch:
            return  # already under way (from the look-ahead)
        self._drop_prepared()
        fork = self.dialogue.fork()
        task = asyncio.create_task(self._prepare_reply(fork, text))
        self._prepared = _Prepared(text, self._epoch, fork, task)

    async def _prepare_reply(self, fork: Dialogue, text: str) -> tuple[Any, float]:
        started = time.perf_counter()
        reply = await asyncio.to_thread(fork.respond, text)
        responder_ms = (time.perf_counter() - started) * 1000
        prepared = self._prepared
        if prepared is not None and prepared.fork is fork:
            prepared.understood = bool(getattr(reply, "understood", True))
            prepared.number_taken = bool(getattr(reply, "number_taken", False))
            self._tell_judged()
        # The reply's first sentence lands in the hub's TTS cache; a session that does not
        # answer (a hosted model's turns) needs only the responder's judgment above.
        sentences = self.models.sentences(str(getattr(reply, "text", "") or ""))
        if sentences and self.config.answers:
            await self.models.synthesize(sentences[0])
        return reply, responder_ms

    def _prepared_for_turn(self) -> _Prepared | None:
        """The prepared reply, if it answers the words the turn detector is judging now."""
        prepared = self._prepared
        if prepared is None or prepared.epoch != self._epoch or prepared.text != self._hold_text:
            return None
        return prepared

    def _judging(self) -> bool:
        """Whether the responder is still reading the words the turn detector is judging."""
        prepared = self._prepared_for_turn()
        return prepared is not None and prepared.understood is None and not prepared.task.done()

    def _tell_judged(self) -> None:
        """Tells the turn detector whether the words it is judging make a request the agent
        understood: a whole request is the best sign they are finished when the ASR gave no
        punctuation, and nonsense the best sign its punctuation is wrong."""
        prepared = self._prepared_for_turn()
        if prepared is not None and prepared.understood is not None:
            self.turns.judged(
                prepared.text, understood=prepared.understood, number_taken=prepared.number_taken
            )

    def _drop_prepared(self) -> None:
        prepared, self._prepared = self._prepared, None
        if prepared is not None:
            _discard(prepared.task)

    def _drop_lookahead(self) -> None:
        lookahead, self._lookahead = self._lookahead, None
        if lookahead is not None:
            _discard(lookahead)

    def _roll_utterance(self) -> None:
        # A monologue keeps only its latest window of audio: memory stays bounded, and the
        # end of what was said is what the reply should address.
        keep = self.config.max_utterance_ms * RATE // 1000 // VAD_WINDOW
        self._utterance = self._utterance[-keep:]

    async def _check_silence(self) -> None:
        response = self._response
        waiting = response is None or response.done
        if not waiting or self._in_speech or self._turn_task is not None:
            return
        # Silence counts from when the agent's audio finished playing, not from when it was sent.
        spoke_until = 0
        if response is not None:
            spoke_until = response.start_t_ms + response.sent_samples * 1000 // RATE
        quiet_since = max(self._last_activity_ms, spoke_until)
        if self.t_ms - quiet_since < self.config.silence_reprompt_ms:
            return
        self._last_activity_ms = self.t_ms
        self._epoch += 1
        self._speak_task = asyncio.create_task(self._speak(self.dialogue.silence()))

    # --- a turn ends --------------------------------------------------------------------

    async def _end_of_turn(self, decision: Any) -> None:
        try:
            if self._asr_task is not None:
                # The decision may come before the last segment's text (a turn ended on its
                # no-transcript wait): never answer, or drop, words still being decoded.
                await self._asr_task
                self._asr_task = None
            text, self._hold_text = self._hold_text.strip(), ""
            endpoint_ms = int(getattr(decision, "silence_ms", 0))
            item_id = new_id("item")
            await self.send(
                "input_audio_buffer.committed", {"item_id": item_id, "previous_item_id": None}
            )
            completed: dict[str, Any] = {"item_id": item_id, "content_index": 0, "transcript": text}
            level = _level_dbfs(*self._turn_power)
            self._turn_power = (0.0, 0)
            if level is not None:
                # Parley's own field: how loud the caller spoke (the escalation service's
                # frustration cue "a raised voice" compares it with their usual level).
                completed["parley_level_dbfs"] = level
            await self.send("conversation.item.input_audio_transcription.completed", completed)
            prepared, self._prepared = self._prepared, None
            if not text:
                if prepared is not None:
                    _discard(prepared.task)
                return
            started = time.perf_counter()
            if prepared is not None and prepared.text == text and prepared.epoch == self._epoch:
                # responder_ms: the wait left at the turn's end (the work began earlier).
                reply, _ = await prepared.task
                if prepared.epoch == self._epoch:
                    self.dialogue = prepared.fork
                else:
                    # A whisper or a key came while it finished: the fork has not seen it.
                    prepared = None
                    reply = await asyncio.to_thread(self.dialogue.respond, text)
            else:
                if prepared is not None:
                    _discard(prepared.task)
                prepared = None
                reply = await asyncio.to_thread(self.dialogue.respond, text)
            self._epoch += 1
            responder_ms = (time.perf_counter() - started) * 1000
            await self._interrupt_agent("new_turn")
            await self._speak(
                reply,
                latency={
                    "end_reason": str(getattr(decision, "reason", "")),
                    "endpointing_ms": endpoint_ms,
                    "asr_ms": round(self._asr_ms, 1),
                    "responder_ms": round(responder_ms, 1),
                    "prepared": prepared is not None,
                },
            )
        finally:
            self._turn_task = None
            self._last_activity_ms = self.t_ms

    async def _interrupt_agent(self, reason: str) -> None:
        response = self._response
        if response is None or response.done:
            return
        response.done = True
        if self._speak_task is not None and self._speak_task is not asyncio.current_task():
            self._speak_task.cancel()
        heard = response.heard_ms
        await self.send(
            "response.output_audio_transcript.done",
            {
                "response_id": response.response_id,
                "item_id": response.item_id,
                "output_index": 0,
                "content_index": 0,
                "transcript": _heard_text(response, heard),
            },
        )
        await self.send(
            "response.done",
            {
                "response": {
                    "id": response.response_id,
                    "status": "cancelled",
                    "status_details": {"reason": reason},
                }
            },
        )

    async def _speak(self, reply: Any, latency: dict[str, Any] | None = None) -> None:
        if not self.config.answers:
            return  # another model answers; this session decides turns only
        text = str(getattr(reply, "text", "") or "")
        response = _Response(new_id("resp"), new_id("item"), text)
        response.end_call = bool(getattr(reply, "end_call", False))
        self._response = response
        await self.send(
            "response.created", {"response": {"id": response.response_id, "status": "in_progress"}}
        )
        await self.send(
            "response.output_item.added",
            {
                "response_id": response.response_id,
                "output_index": 0,
                "item": {
                    "id": response.item_id,
                    "type": "message",
                    "role": "assistant",
                    "status": "in_progress",
                },
            },
        )
        whisper = getattr(reply, "whisper", "")
        if whisper:
            await self.send(
                "parley.instruction_applied", {"item_id": response.item_id, "text": whisper}
            )
        await self.send("parley.reply", _reading(reply, self.dialogue, response.item_id))
        handoff = getattr(reply, "handoff_reason", None)
        if handoff:
            await self.send(
                "parley.handoff_requested", {"reason": handoff, "item_id": response.item_id}
            )
            reason = "caller_asked" if handoff in ("caller_asked", "dtmf_0") else "cannot_help"
            await self._function_call(response, TRANSFER_TO_HUMAN, {"reason": reason})
        started = time.perf_counter()
        first_audio_ms: float | None = None
        try:
            for sentence in self.models.sentences(text):
                chunk = await self.models.synthesize(sentence)
                if response.done:
                    return
                response.audio.append(chunk)
                if first_audio_ms is None:
                    first_audio_ms = (time.perf_counter() - started) * 1000
                    if latency is not None:
                        await self.send(
                            "parley.turn_latency",
                            {
                                **latency,
                                "first_audio_ms": round(first_audio_ms, 1),
                                "item_id": response.item_id,
                                "model": MODEL_NAME,
                            },
                        )
                await self.send(
                    "response.output_audio_transcript.delta",
                    {
                        "response_id": response.response_id,
                        "item_id": response.item_id,
                        "delta": sentence + " ",
                    },
                )
                await self._flush_audio(response)
            if response.done:
                return
            await self._finish(response)
        except asyncio.CancelledError:
            return

    async def _flush_audio(self, response: _Response) -> None:
        everything = np.concatenate(response.audio) if response.audio else np.zeros(0, np.int16)
        step = self.config.delta_ms * RATE // 1000
        if response.sent_samples == 0:
            response.start_t_ms = self.t_ms
        while response.sent_samples < len(everything) and not response.done:
            chunk = everything[response.sent_samples : response.sent_samples + step]
            response.sent_samples += len(chunk)
            for offset in range(0, len(chunk), 320):
                part = chunk[offset : offset + 320].astype(np.float32)
                self._agent_tail.append(float(np.sqrt(np.mean(part**2))) if len(part) else 0.0)
            self._agent_tail = self._agent_tail[-200:]
            await self.send(
                "response.output_audio.delta",
                {
                    "response_id": response.response_id,
                    "item_id": response.item_id,
                    "output_index": 0,
                    "content_index": 0,
                    "delta": audio_b64(chunk.astype("<i2").tobytes()),
                },
            )

    async def _finish(self, response: _Response) -> None:
        response.done = True
        await self.send(
            "response.output_audio.done",
            {
                "response_id": response.response_id,
                "item_id": response.item_id,
                "output_index": 0,
                "content_index": 0,
            },
        )
        await self.send(
            "response.output_audio_transcript.done",
            {
                "response_id": response.response_id,
                "item_id": response.item_id,
                "output_index": 0,
                "content_index": 0,
                "transcript": response.text,
            },
        )
        await self.send(
            "response.done", {"response": {"id": response.response_id, "status": "completed"}}
        )
        if response.end_call:
            await self.send("parley.hangup_requested", {"reason": "conversation_complete"})
            await self._function_call(response, END_CALL, {})

    async def _function_call(self, response: _Response, name: str, args: dict[str, str]) -> None:
        """The function call a hosted model would make here, to a client that declared it."""
        if name not in self.config.tools:
            return
        await self.send(
            "response.function_call_arguments.done",
            {
                "response_id": response.response_id,
                "item_id": new_id("item"),
                "output_index": 1,
                "call_id": new_id("call"),
                "name": name,
                "arguments": json.dumps(args),
            },
        )


_WINDOW_MS = VAD_WINDOW * 1000 // RATE
_OVERLAP_LEAD_MS = 96  # decoded before an overlap's onset
_RECENT_WINDOWS = 40  # 1.28 s: an overlap is never longer than `max_backchannel_ms` voiced
_TAIL_BLOCK = 256  # samples: 16 ms


def _energy_tail_ms(windows: list[np.ndarray], trailing: int) -> int:
    """How long before the end of the last voiced VAD window the speech energy ended.

    Looks at the last two voiced windows in 16 ms blocks: the speech ended after the last block
    whose RMS is at least a tenth of the utterance's median window RMS.
    """
    voiced = windows[: len(windows) - trailing] if trailing else windows
    if len(voiced) < 3:
        return 0
    rms = [float(np.sqrt(np.mean(w.astype(np.float32) ** 2))) for w in voiced]
    floor = 0.1 * float(np.median(rms))
    tail = np.concatenate(voiced[-2:]).astype(np.float32)
    blocks = tail[: len(tail) // _TAIL_BLOCK * _TAIL_BLOCK].reshape(-1, _TAIL_BLOCK)
    loud = np.flatnonzero(np.sqrt(np.mean(blocks**2, axis=1)) >= floor)
    if not len(loud):
        return len(tail) * 1000 // RATE
    return (len(blocks) - 1 - int(loud[-1])) * _TAIL_BLOCK * 1000 // RATE


def _discard(task: asyncio.Task[Any]) -> None:
    """Cancels work nobody will use; an error it already raised is read so it is not logged."""
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


def _heard_text(response: _Response, heard_ms: int | None) -> str:
    """The part of the agent's text the caller heard, by the share of audio played."""
    total = sum(len(a) for a in response.audio)
    if heard_ms is None or total == 0:
        return response.text
    share = min(1.0, heard_ms * RATE / 1000 / total)
    words = response.text.split()
    return " ".join(words[: round(len(words) * share)])


def _reading(reply: Any, dialogue: Any, item_id: str) -> dict[str, Any]:
    """How the responder read the caller's last turn (`parley.reply`): the intent it answered
    (a knowledge-base entry or procedure id), whether it understood, how sure it was, and the
    facts (slot values) collected so far. The escalation service reads it for its triggers
    (repeated misunderstanding, low confidence) and the supervisor's warm-handoff summary."""
    confidence = getattr(reply, "confidence", 1.0)
    facts = getattr(dialogue, "facts", None)
    return {
        "item_id": item_id,
        "intent": getattr(reply, "entry_id", None),
        "understood": bool(getattr(reply, "understood", True)),
        "confidence": round(min(1.0, max(0.0, float(confidence))), 3),
        "facts": dict(facts) if isinstance(facts, dict) else {},
        # Asking for a card number (a sensitive slot): the media worker pauses the recording
        # and the transcript from this reply until one says False.
        "sensitive": bool(getattr(dialogue, "collecting_sensitive", False)),
    }


def _level_dbfs(power: float, samples: int) -> float | None:
    """The mean level of `samples` int16 samples whose squares sum to `power`, in dBFS."""
    if samples <= 0 or power <= 0:
        return None
    return round(10 * math.log10(power / samples / 32768.0**2), 1)
