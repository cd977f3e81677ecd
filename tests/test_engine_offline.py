"""The embedded engine, streaming, without SIP: real models, espeak-ng caller audio."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from agent.app import Knowledge
from agent.hub import ModelHub
from tests.engine_harness import Harness, silence, speak

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models() -> Iterator[tuple[ModelHub, Knowledge]]:
    hub = ModelHub.load()
    knowledge = Knowledge({})
    yield hub, knowledge
    hub.close()


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_a_knowledge_base_question_gets_the_fact(models: tuple[ModelHub, Knowledge]) -> None:
    async def scenario() -> None:
        h = Harness(*models)
        await h.open(greet=False)
        await h.feed(silence(500))
        await h.feed(speak("How much does shipping cost?"))
        await h.feed_until("response.output_audio_transcript.done")
        caller = h.first("conversation.item.input_audio_transcription.completed")
        assert caller is not None and "shipping" in caller.fields["transcript"].lower()
        agent = h.first("response.output_audio_transcript.done")
        assert agent is not None and "fifty dollars" in agent.fields["transcript"].lower()
        latency = h.first("parley.turn_latency")
        assert latency is not None
        # How the responder read the turn, and how loud the caller spoke (for the escalation
        # service's triggers and the supervisor's summary).
        reading = h.first("parley.reply")
        assert reading is not None and reading.fields["intent"] == "shipping_cost", reading
        assert reading.fields["understood"] is True and reading.fields["confidence"] > 0.5
        assert -40 < caller.fields["parley_level_dbfs"] < -3, caller.fields
        await h.close()

    run(scenario())


def test_the_reply_is_prepared_while_the_turn_detector_waits(
    models: tuple[ModelHub, Knowledge],
) -> None:
    async def scenario() -> None:
        h = Harness(*models)
        await h.open(greet=False)
        await h.feed(silence(500))
        await h.feed(speak("What is your return policy?"))
        await h.feed_until("response.output_audio_transcript.done")
        latency = h.first("parley.turn_latency")
        assert latency is not None and latency.fields["prepared"] is True, latency
        # The first audio was made before the turn ended: it left from the TTS cache.
        assert float(latency.fields["first_audio_ms"]) < 20, latency
        agent = h.first("response.output_audio_transcript.done")
        assert agent is not None and "sixty days" in agent.fields["transcript"].lower()
        await h.close()

    run(scenario())


def test_a_prepared_reply_is_dropped_when_the_caller_goes_on(
    models: tuple[ModelHub, Knowledge],
) -> None:
    async def scenario() -> None:
        h = Harness(*models)
        await h.open(greet=False)
        await h.feed(silence(400))
        # A complete-sounding first half, a breath (~160 ms with espeak's edges: past the
        # ASR look-ahead, so it is transcribed and answered ahead, but short of the 250 ms wait),
        # then the real question.
        await h.feed(speak("I have a question."))
        await h.feed(silence(60))
        await h.feed(speak("How much does shipping cost?"))
        await h.feed_until("response.output_audio_transcript.done")
        [commit] = h.all("conversation.item.input_audio_transcription.completed")
        assert "shipping" in commit.fields["transcript"].lower(), commit.fields
        agent = h.first("response.output_audio_transcript.done")
        assert agent is not None and "fifty dollars" in agent.fields["transcript"].lower()
        # Exactly one response: nothing prepared for "I have a question." was spoken.
        assert len(h.all("response.created")) == 1, h.kinds()
        await h.close()

    run(scenario())


def test_a_hesitation_mid_sentence_is_not_a_turn_end(models: tuple[ModelHub, Knowledge]) -> None:
    async def scenario() -> None:
        h = Harness(*models)
        await h.open(greet=False)
        await h.feed(silence(400))
        await h.feed(speak("My order number is"))
        await h.feed(speak("ummmm", rate_wpm=80))
        await h.feed(silence(1000))
        assert h.first("input_audio_buffer.committed") is None, h.kinds()
        await h.feed(speak("one two three four five"))
        await h.feed_until("input_audio_buffer.committed")
        [commit] = h.all("conversation.item.input_audio_transcription.completed")
        text = commit.fields["transcript"].lower()
        assert "order" in text and ("five" in text or "5" in text), text
        await h.close()

    run(scenario())


class _SlowAsr:
    """The real hub, with every transcription finishing `delay_s` late (a loaded engine)."""

    def __init__(self, hub: ModelHub, delay_s: float) -> None:
        self._hub, self._delay_s = hub, delay_s

    async def transcribe(self, pcm: np.ndarray, *, urgent: bool = False) -> str:
        text = await self._hub.transcribe(pcm, urgent=urgent)
        await asyncio.sleep(self._delay_s)
        return text

    def __getattr__(self, name: str) -> object:
        return getattr(self._hub, name)


def test_a_hesitation_is_not_a_turn_end_when_asr_lags(
    models: tuple[ModelHub, Knowledge],
) -> None:
    async def scenario() -> None:
        hub, knowledge = models
        h = Harness(_SlowAsr(hub, 0.9), knowledge)  # type: ignore[arg-type]
        await h.open(greet=False)
        await h.feed(silence(400))
        await h.feed(speak("My order number is"))
        await h.feed(speak("ummmm", rate_wpm=80))
        await h.feed(silence(1000))  # the words arrive ~0.9 s after each pause: "um" is late
        assert h.first("input_audio_buffer.committed") is None, h.kinds()
        await h.feed(speak("one two three four five"))
        await h.feed_until("input_audio_buffer.committed")
        [commit] = h.all("conversation.item.input_audio_transcription.completed")
        text = commit.fields["transcript"].lower()
        assert "order" in text and ("five" in text or "5" in text), text
        await h.close()

    run(scenario())


class _HeardAs:
    """The real hub, with Whisper's text for every caller utterance replaced by `text`.

    Whisper tiny's punctuation is unreliable on espeak ("Do you price match?" comes back as
    "you price match"); this pins the words so the turn-taking rule is what is tested.
    """

    def __init__(self, hub: ModelHub, text: str) -> None:
        self._hub, self._text = hub, text

    async def transcribe(self, pcm: np.ndarray, *, urgent: bool = False) -> str:
        await self._hub.transcribe(pcm, urgent=urgent)  # the real work and its timing
        return self._text

    def __getattr__(self, name: str) -> object:
        return getattr(self._hub, name)


@pytest.mark.parametrize(
    ("heard", "reason", "wait_ms"),
    [
        ("you price match", "understood", 300),  # the agent has an answer: a whole request
        ("purple elephant tuesday", "not_understood", 1700),  # words it can't place
        # Whisper's full stop on a misheard "My order number is": not taken at its word.
        ("I ordered them, there is.", "not_understood", 1700),
    ],
)
def test_the_agents_reading_of_the_words_sets_the_turn_wait(
    models: tuple[ModelHub, Knowledge], heard: str, reason: str, wait_ms: int
) -> None:
    async def scenario() -> None:
        hub, knowledge = models
        h = Harness(_HeardAs(hub, heard), knowledge)  # type: ignore[arg-type]
        await h.open(greet=False)
        await h.feed(silence(400))
        await h.feed(speak("Do you price match"))
        latency = await h.feed_until("parley.turn_latency")
        assert latency.fields["end_reason"] == reason, latency.fields
        assert wait_ms <= latency.fields["endpointing_ms"] < wait_ms + 100, latency.fields
        await h.close()

    run(scenario())


class _SlowDialogue:
    """A responder that takes `delay_s` over every answer (a loaded engine)."""

    def __init__(self, dialogue: Any, delay_s: float) -> None:
        self._dialogue, self._delay_s = dialogue, delay_s

    def respond(self, caller_text: str) -> Any:
        time.sleep(self._delay_s)  # runs in a worker thread, as the real one does
        return self._dialogue.respond(caller_text)

    def fork(self) -> _SlowDialogue:
        return _SlowDialogue(self._dialogue.fork(), self._delay_s)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dialogue, name)


class _LeavesOutFillers:
    """The real hub, where Whisper's text for a whole utterance (over a second) is `text`,
    as when it leaves out the filler the caller ended on; shorter audio, such as the
    utterance's last stretch decoded on its own, is decoded as it is."""

    def __init__(self, hub: ModelHub, text: str) -> None:
        self._hub, self._text = hub, text

    async def transcribe(self, pcm: np.ndarray, *, urgent: bool = False) -> str:
        heard = await self._hub.transcribe(pcm, urgent=urgent)
        return self._text if len(pcm) > 16_000 else heard

    def __getattr__(self, name: str) -> object:
        return getattr(self._hub, name)


