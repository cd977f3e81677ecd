"""Speech the escalation service makes for calls: queue announcements and supervisors'
warm-handoff briefings, spoken by the engine's Piper voice (as disclosures are) into
`<data_dir>/speech/<sha256>.wav`, where the media workers find them by that hash.

Synthesis runs on a thread, one text at a time (the voice is not shared between threads), and
the same text is made once: announcements repeat word for word. Files are not kept for ever:
`prune` removes those older than a day (a briefing holds what a caller said).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from pathlib import Path

from admin.disclosure_audio import PiperRenderer, Render, audio_path, store

log = logging.getLogger(__name__)

__all__ = ["SpeechMaker"]

_REMEMBERED = 256  # texts whose file is known
KEEP_S = 24 * 3600.0


class SpeechMaker:
    """`await maker(text)` -> the SHA-256 of a WAV of `text` in `folder`."""

    def __init__(self, folder: Path, render: Render | None = None) -> None:
        self.folder = folder
        self._render: Render = render or PiperRenderer()
        self._lock = asyncio.Lock()
        self._made: collections.OrderedDict[str, str] = collections.OrderedDict()

    async def __call__(self, text: str) -> str:
        async with self._lock:
            known = self._made.get(text)
            if known is not None and audio_path(self.folder, known).is_file():
                self._made.move_to_end(text)
                return known
            sha256 = await asyncio.to_thread(self._make, text)
            self._made[text] = sha256
            while len(self._made) > _REMEMBERED:
                self._made.popitem(last=False)
            return sha256

    def _make(self, text: str) -> str:
        started = time.perf_counter()
        sha256 = store(self.folder, self._render(text))
        log.info(
            "speech made",
            extra={"chars": len(text), "ms": round((time.perf_counter() - started) * 1000)},
        )
        return sha256

    async def warm_up(self) -> None:
        """Loads the voice now, so that the first briefing is not late."""
        try:
            await self("Thank you for waiting.")
        except Exception as error:
            log.error("the speech voice could not be loaded", extra={"error": repr(error)[:300]})

    def prune(self, *, now: float | None = None) -> int:
        """Removes speech files older than KEEP_S; returns how many."""
        cutoff = (now if now is not None else time.time()) - KEEP_S
        removed = 0
        for path in self.folder.glob("*.wav"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            self._made.clear()
        return removed
