"""What a media worker needs to know to start: its addresses, ports and timers.

Kept apart from `telephony.worker` so that settings, the API, the ingester and Celery can build
a worker's configuration without loading pjsua2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SrtpMode = Literal["off", "optional", "required"]


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    index: int = 0
    # SIP: the edge reaches the worker here (loopback or a private network).
    sip_host: str = "127.0.0.1"
    sip_port: int = 5071
    # Written into the worker's Contact instead of sip_host (the edge maps it back).
    public_host: str | None = None
    # RTP: callers send audio straight to the worker, so it listens on media_host and
    # writes media_public_host into SDP (c=, o=); None lets pjmedia pick the host's address.
    media_host: str = "0.0.0.0"
    media_public_host: str | None = None
    rtp_port: int = 20000
    rtp_port_range: int = 40
    srtp: SrtpMode = "optional"
    max_calls: int = 4
    # Callers it answers; the rest of max_calls is kept for supervisors' legs.
    caller_slots: int = 4
    rtp_timeout_s: float = 30.0
    # Half-open calls: a 200 OK never ACKed, or an ACKed call that never sends RTP.
    ack_timeout_s: float = 3.0
    first_rtp_timeout_s: float = 4.0
    stats_interval_s: float = 5.0
    pj_log_level: int = 0
    # The worker's SIP peer is the edge, on loopback or the LAN: a short T1 frees the slot of
    # a caller who vanished in 3.2 s instead of 32 s (telephony/siptimers.py).
    sip_t1_ms: int = 50
    # Where commands for this worker's calls arrive: a Unix socket (the embedded default), or
    # Redis when redis_url is set (telephony/inbox.py). None: no inbox (tests, benchmarks).
    inbox_path: str | None = None
    # Where supervisors' browser audio connects (telephony/browserleg.py): a Unix socket the
    # API on this host relays to. None: supervisors join calls by phone only.
    audio_path: str | None = None
    redis_url: str | None = None
    # Supervisors' phones are rung through the edge, never directly (sip:127.0.0.1:5060).
    edge_uri: str | None = None
    # Speech made for calls by the escalation service (queue announcements, supervisors'
    # briefings): WAVs named by their SHA-256. None: no such speech is played.
    speech_dir: str | None = None
