"""Tells when a call's far end has stopped sending RTP.

pjmedia's receive counters (the RTCP session's packet count) are only refreshed when an RTCP
report is built, about every 5 s, so a count that has not moved for less than two report
intervals proves nothing. MIN_TIMEOUT_S keeps the timeout above that.
"""

from __future__ import annotations

MIN_TIMEOUT_S = 12.0


class RtpInactivity:
    def __init__(self, timeout_s: float, now: float) -> None:
        if timeout_s < MIN_TIMEOUT_S:
            raise ValueError(f"an RTP timeout under {MIN_TIMEOUT_S:.0f} s would end live calls")
        self.timeout_s = timeout_s
        self.last_active = now
        self._packets: int | None = None

    def observe(self, rx_packets: int, now: float) -> bool:
        """Feeds the received-packet count; True once it has not moved for the timeout."""
        if rx_packets != self._packets:
            self._packets = rx_packets
            self.last_active = now
        return now - self.last_active > self.timeout_s