def test_a_filled_pause_the_words_leave_out_is_not_a_turn_end(
    models: tuple[ModelHub, Knowledge],
) -> None:
    """ "I'd like to check on my order, um" comes back from Whisper as a finished sentence the
    agent understands; the "um" is heard in the audio, so the caller's 1.3 s pause before the
    number does not end the turn. Without the "um" the same words end it at once."""

    async def scenario() -> None:
        hub, knowledge = models
        said = "I'd like to check on my order."
        h = Harness(_LeavesOutFillers(hub, said), knowledge)  # type: ignore[arg-type]
        await h.open(greet=False)
        await h.feed(silence(400))
        await h.feed(speak("I'd like to check on my order, um"))
        await h.feed(silence(1300))
        assert h.first("input_audio_buffer.committed") is None, h.kinds()
        assert h.first("response.output_audio.delta") is None
        await h.feed(speak("the number is four five six seven"))
        await h.feed_until("input_audio_buffer.committed", timeout_ms=4000)
        await h.close()

        plain = Harness(_LeavesOutFillers(hub, said), knowledge)  # type: ignore[arg-type]
        await plain.open(greet=False)
        await plain.feed(silence(400))
        await plain.feed(speak("I'd like to check on my order."))
        latency = await plain.feed_until("parley.turn_latency", timeout_ms=1300)
        assert latency.fields["end_reason"] in ("complete", "understood"), latency.fields
        await plain.close()

    run(scenario())


