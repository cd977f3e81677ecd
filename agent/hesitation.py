"""Hearing a filled pause at the end of an utterance, in the audio.

Whisper leaves fillers out of its transcripts, or makes words of them: "I'd like to check on
my order, um" comes back as "I'd like to check on my order." — a finished sentence, so a turn
policy that reads only the words answers into the caller's pause. Even with the filler prompt
(agent/asr.py) Whisper keeps fewer than half of them when they follow words.

What gives a filler away in the audio is its shape: after a short break in the voice (the
comma before it), one stretch of sound, 100-700 ms long. `final_island` cuts that last stretch
out of the utterance, and the engine has it decoded on its own, next to the whole utterance:
alone, with nothing before it to make a sentence of, Whisper writes it as "Um..." or "uh...".
On the tuning half of the turn corpus the last stretch of a part that ended in a filler
decoded as a filler 11/24 times, and the last stretch of a part that did not 0/144 times.

The decision itself (how long to wait when the caller's audio ended in a filler) is the turn
policy's (agent/turns.py).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

RATE = 16_000
_BLOCK = 160  # 10 ms
_LEAD_MS = 50  # kept before the stretch's onset ...
_TRAIL_MS = 100  # ... and after its end, so the decoder hears it begin and end
MIN_MS = 100
MAX_MS = 700
GAP_MS = 80  # a break in the voice at least this long sets the stretch apart


def final_island(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16] | None:
    """The utterance's last stretch of sound, with a little audio either side: from the end
    of the last break of `GAP_MS` when that stretch lasts `MIN_MS`-`MAX_MS` (the length of a
    filler), or the last `MAX_MS` when there is no break that close to the end (noise can fill
    a break; decoded alone, a word's tail does not read as a filler). None when the stretch
    is shorter than a filler, or the utterance is.

    "Loud" is relative to the utterance: a 10 ms block at least a tenth of the median level
    of the utterance's louder half.
    """
    blocks = len(pcm) // _BLOCK
    if blocks * 10 < MIN_MS + GAP_MS:
        return None
    x = pcm[: blocks * _BLOCK].astype(np.float32).reshape(blocks, _BLOCK)
    rms = np.sqrt(np.mean(x * x, axis=1))
    upper = rms[rms >= np.percentile(rms, 50)]
    if not upper.size or float(np.median(upper)) <= 0:
        return None
    loud = rms >= 0.1 * float(np.median(upper))
    voiced = np.flatnonzero(loud)
    if not voiced.size:
        return None
    end = int(voiced[-1]) + 1
    gap_blocks, longest = GAP_MS // 10, MAX_MS // 10
    start, quiet = end - 1, 0
    while start > 0 and quiet < gap_blocks and end - start < longest + gap_blocks:
        quiet = 0 if loud[start - 1] else quiet + 1
        start -= 1
    if quiet >= gap_blocks:
        start += quiet  # back to the stretch's first loud block
        if (end - start) * 10 < MIN_MS:
            return None
    start = max(start, end - longest)
    lo = max(0, start * _BLOCK - _LEAD_MS * RATE // 1000)
    hi = min(len(pcm), end * _BLOCK + _TRAIL_MS * RATE // 1000)
    return pcm[lo:hi]
