"""The embedded engine's models, for real: Silero VAD, Whisper tiny.en and the Piper voice.

Each model is loaded once for the module. Caller speech comes from espeak-ng and flite, whose
voices are unlike Piper's, so the round trip (Piper → Whisper) is not the only ASR check.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from agent.asr import MIN_SECONDS, Transcript, WhisperAsr, _cut_trailing_loop
from agent.audio import (
    Int16Array,
    read_wav_16k,
    resample,
    to_float32,
    to_int16,
    trim_leading_silence,
)
from agent.hub import ModelHub
from agent.session import SAMPLE_RATE
from agent.tts import PiperTts, normalize_text, split_sentences
from agent.vad import (
    WINDOW_MS,
    WINDOW_SAMPLES,
    BatchedVad,
    SpeechEvent,
    SpeechEventKind,
    SpeechSegmenter,
    default_model_path,
)

QUESTION = "what are your store hours on saturday"

Speaker = Callable[..., Int16Array]


@pytest.fixture(scope="module")
def say(tmp_path_factory: pytest.TempPathFactory) -> Speaker:
    """Text → 16 kHz int16 speech from espeak-ng (default) or a flite voice.

    espeak-ng speaks a little slower than its default 175 wpm: tiny.en mishears its default
    rate often enough ("store hours" → "story on") to make a keyword check flaky.
    """
    folder = tmp_path_factory.mktemp("speech")
    counter = iter(range(10**6))

    def speak(text: str, engine: str = "espeak", voice: str = "slt") -> Int16Array:
        wav = folder / f"{next(counter)}.wav"
        if engine == "espeak":
            cmd = ["espeak-ng", "-s", "140", "-w", str(wav), text]
        else:
            cmd = ["flite", "-voice", voice, "-t", text, "-o", str(wav)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=30)
        return read_wav_16k(wav)

    return speak


@pytest.fixture(scope="module")
def vad() -> BatchedVad:
    return BatchedVad()


@pytest.fixture(scope="module")
def asr() -> WhisperAsr:
    return WhisperAsr()


@pytest.fixture(scope="module")
def tts() -> PiperTts:
    return PiperTts()


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", text.lower()))


def windows(pcm: npt.NDArray[np.generic]) -> list[npt.NDArray[np.generic]]:
    return [pcm[i : i + WINDOW_SAMPLES] for i in range(0, len(pcm) - WINDOW_SAMPLES + 1, 512)]


def run_alone(vad: BatchedVad, pcm: npt.NDArray[np.generic]) -> list[float]:
    sid = vad.open_stream()
    try:
        return [vad.process({sid: w})[sid] for w in windows(pcm)]
    finally:
        vad.close_stream(sid)


def noise(seconds: float, dbfs: float, seed: int = 0) -> Int16Array:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(seconds * SAMPLE_RATE)) * 10 ** (dbfs / 20)
    return to_int16(x)


def segment(probs: list[float]) -> list[SpeechEvent]:
    seg = SpeechSegmenter()
    events = [e for e in map(seg.push, probs) if e is not None]
    final = seg.finish()
    return [*events, final] if final else events


# --- audio helpers -------------------------------------------------------------------------


def test_resample_keeps_a_tone_and_its_duration() -> None:
    t = np.arange(22050) / 22050
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = resample(tone, 22050, 16000)
    assert out.dtype == np.float32 and out.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(int(np.argmax(spectrum)) - 440) <= 1  # 1 Hz bins over one second
    assert 0.48 < float(np.max(np.abs(out[100:-100]))) < 0.52


def test_sample_conversions_sanitise() -> None:
    x = np.array([0.0, 0.5, -1.5, np.nan, np.inf], dtype=np.float32)
    assert to_int16(x).tolist() == [0, 16384, -32767, 0, 32767]
    assert to_float32(np.array([-32768, 16384], dtype=np.int16)).tolist() == [-1.0, 0.5]


def test_leading_silence_is_trimmed_to_a_margin() -> None:
    tone = (8000 * np.sin(2 * np.pi * 300 * np.arange(1600) / SAMPLE_RATE)).astype(np.int16)
    hiss = np.full(800, 20, np.int16)  # 50 ms far below the tone's level
    out = trim_leading_silence(np.concatenate([hiss, tone]), keep_ms=10)
    assert len(out) == 160 + len(tone) - 1  # 10 ms before the first loud sample (a zero crossing)
    assert trim_leading_silence(np.zeros(400, np.int16)).size == 0
    assert trim_leading_silence(tone).size == len(tone)


# --- VAD -----------------------------------------------------------------------------------


def test_vad_finds_speech(vad: BatchedVad, say: Speaker) -> None:
    pcm = np.concatenate([np.zeros(8000, np.int16), say(QUESTION), np.zeros(16000, np.int16)])
    probs = run_alone(vad, pcm)
    assert sum(p > 0.5 for p in probs) * WINDOW_MS > 1000
    events = segment(probs)
    assert [e.kind for e in events][:1] == [SpeechEventKind.START]
    assert events[-1].kind == SpeechEventKind.STOP
    assert 300 <= events[0].at_ms <= 800  # speech begins after the 0.5 s of silence


@pytest.mark.parametrize("dbfs", [-70.0, -40.0, -25.0, -12.0])
def test_vad_ignores_white_noise(vad: BatchedVad, dbfs: float) -> None:
    probs = run_alone(vad, noise(3.0, dbfs))
    assert max(probs) < 0.5
    assert segment(probs) == []


def test_vad_ignores_silence(vad: BatchedVad) -> None:
    probs = run_alone(vad, np.zeros(3 * SAMPLE_RATE, np.int16))
    assert max(probs) < 0.1


def test_vad_int16_and_float_windows_agree(vad: BatchedVad, say: Speaker) -> None:
    pcm = say("hello there")
    as_int = run_alone(vad, pcm)
    as_float = run_alone(vad, to_float32(pcm))
    assert np.allclose(as_int, as_float, atol=1e-6)


def test_vad_batched_equals_each_stream_alone(vad: BatchedVad, say: Speaker) -> None:
    """Streams join, skip ticks and leave; slots are reused and the pool grows past 8."""
    sources = {
        "a": say(QUESTION),
        "b": say("I would like to speak to a person please", engine="flite"),
        "c": noise(3.0, -30.0, seed=3),
        "d": say("my order has not arrived yet", engine="flite", voice="awb"),
    }
    expected = {name: run_alone(vad, pcm) for name, pcm in sources.items()}
    fillers = [vad.open_stream() for _ in range(12)]  # force the slot pool to grow
    sids: dict[str, int] = {}
    pos = dict.fromkeys(sources, 0)
    got: dict[str, list[float]] = {name: [] for name in sources}
    rng = np.random.default_rng(7)
    tick = 0
    while any(pos[n] < len(expected[n]) for n in sources):
        if tick == 0:
            sids["a"] = vad.open_stream()
            sids["b"] = vad.open_stream()
        if tick == 5:
            sids["c"] = vad.open_stream()
        if tick == 20:
            vad.close_stream(fillers.pop())
            sids["d"] = vad.open_stream()  # reuses a freed slot: must start fresh
        batch: dict[int, npt.NDArray[np.generic]] = {}
        for name, sid in sids.items():
            if pos[name] >= len(expected[name]):
                continue
            if name == "b" and rng.random() < 0.3:
                continue  # b misses some ticks: its state must wait for it untouched
            i = pos[name] * WINDOW_SAMPLES
            batch[sid] = sources[name][i : i + WINDOW_SAMPLES]
        batch.update({f: np.zeros(WINDOW_SAMPLES, np.int16) for f in fillers[:3]})
        result = vad.process(batch)
        for name, sid in list(sids.items()):
            if sid in batch:
                got[name].append(result[sid])
                pos[name] += 1
                if pos[name] == len(expected[name]):
                    vad.close_stream(sid)
        tick += 1
    for f in fillers:
        vad.close_stream(f)
    for name in sources:
        assert len(got[name]) == len(expected[name])
        assert np.max(np.abs(np.subtract(got[name], expected[name]))) < 1e-4, name


def test_vad_rejects_bad_input_without_touching_state(vad: BatchedVad, say: Speaker) -> None:
    pcm = say("hello")
    sid = vad.open_stream()
    first = vad.process({sid: pcm[:WINDOW_SAMPLES]})[sid]
    with pytest.raises(ValueError):
        vad.process({sid: pcm[WINDOW_SAMPLES : WINDOW_SAMPLES + 320]})
    with pytest.raises(KeyError):
        vad.process({sid: pcm[:WINDOW_SAMPLES], 10**9: pcm[:WINDOW_SAMPLES]})
    vad.reset_stream(sid)
    assert vad.process({sid: pcm[:WINDOW_SAMPLES]})[sid] == pytest.approx(first, abs=1e-6)
    vad.close_stream(sid)
    vad.close_stream(sid)  # closing twice is harmless
    assert vad.process({}) == {}


def test_vad_model_path_is_overridable(tmp_path: Path) -> None:
    assert BatchedVad(model_path=default_model_path()).streams == 0
    with pytest.raises(FileNotFoundError):
        BatchedVad(model_path=tmp_path / "missing.jit")


# --- SpeechSegmenter (pure) ----------------------------------------------------------------


def pushes(seg: SpeechSegmenter, probs: list[float]) -> list[tuple[int, SpeechEvent]]:
    return [(i, e) for i, p in enumerate(probs) if (e := seg.push(p)) is not None]


def make_segmenter() -> SpeechSegmenter:
    return SpeechSegmenter(onset=0.5, offset=0.3, min_speech_ms=30, min_silence_ms=50, window_ms=10)


def test_segmenter_start_needs_min_speech_and_reports_its_beginning() -> None:
    seg = make_segmenter()
    got = pushes(seg, [0.1, 0.1, 0.9, 0.4, 0.6, 0.9])
    # Opens at window 2 (onset); 0.4 is above offset so it continues; confirmed at window 4.
    assert got == [(4, SpeechEvent(SpeechEventKind.START, 20.0))]
    assert seg.in_speech


def test_segmenter_drops_blips() -> None:
    seg = make_segmenter()
    assert pushes(seg, [0.9, 0.2, 0.9, 0.9, 0.1, 0.45, 0.45, 0.45, 0.1]) == []
    assert not seg.in_speech


def test_segmenter_stop_needs_min_silence_and_hysteresis() -> None:
    seg = make_segmenter()
    probs = [0.9] * 5  # speech
    probs += [0.2] * 3 + [0.9]  # a 30 ms dip: not a stop
    probs += [0.4] * 10  # between offset and onset: still speech
    probs += [0.2, 0.4, 0.2, 0.2, 0.2]  # silence run from here, 0.4 does not cancel it
    got = pushes(seg, probs)
    assert [e.kind for _, e in got] == [SpeechEventKind.START, SpeechEventKind.STOP]
    assert got[1] == (len(probs) - 1, SpeechEvent(SpeechEventKind.STOP, 190.0))


def test_segmenter_finish_closes_open_speech() -> None:
    seg = make_segmenter()
    pushes(seg, [0.9] * 5 + [0.1, 0.1])
    assert seg.finish() == SpeechEvent(SpeechEventKind.STOP, 50.0)
    assert seg.finish() is None
    assert seg.elapsed_ms == 70.0


def test_segmenter_validates_thresholds() -> None:
    with pytest.raises(ValueError):
        SpeechSegmenter(onset=0.3, offset=0.5)


# --- ASR -----------------------------------------------------------------------------------


def assert_heard(t: Transcript, *expected: str) -> None:
    missing = set(expected) - words(t.text)
    assert not missing, (t.text, missing)


def test_asr_transcribes_espeak(asr: WhisperAsr, say: Speaker) -> None:
    t = asr.transcribe(say(QUESTION))
    assert_heard(t, "hours", "saturday")
    assert t.no_speech_prob < 0.5 and t.avg_logprob > -1.0
    assert not t.truncated and 1.0 < t.duration < 5.0 and t.elapsed > 0


def test_asr_transcribes_flite(asr: WhisperAsr, say: Speaker) -> None:
    t = asr.transcribe(say("I want to cancel my order", engine="flite", voice="slt"))
    assert_heard(t, "cancel", "order")


@pytest.mark.parametrize("seconds", [0.0, 0.1, MIN_SECONDS / 2])
def test_asr_too_short_is_empty(asr: WhisperAsr, seconds: float) -> None:
    for pcm in (np.zeros(int(seconds * SAMPLE_RATE), np.int16), noise(seconds, -20.0)):
        t = asr.transcribe(pcm)
        assert t.text == "" and t.duration == pytest.approx(seconds, abs=1e-3)


@pytest.mark.parametrize("dbfs", [-60.0, -30.0, -15.0])
def test_asr_noise_and_silence_are_empty(asr: WhisperAsr, dbfs: float) -> None:
    assert asr.transcribe(noise(1.5, dbfs)).text == ""
    assert asr.transcribe(np.zeros(2 * SAMPLE_RATE, np.int16)).text == ""


def test_asr_survives_clipped_quiet_and_broken_input(asr: WhisperAsr, say: Speaker) -> None:
    speech = to_float32(say(QUESTION))
    assert_heard(asr.transcribe(np.clip(speech * 30, -1, 1)), "saturday")
    # 20 and 30 dB down: heard like the original (the utterance is raised before Whisper).
    for gain in (0.1, 0.03):
        assert_heard(asr.transcribe(speech * gain), "store", "hours", "saturday")
    broken = speech.copy()
    broken[::97] = np.nan
    asr.transcribe(broken)  # no exception; text is whatever survives
    asr.transcribe(np.full(SAMPLE_RATE, 32767, np.int16))


def test_asr_keeps_the_last_seconds_of_long_input(asr: WhisperAsr, say: Speaker) -> None:
    speech = say(QUESTION)
    pcm = np.concatenate([noise(28.0, -50.0), speech])
    t = asr.transcribe(pcm)
    assert t.truncated and t.duration == pytest.approx(len(pcm) / SAMPLE_RATE)
    assert_heard(t, "hours", "saturday")


def test_asr_batch_matches_single(asr: WhisperAsr, say: Speaker) -> None:
    pcms = [say(QUESTION), np.zeros(100, np.int16), say("please call me back tomorrow")]
    batch = asr.transcribe_batch(pcms)
    single = [asr.transcribe(p) for p in pcms]
    assert [t.text for t in batch] == [t.text for t in single]
    assert batch[1].text == "" and asr.transcribe_batch([]) == []


def test_hub_batches_asr_requests_that_wait(
    vad: BatchedVad, asr: WhisperAsr, tts: PiperTts, say: Speaker
) -> None:
    hub = ModelHub(vad=vad, asr=asr, tts=tts)
    texts = ["what time do you close", "please call me back tomorrow", "i want a refund", "hello"]
    speech = [say(text) for text in texts]

    async def calls() -> list[str]:
        # Five sessions ask at once; the first finds Whisper idle, the rest wait for it.
        first = asyncio.ensure_future(hub.transcribe(speech[0]))
        withdrawn = asyncio.ensure_future(hub.transcribe(say("this one hangs up")))
        asked = [first, *(asyncio.ensure_future(hub.transcribe(pcm)) for pcm in speech[1:])]
        await asyncio.sleep(0)
        withdrawn.cancel()  # a discarded look-ahead: must cost no decoding
        return list(await asyncio.gather(*asked))

    try:
        heard = asyncio.run(calls())
    finally:
        hub.close()
    for text, got in zip(texts, heard, strict=True):
        assert words(text) <= words(got) | {"i"}, (text, got)
    # Withdrawn before Whisper was free: four utterances decoded, in fewer passes than four.
    assert hub.stats.asr_utterances == 4, hub.stats
    assert hub.stats.asr_calls < 4, hub.stats


def test_hub_decodes_requests_made_together_in_one_pass(
    vad: BatchedVad, asr: WhisperAsr, tts: PiperTts, say: Speaker
) -> None:
    # A session's utterance and its last stretch (the filler check) are asked for together
    # while Whisper is idle: one pass, not the short one queued behind the long one.
    hub = ModelHub(vad=vad, asr=asr, tts=tts)
    question = say("i would like to check on my order please")
    tail = question[-8000:]

    async def together() -> list[str]:
        return list(await asyncio.gather(hub.transcribe(question), hub.transcribe(tail)))

    try:
        heard, _ = asyncio.run(together())
    finally:
        hub.close()
    assert "order" in words(heard), heard
    assert (hub.stats.asr_calls, hub.stats.asr_utterances) == (1, 2), hub.stats


def test_hub_decodes_urgent_asr_requests_first(
    vad: BatchedVad, asr: WhisperAsr, tts: PiperTts, say: Speaker
) -> None:
    hub = ModelHub(vad=vad, asr=asr, tts=tts)
    busy = say("what time do you close on saturday")
    long = say("i would like to know where my order is and when it will arrive at my house")
    short = say("uh huh")
    finished: list[str] = []

    async def ask(name: str, pcm: np.ndarray, urgent: bool) -> None:
        await hub.transcribe(pcm, urgent=urgent)
        finished.append(name)

    async def calls() -> None:
        first = asyncio.ensure_future(ask("busy", busy, False))
        await asyncio.sleep(0)  # Whisper is now busy with the first
        later = [
            asyncio.ensure_future(ask("long", long, False)),
            asyncio.ensure_future(ask("urgent", short, True)),  # asked last, decoded next
        ]
        await asyncio.gather(first, *later)

    try:
        asyncio.run(calls())
    finally:
        hub.close()
    assert finished == ["busy", "urgent", "long"]


def test_hub_survives_an_event_loop_that_closed_with_work_in_flight(
    vad: BatchedVad, asr: WhisperAsr, tts: PiperTts, say: Speaker
) -> None:
    hub = ModelHub(vad=vad, asr=asr, tts=tts)
    speech = say("what time do you close")

    async def leave_early() -> None:
        # The loop ends while Whisper and a VAD batch are still busy for it.
        abandoned = [
            asyncio.ensure_future(hub.transcribe(speech)),
            asyncio.ensure_future(hub.vad(hub.open_vad_stream(), speech[:512])),
        ]
        await asyncio.sleep(0)
        assert not any(task.done() for task in abandoned)

    async def ask_again() -> tuple[str, float]:
        text = await asyncio.wait_for(hub.transcribe(speech), timeout=30)
        probability = await asyncio.wait_for(hub.vad(hub.open_vad_stream(), speech[:512]), 5)
        return text, probability

    try:
        asyncio.run(leave_early())
        text, probability = asyncio.run(ask_again())
    finally:
        hub.close()
    assert "close" in words(text)
    assert 0.0 <= probability <= 1.0


def test_cut_trailing_loop() -> None:
    assert _cut_trailing_loop([1, 2, 3, 4, 5, 4, 5, 4, 5]) == [1, 2, 3, 4, 5]
    assert _cut_trailing_loop([1, 7, 7, 7, 7]) == [1, 7]
    assert _cut_trailing_loop([1, 2, 1, 2]) == [1, 2, 1, 2]  # twice can be speech
    assert _cut_trailing_loop([1, 2, 1, 2], min_tail=1) == [1, 2]
    assert _cut_trailing_loop([9, 1, 2, 3, 4, 1, 2, 3, 4, 1]) == [9, 1, 2, 3, 4]
    assert _cut_trailing_loop([]) == []


def test_asr_model_dir_must_be_complete(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        WhisperAsr(model_dir=tmp_path)


# --- TTS -----------------------------------------------------------------------------------


def test_normalize_text() -> None:
    assert normalize_text("It's $25.") == "It's 25 dollars."
    assert normalize_text("$1.50 or $1,200") == "1 dollar and 50 cents or 1200 dollars"
    assert normalize_text("Order #12 is 50% off & free") == (
        "Order number 12 is 50 percent off and free"
    )
    assert normalize_text("Dr. Who, **open** 9am-5pm") == "Doctor Who, open 9am to 5pm"
    assert normalize_text(normalize_text("$3 etc. Then")) == "3 dollars et cetera. Then"


def test_split_sentences() -> None:
    assert split_sentences("Hi! How can I help? We're open 9 a.m. to 5 p.m. daily.") == [
        "Hi!",
        "How can I help?",
        "We're open 9 a.m. to 5 p.m. daily.",
    ]
    assert split_sentences("Mr. Smith lives on Oak St. in town.\n\n- First\n- Second") == [
        "Mister Smith lives on Oak St. in town.",
        "First",
        "Second",
    ]
    assert split_sentences("... !") == []
    long = ", ".join(["we also offer free shipping on orders"] * 8) + "."
    parts = split_sentences(long)
    assert len(parts) > 1 and all(len(p) <= 160 for p in parts)
    assert " ".join(parts) == long


def test_tts_speaks_at_16k(tts: PiperTts) -> None:
    pcm = tts.synthesize("Thanks for calling, how can I help you today?")
    assert pcm.dtype == np.int16 and tts.sample_rate == SAMPLE_RATE
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 300)
    # Spoken at Piper's rate (a 22.05 kHz voice mistaken for 16 kHz would run 38 % long):
    # the words take 1.83-1.94 s over runs, Piper's sampling noise moving them a few percent.
    spoken_s = (loud[-1] - loud[0]) / SAMPLE_RATE
    assert 1.7 < spoken_s < 2.1, spoken_s
    assert (len(pcm) - loud[-1]) / SAMPLE_RATE < 0.3  # no long silence after the words
    assert 1000 < int(np.max(np.abs(pcm))) < 32767
    assert tts.synthesize(" ...  ").size == 0
    # The first sound comes at once (Piper's own output starts with up to 60 ms of near-silence).
    assert loud[0] < 20 * SAMPLE_RATE // 1000, loud[0]


def test_tts_round_trip_through_asr(tts: PiperTts, asr: WhisperAsr) -> None:
    t = asr.transcribe(tts.synthesize("Our store is open until six on Saturday."))
    assert_heard(t, "store", "open", "saturday")
    assert words(t.text) & {"six", "6"}, t.text


def test_tts_streams_one_chunk_per_sentence(tts: PiperTts) -> None:
    text = "Sure. Your refund of $40 was sent today! Anything else?"
    chunks = tts.stream(text)
    first = next(chunks)
    assert 0.2 < len(first) / SAMPLE_RATE < 1.5  # "Sure."
    rest = list(chunks)
    assert len(rest) == len(tts.sentences(text)) - 1 == 2
    assert list(tts.stream("")) == []


def test_tts_voice_path_is_overridable(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        PiperTts(voice_path=tmp_path / "none.onnx")