def test_no_turn_ends_before_the_responder_has_read_the_words(
    models: tuple[ModelHub, Knowledge],
) -> None:
    async def scenario() -> None:
        hub, knowledge = models
        h = Harness(_HeardAs(hub, "I ordered them, there is."), knowledge)  # type: ignore[arg-type]
        session = await h.open(greet=False)
        session.dialogue = _SlowDialogue(session.dialogue, 0.4)
        await h.feed(silence(400))
        await h.feed(speak("My order number is"))
        latency = await h.feed_until("parley.turn_latency")
        # Not the 250 ms a full stop would get: the responder's reading came later, and it
        # could not make sense of the words.
        assert latency.fields["end_reason"] == "not_understood", latency.fields
        await h.close()

    run(scenario())


def test_no_turn_ends_while_the_caller_is_starting_to_speak_again(
    models: tuple[ModelHub, Knowledge],
) -> None:
    async def scenario() -> None:
        hub, knowledge = models
        # Whisper's reading of a hesitant "My order number is": a sentence, but not one the
        # agent understands, so the turn waits 1700 ms after it.
        h = Harness(_HeardAs(hub, "I ordered them, there is."), knowledge)  # type: ignore[arg-type]
        await h.open(greet=False)
        await h.feed(silence(400))
        await h.feed(speak("My order number is"))
        await h.feed(silence(500))  # the "um" is audible before the wait is up ...
        await h.feed(speak("ummmm", rate_wpm=80))  # ... but only counts as speech after them
        await h.feed(silence(300))
        assert h.first("input_audio_buffer.committed") is None, h.kinds()
        await h.close()

    run(scenario())


@pytest.mark.serial  # a stream-clock time that includes a Whisper decode: needs the machine
def test_talk_over_stops_the_agent_on_its_first_words(models: tuple[ModelHub, Knowledge]) -> None:
    """The agent talks on while the first 160 ms of the caller's voice are decoded; "Wait"
    stops it on those words, not at the end of what the caller says (2.5 s later). How soon
    is measured, not asserted: the target is 200 ms from the caller's first sound and on an
    idle 2-core machine the stop lands 177 or 209 ms after it (Silero's onset lag, five voiced
    windows, one Whisper decode whose wall time a loaded machine stretches: 241 ms in one CI
    run); bench/turn_sip.py reports it over SIP. The bound here only says "on the first
    words": before the caller's first 600 ms are over."""

    async def scenario() -> None:
        h = Harness(*models)
        await h.open(greet=True)
        await h.feed_until("response.output_audio.delta")
        await h.feed(silence(300))
        onset_ms = h.fed_ms
        talk = speak("Wait, I need to talk about a charge on my bill")
        first_voiced = int(np.argmax(np.abs(talk) > 500)) // 16
        await h.feed(talk)
        barge = h.first("input_audio_buffer.speech_started", after_ms=onset_ms)
        assert barge is not None, h.kinds()
        stop_ms = barge.t_ms - (onset_ms + first_voiced)
        assert stop_ms < 600, f"agent stopped {stop_ms} ms after the caller started"
        stopped = h.first("parley.barge_in", after_ms=onset_ms)
        assert stopped is not None and stopped.fields["reason"] == "onset_words", stopped
        assert h.first("parley.backchannel_ignored") is None
        await h.close()

    run(scenario())


