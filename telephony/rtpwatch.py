"""Tells when a call's far end has stopped sending RTP, or never started.

The count fed in is the stream's received-packet counter, which pjmedia updates with every
packet. A call that has never sent a packet is half-open (a scanner, or a flood of INVITEs
that never follow up) and is given only `first_packet_timeout_s`; once audio has flowed, a
gap must last `timeout_s`, long enough to ride out a network outage on a live call.
"""

from __future__ import annotations

MIN_TIMEOUT_S = 12.0


class RtpInactivity:
    def __init__(
        self, timeout_s: float, now: float, *, first_packet_timeout_s: float | None = None
    ) -> None:
        if timeout_s < MIN_TIMEOUT_S:
            raise ValueError(f"an RTP timeout under {MIN_TIMEOUT_S:.0f} s would end live calls")
        if first_packet_timeout_s is not None and first_packet_timeout_s <= 0:
            raise ValueError("the first-packet timeout must be positive")
        self.timeout_s = timeout_s
        self.first_packet_timeout_s = first_packet_timeout_s or timeout_s
        self.last_active = now
        self._packets = 0
        self.heard = False  # at least one packet arrived

    def observe(self, rx_packets: int, now: float) -> bool:
        """Feeds the received-packet count; True once the call counts as dead."""
        if rx_packets != self._packets:
            self._packets = rx_packets
            self.last_active = now
            self.heard = True
        limit = self.timeout_s if self.heard else self.first_packet_timeout_s
        return now - self.last_active > limit
