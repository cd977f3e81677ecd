"""Fast copies in and out of pjsua2 media frames.

A frame's `buf` is a SWIG-wrapped std::vector<unsigned char>. Converting it with bytes() or
numpy walks it element by element (~850 us per 20 ms frame, see FACTS.md). libstdc++ lays a
vector out as three pointers (begin, end, end of storage); reading those from the wrapped
object's address and copying with ctypes costs about a microsecond.
"""

from __future__ import annotations

import ctypes
from typing import Any

_PTR = ctypes.c_void_p
_PTR_SIZE = ctypes.sizeof(_PTR)


def _vector_span(vec: Any) -> tuple[int, int]:
    address = int(vec.this)
    begin = _PTR.from_address(address).value or 0
    end = _PTR.from_address(address + _PTR_SIZE).value or 0
    return begin, end - begin


def read_bytes(vec: Any) -> bytes:
    """The vector's contents as bytes."""
    begin, size = _vector_span(vec)
    if size <= 0 or begin == 0:
        return b""
    return ctypes.string_at(begin, size)


def write_bytes(vec: Any, data: bytes) -> None:
    """Replaces the vector's contents with `data`."""
    vec.resize(len(data))
    if not data:
        return
    begin, size = _vector_span(vec)
    if size != len(data) or begin == 0:
        raise RuntimeError("pjsua2 ByteVector layout is not what framecopy expects")
    ctypes.memmove(begin, data, size)


def self_check() -> None:
    """Verifies the layout assumption once at start-up; a wrong guess would corrupt memory."""
    import pjsua2 as pj

    vec = pj.ByteVector()
    sample = bytes(range(256)) * 2 + bytes(128)
    write_bytes(vec, sample)
    if vec.size() != len(sample) or vec[0] != 0 or vec[255] != 255 or read_bytes(vec) != sample:
        raise RuntimeError("pjsua2 ByteVector layout check failed")