@pytest.mark.parametrize("said", ["uh-huh", "yeah yeah", "okay", "I see"])
def test_a_backchannel_never_stops_the_agent(models: tuple[ModelHub, Knowledge], said: str) -> None:
    """A person talks on through "uh-huh": the agent is never stopped, so the caller hears no
    gap at all, and the reply it was saying completes."""

    async def scenario() -> None:
        h = Harness(*models)
        await h.open(greet=True)
        await h.feed_until("response.output_audio.delta")
        await h.feed(silence(400))
        await h.feed(speak(said, rate_wpm=140))
        ignored = await h.feed_until("parley.backchannel_ignored", timeout_ms=2000)
        assert ignored.fields["duration_ms"] < 800, ignored
        assert ignored.fields["reason"] in ("backchannel", "unsure", "noise"), ignored
        await h.feed_until("response.done", timeout_ms=15_000)
        assert h.first("parley.barge_in") is None, h.kinds()
        assert h.first("input_audio_buffer.speech_started") is None, h.kinds()
        assert h.first("input_audio_buffer.committed") is None, h.kinds()
        [done] = h.all("response.done")
        assert done.fields["response"]["status"] == "completed", done
        await h.close()

    run(scenario())


def test_a_blip_over_the_agent_is_nothing(models: tuple[ModelHub, Knowledge]) -> None:
    async def scenario() -> None:
        h = Harness(*models)
        await h.open(greet=True)
        await h.feed_until("response.output_audio.delta")
        await h.feed(silence(400))
        voice = speak("Hey there")
        onset = int(np.flatnonzero(np.abs(voice) > 500)[0])
        await h.feed(voice[max(0, onset - 160) : onset + 100 * 16])  # 100 ms of a voice
        await h.feed(silence(300))
        assert h.first("parley.barge_in") is None, h.kinds()
        [ignored] = h.all("parley.backchannel_ignored")
        # Settled as soon as the voice stopped short of speech (three windows), without a
        # transcript.
        assert ignored.fields["text"] == "" and ignored.fields["reason"] == "noise", ignored
        assert ignored.fields["duration_ms"] <= 96
        assert h.first("input_audio_buffer.speech_stopped") is None
        await h.close()

    run(scenario())


def test_a_brief_word_that_opens_a_turn_stops_the_agent(
    models: tuple[ModelHub, Knowledge],
) -> None:
    async def scenario() -> None:
        h = Harness(*models)
        await h.open(greet=True)
        await h.feed_until("response.output_audio.delta")
        await h.feed(silence(400))
        onset_ms = h.fed_ms
        # "Sorry," is brief and unclear on its own; the caller going on makes it a turn.
        await h.feed(speak("Sorry,"))
        await h.feed(silence(120))
        await h.feed(speak("how long does shipping take?"))
        await h.feed_until("parley.turn_latency", timeout_ms=6000)
        # Paused once at the caller's first word, and not resumed: no more greeting audio.
        pauses = h.all("parley.barge_in")
        assert len(pauses) == 1 and pauses[0].t_ms > onset_ms, pauses
        greeting = pauses[0].fields["item_id"]
        resent = [
            e
            for e in h.all("response.output_audio.delta")
            if e.fields["item_id"] == greeting and e.t_ms > pauses[0].t_ms
        ]
        assert not resent and not h.all("parley.backchannel_ignored"), h.kinds()
        commit = h.first("conversation.item.input_audio_transcription.completed")
        assert commit is not None and "shipping" in commit.fields["transcript"].lower()
        await h.close()

    run(scenario())


