from __future__ import annotations

import pytest

from telephony.rtpwatch import MIN_TIMEOUT_S, RtpInactivity


def test_times_out_only_after_packets_stop_for_the_timeout() -> None:
    watch = RtpInactivity(15.0, now=0.0)
    assert not watch.observe(0, 1.0)
    for second in range(2, 30):
        assert not watch.observe(second * 50, float(second))  # packets flowing
    assert not watch.observe(29 * 50, 40.0)  # stopped at t=29; 11 s so far
    assert watch.observe(29 * 50, 44.5)


def test_a_timeout_shorter_than_rtcp_reports_is_refused() -> None:
    with pytest.raises(ValueError):
        RtpInactivity(MIN_TIMEOUT_S - 1, now=0.0)


def test_a_call_that_never_sends_rtp_gets_only_the_first_packet_timeout() -> None:
    watch = RtpInactivity(30.0, now=0.0, first_packet_timeout_s=5.0)
    assert not watch.observe(0, 4.0)
    assert watch.observe(0, 5.5)


def test_once_audio_flowed_a_gap_gets_the_full_timeout() -> None:
    watch = RtpInactivity(30.0, now=0.0, first_packet_timeout_s=5.0)
    assert not watch.observe(10, 1.0)
    assert not watch.observe(10, 20.0)  # 19 s of silence: still within 30 s
    assert watch.observe(10, 31.5)
