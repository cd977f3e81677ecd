from __future__ import annotations

import os

import pjsua2 as pj

from telephony.framecopy import read_bytes, self_check, write_bytes


def test_round_trip_through_a_bytevector() -> None:
    self_check()
    vec = pj.ByteVector()
    for size in (640, 320, 1, 0, 4000):
        data = os.urandom(size)
        write_bytes(vec, data)
        assert vec.size() == size
        assert read_bytes(vec) == data
        if size:
            assert vec[size - 1] == data[-1]