def test_the_agents_own_echo_does_not_interrupt_it(models: tuple[ModelHub, Knowledge]) -> None:
    async def scenario() -> None:
        h = Harness(*models)
        session = await h.open(greet=True)
        await h.feed_until("response.output_audio.delta")
        delay = 30 * 16
        for _ in range(250):  # up to 5 s: echo the agent back at -10 dB, 30 ms late
            agent = h.agent_audio().astype(np.float32)
            response = session._response
            if response is None or response.done:
                break
            played = (session.t_ms - response.start_t_ms) * 16
            start = played - delay
            frame = agent[max(0, start) : max(0, start) + 320] * 0.316
            frame = np.pad(frame, (0, 320 - len(frame)))
            await h.feed(frame.astype(np.int16))
        assert h.first("parley.barge_in") is None, h.kinds()
        statuses = [e.fields["response"]["status"] for e in h.all("response.done")]
        assert statuses and all(s == "completed" for s in statuses)
        await h.close()

    run(scenario())


def test_asking_for_a_person_requests_a_handoff(models: tuple[ModelHub, Knowledge]) -> None:
    async def scenario() -> None:
        h = Harness(*models)
        await h.open(greet=False)
        await h.feed(silence(300))
        await h.feed(speak("I want to talk to a person"))
        handoff = await h.feed_until("parley.handoff_requested")
        assert handoff.fields["reason"] == "caller_asked"
        await h.close()

    run(scenario())


