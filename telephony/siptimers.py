"""pjsip's transaction timers (RFC 3261 T1 and Timer D) for a media worker.

A worker's only SIP peer is the edge, on loopback or the LAN, where a round trip takes well
under a millisecond. With the default T1 of 500 ms a transaction to a peer that has gone away
lasts 64 x T1 = 32 s: a caller who vanished after the answer (no ACK, or no answer to our BYE)
holds one of the worker's four call slots that long. A T1 of 50 ms gives up after 3.2 s; the
edge keeps the internet-facing timers for the hop to the caller.

pjsua2 does not expose these settings. They live in pjsip's global `pjsip_sip_cfg_var`, which
the wheel's library exports; its `tsx` section is found by its default values (max_count, then
T1 500, T2 4000, T4 5000, Timer D 32000, consecutive unsigned ints) and changed before the
library starts. If the layout is not what this module expects, nothing is changed.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

import pjsua2 as pj

log = logging.getLogger(__name__)

_DEFAULTS = (500, 4000, 5000, 32000)  # T1, T2, T4, Timer D in ms
_SCAN_WORDS = 64  # the endpt section before tsx is a few dozen flags


def _library() -> ctypes.CDLL:
    folder = Path(pj.__file__).parent
    [shared] = folder.glob("_pjsua2*.so")
    return ctypes.CDLL(str(shared))


def set_transaction_timers(*, t1_ms: int, timer_d_ms: int) -> bool:
    """Sets T1 and Timer D for transactions created from now on; True if they were set.

    Call before `libInit` (pjsip derives its timeout timer, 64 x T1, when it starts).
    """
    try:
        words = (ctypes.c_uint * _SCAN_WORDS).in_dll(_library(), "pjsip_sip_cfg_var")
    except (OSError, ValueError) as error:
        log.warning("pjsip timers not set: %s", error)
        return False
    values = list(words)
    found = [i for i in range(_SCAN_WORDS - 4) if tuple(values[i : i + 4]) == _DEFAULTS]
    if len(found) != 1:
        log.warning("pjsip timers not set: their defaults were not found exactly once")
        return False
    t1 = found[0]
    words[t1] = t1_ms
    words[t1 + 3] = timer_d_ms
    return True
