"""Whether a model server can take a new call now: a poller of its GET /healthz.

A media worker asks before it answers: a call the model cannot serve (still loading its
models, crashed, hung) is refused with 503 and Retry-After instead of being answered into an
apology. The answer is cached and refreshed in the background, so the SIP thread never waits
on the network.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 1.0


def health_url(session_url: str) -> str:
    """The /healthz URL of the server behind a ws:// or wss:// session URL."""
    return server_url(session_url, "/healthz")


def server_url(session_url: str, path: str, query: str = "") -> str:
    """An HTTP URL on the server behind a ws:// or wss:// session URL."""
    parts = urlsplit(session_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not a ws:// or http:// URL: {session_url!r}")
    return urlunsplit((scheme, parts.netloc, path, query, ""))


def probe(url: str, *, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """One blocking GET; True on a 200 within the timeout."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            return int(answer.status) == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


class ServerHealth:
    """The last known health of one server, refreshed every `interval_s` by `run`."""

    def __init__(self, url: str, *, interval_s: float = 1.0, failures_to_down: int = 2) -> None:
        self.url = url
        self.interval_s = interval_s
        self.failures_to_down = failures_to_down
        self.ready = False  # nothing is known to be served until a probe says so
        self.checked_mono = 0.0
        self._failures = 0

    def observe(self, ok: bool, now: float) -> None:
        """Feeds one probe result. One lost probe is noise; `failures_to_down` in a row is not."""
        self.checked_mono = now
        if ok:
            if not self.ready:
                log.info("model server is ready", extra={"url": self.url})
            self.ready = True
            self._failures = 0
            return
        self._failures += 1
        if self.ready and self._failures >= self.failures_to_down:
            log.warning("model server is not answering", extra={"url": self.url})
            self.ready = False

    def mark_down(self, now: float) -> None:
        """A session found the server gone: down now, until a probe says it is back."""
        self.checked_mono = now
        self._failures = self.failures_to_down
        self.ready = False

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            ok = await asyncio.to_thread(probe, self.url)
            self.observe(ok, time.monotonic())
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.interval_s)
            except TimeoutError:
                pass