async def _exchange(h: Harness, text: str) -> tuple[str, dict[str, Any]]:
    """Says `text`, waits for the whole answer and lets it play out: what the agent said and
    how it read the turn."""
    answered = len(h.all("response.done"))
    played = len(h.agent_audio())
    await h.feed(speak(text))
    for _ in range(15_000 // 20):
        if len(h.all("response.done")) > answered:
            break
        await h.feed(silence(20))
    else:
        raise AssertionError(f"no answer to {text!r}; sent: {h.kinds()}")
    # The caller listens to the end before speaking again (the agent's audio arrives at once;
    # the phone line plays it out).
    await h.feed(silence((len(h.agent_audio()) - played) // 16 + 400), realtime=False)
    said = h.all("response.output_audio_transcript.done")[-1].fields["transcript"]
    return str(said), h.all("parley.reply")[-1].fields


def _heard(h: Harness) -> list[str]:
    return [
        str(e.fields["transcript"])
        for e in h.all("conversation.item.input_audio_transcription.completed")
    ]


def test_the_moves_every_caller_makes(models: tuple[ModelHub, Knowledge]) -> None:
    """A question, a follow-up that leans on it, a topic switch and a closer, in a voice of
    the turn corpus's tuning half (espeak en-us+m3)."""

    async def scenario() -> None:
        h = Harness(*models)
        await h.open(greet=False)
        await h.feed(silence(400))
        said, first = await _exchange(h, "What are your store hours?")
        assert "monday through saturday" in said.lower(), said
        # "And on Sunday?" alone is no question the agent can place; after the hours it is
        # the hours again.
        said, follow_up = await _exchange(h, "And on Sunday?")
        assert follow_up["understood"], (follow_up, _heard(h))
        assert follow_up["intent"] == first["intent"], (follow_up, _heard(h))
        assert "sunday" in said.lower(), said
        said, _ = await _exchange(h, "Sorry, wait, I have a different question.")
        assert "go ahead" in said.lower(), (said, _heard(h))
        assert h.first("parley.hangup_requested") is None
        # A "You're welcome, anything else?" in the closer's pause is fine; the goodbye and
        # the hang-up must follow it.
        await h.feed(speak("Okay, thank you. Goodbye."))
        hangup = await h.feed_until("parley.hangup_requested")
        assert hangup.fields["reason"] == "conversation_complete"
        said = h.all("response.output_audio_transcript.done")[-1].fields["transcript"]
        assert "thanks for calling" in said.lower(), said
        readings = h.all("parley.reply")
        assert all(r.fields["understood"] for r in readings), [r.fields for r in readings]
        await h.close()

    run(scenario())


def _turns_taken(h: Harness) -> list[str]:
    return [
        e.fields["transcript"]
        for e in h.all("conversation.item.input_audio_transcription.completed")
        if e.fields["transcript"]
    ]


def test_silence_only_takes_no_turn(models: tuple[ModelHub, Knowledge]) -> None:
    async def scenario() -> None:
        h = Harness(*models)
        await h.open(greet=False)
        await h.feed(silence(4000))
        assert h.first("input_audio_buffer.speech_started") is None
        assert _turns_taken(h) == []
        await h.close()

    run(scenario())


def test_noise_and_music_take_no_turn(models: tuple[ModelHub, Knowledge]) -> None:
    async def scenario() -> None:
        rng = np.random.default_rng(3)
        noise = (rng.standard_normal(16000 * 4) * 1500).astype(np.int16)
        t = np.arange(16000 * 4) / 16000
        chords = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))
        beat = (np.sin(2 * np.pi * 2 * t) > 0).astype(np.float64) * 0.7 + 0.3
        music = (chords * beat * 2500).astype(np.int16)
        h = Harness(*models)
        await h.open(greet=False)
        await h.feed(noise)
        await h.feed(music)
        await h.feed(silence(1500))
        assert _turns_taken(h) == [], _turns_taken(h)
        await h.close()

    run(scenario())


def test_clipped_loud_speech_is_still_understood(models: tuple[ModelHub, Knowledge]) -> None:
    async def scenario() -> None:
        h = Harness(*models)
        await h.open(greet=False)
        await h.feed(silence(300))
        await h.feed(speak("Do you price match?", gain=12.0))  # hard-clipped at full scale
        await h.feed_until("response.output_audio_transcript.done")
        assert any("price" in text.lower() for text in _turns_taken(h)), _turns_taken(h)
        await h.close()

    run(scenario())


def test_a_90_second_monologue_keeps_memory_bounded(models: tuple[ModelHub, Knowledge]) -> None:
    async def scenario() -> None:
        hub, knowledge = models
        hub.batching = False  # fed faster than real time; no other stream to batch with
        try:
            h = Harness(hub, knowledge)
            session = await h.open(greet=False)
            sentence = speak("and then I told them about the package and the order and the box")
            longest = 0
            while h.fed_ms < 90_000:
                await h.feed(sentence, realtime=False)
                longest = max(longest, sum(len(w) for w in session._utterance))
            # Rolling window: never more than max_utterance_ms of audio held.
            assert longest <= session.config.max_utterance_ms * 16 + 512
            await h.feed(silence(3000), realtime=False)
            await h.close()
        finally:
            hub.batching = True

    run(scenario())


def test_non_english_speech_gets_a_graceful_answer(models: tuple[ModelHub, Knowledge]) -> None:
    async def scenario() -> None:
        h = Harness(*models)
        await h.open(greet=False)
        await h.feed(silence(300))
        await h.feed(speak("¿Cuál es el horario de la tienda los domingos?", voice="es"))
        reply = await h.feed_until("response.output_audio_transcript.done")
        assert reply.fields["transcript"], "the agent said nothing"
        assert h.first("error") is None
        await h.close()

    run(scenario())


def test_agent_backchannels_while_the_caller_talks_at_length(
    models: tuple[ModelHub, Knowledge],
) -> None:
    async def scenario() -> None:
        h = Harness(*models)
        await h.open(greet=False, agent_backchannels=True, backchannel_every_ms=3000)
        sentence = speak("so the package came and the box was open and the shoes were gone")
        await h.feed(np.concatenate([sentence, sentence]))  # ~8 s without a pause, real time
        acks = h.all("parley.agent_backchannel")
        # An "mm-hm" every three seconds of talk: one at ~3 s and one at ~6 s.
        assert len(acks) == 2, [(e.kind, e.t_ms) for e in h.events]
        onset = h.first("input_audio_buffer.speech_started")
        assert onset is not None
        gaps = [a.t_ms - int(onset.fields["audio_start_ms"]) for a in acks]
        assert 3000 <= gaps[0] < 3400 and 6000 <= gaps[1] < 6400, gaps
        ack_items = {str(a.fields["item_id"]) for a in acks}
        spoken = {str(e.fields["item_id"]) for e in h.all("response.output_audio.delta")}
        assert ack_items <= spoken, "an acknowledgement was announced but not spoken"
        assert h.first("input_audio_buffer.committed") is None  # the caller kept the turn
        assert h.first("parley.barge_in") is None
        await h.close()

    run(scenario())
