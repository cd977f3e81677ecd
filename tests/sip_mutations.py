"""Mutated SIP messages for fuzzing: valid seeds bent, cut and stuffed, deterministically.

Pure: no I/O. `mutant(addressing, seed=s, index=i)` is a function of its arguments alone, so a
mutant that breaks a peer is reproduced from its seed and index. Mutation families take turns
(mutant i belongs to family i mod len(Family)), so any run of a few hundred covers every family.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Literal

from tests.sip_raw import PCMU_SDP

# An IPv4 UDP datagram carries at most 65,507 bytes; stay clear of it.
MAX_DATAGRAM = 65_000
CRLF = b"\r\n"


class Family(enum.Enum):
    TRUNCATE = "truncate"
    REPEAT_HEADER = "repeat-header"
    OVERSIZE_HEADER = "oversize-header"
    OVERSIZE_IDENTIFIER = "oversize-identifier"  # Request-URI, Call-ID, tags, branch
    BAD_ENCODING = "bad-encoding"
    LF_ONLY = "lf-only"
    MISSING_HEADER = "missing-header"
    CONTENT_LENGTH = "content-length"
    SDP_GARBAGE = "sdp-garbage"
    BYTE_NOISE = "byte-noise"
    DEEP_VIA = "deep-via"
    UNKNOWN_METHOD = "unknown-method"
    GARBLED_START_LINE = "garbled-start-line"


@dataclass(frozen=True)
class Addressing:
    """Where the mutants go and where answers should come back."""

    host: str
    port: int
    local_host: str = "127.0.0.1"
    local_port: int = 5060
    transport: Literal["UDP", "TCP"] = "UDP"
    user: str = "100"


@dataclass(frozen=True)
class Message:
    """A SIP message as bytes in three parts, so mutations can bend one part at a time."""

    start: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes = b""
    line_end: bytes = CRLF
    # None: Content-Length is written from the body; otherwise this exact value (or no
    # header at all when it is b"").
    content_length: bytes | None = None

    def encode(self) -> bytes:
        lines = [self.start, *(name + b": " + value for name, value in self.headers)]
        length = (
            str(len(self.body)).encode() if self.content_length is None else self.content_length
        )
        if length:
            lines.append(b"Content-Length: " + length)
        end = self.line_end
        return end.join(lines) + end + end + self.body

    def with_header(self, name: bytes, value: bytes) -> Message:
        return replace(self, headers=(*self.headers, (name, value)))

    def header_index(self, name: bytes) -> int | None:
        for i, (key, _) in enumerate(self.headers):
            if key.lower() == name.lower():
                return i
        return None


@dataclass(frozen=True)
class Mutant:
    family: Family
    seed: str  # the name of the seed message it came from
    index: int
    data: bytes


@dataclass(frozen=True)
class Ids:
    """Fresh identifiers per mutant: each one is a new transaction, not a retransmission."""

    call_id: str
    branch: str
    from_tag: str
    to_tag: str
    cseq: int

    @classmethod
    def draw(cls, rng: random.Random) -> Ids:
        return cls(
            call_id=f"{rng.getrandbits(64):016x}@fuzz",
            branch=f"z9hG4bK{rng.getrandbits(64):016x}",
            from_tag=f"{rng.getrandbits(32):08x}",
            to_tag=f"{rng.getrandbits(32):08x}",
            cseq=rng.randrange(1, 1 << 16),
        )


def _request(
    method: str,
    where: Addressing,
    ids: Ids,
    *,
    in_dialog: bool = False,
    cseq_method: str | None = None,
    extra: tuple[tuple[str, str], ...] = (),
    body: str = "",
    content_type: str = "application/sdp",
) -> Message:
    local = f"{where.local_host}:{where.local_port}"
    to_tag = f";tag={ids.to_tag}" if in_dialog else ""
    headers = [
        ("Via", f"SIP/2.0/{where.transport} {local};branch={ids.branch};rport"),
        ("Max-Forwards", "70"),
        ("From", f"<sip:fuzzer@{where.local_host}>;tag={ids.from_tag}"),
        ("To", f"<sip:{where.user}@{where.host}>{to_tag}"),
        ("Call-ID", ids.call_id),
        ("CSeq", f"{ids.cseq} {cseq_method or method}"),
        ("Contact", f"<sip:fuzzer@{local};transport={where.transport.lower()}>"),
        *extra,
    ]
    if body:
        headers.append(("Content-Type", content_type))
    start = f"{method} sip:{where.user}@{where.host}:{where.port} SIP/2.0"
    return Message(
        start.encode(),
        tuple((name.encode(), value.encode()) for name, value in headers),
        body.encode(),
    )


def _sdp(where: Addressing) -> str:
    return PCMU_SDP.format(host=where.local_host, port=40_000)


def seed_corpus(where: Addressing, ids: Ids) -> dict[str, Message]:
    """Valid messages of every kind a SIP peer meets, addressed to `where`."""
    sdp = _sdp(where)
    ok_headers = _request("INVITE", where, ids, in_dialog=True, body=sdp).headers
    return {
        "invite": _request("INVITE", where, ids, body=sdp),
        "ack": _request("ACK", where, ids, in_dialog=True),
        "bye": _request("BYE", where, ids, in_dialog=True),
        "cancel": _request("CANCEL", where, ids),
        "options": _request("OPTIONS", where, ids, extra=(("Accept", "application/sdp"),)),
        "register": _request("REGISTER", where, ids, extra=(("Expires", "3600"),)),
        "message": _request("MESSAGE", where, ids, body="hello", content_type="text/plain"),
        "ok": Message(
            b"SIP/2.0 200 OK",
            tuple(kv for kv in ok_headers if kv[0] != b"Max-Forwards"),
            sdp.encode(),
        ),
        "reinvite": _request(
            "INVITE",
            where,
            ids,
            in_dialog=True,
            body=sdp.replace("a=rtpmap", "a=sendonly\r\na=rtpmap"),
        ),
    }


SEEDS = ("invite", "ack", "bye", "cancel", "options", "register", "message", "ok", "reinvite")
MANDATORY = (b"Via", b"Max-Forwards", b"From", b"To", b"Call-ID", b"CSeq", b"Contact")
_WITH_SDP = ("invite", "ok", "reinvite")


# --- the families: each takes a seed and a random source and returns the bytes to send --------


def _size(rng: random.Random, low: int, high: int) -> int:
    """Log-uniform in [low, high]: as many small as huge."""
    return int(low * (high / low) ** rng.random())


def _truncate(message: Message, rng: random.Random) -> bytes:
    data = message.encode()
    return data[: rng.randrange(1, len(data))]


def _repeat_header(message: Message, rng: random.Random) -> bytes:
    i = rng.randrange(len(message.headers))
    times = _size(rng, 2, 500)
    headers = list(message.headers)
    headers[i + 1 : i + 1] = [headers[i]] * (times - 1)
    return replace(message, headers=tuple(headers)).encode()


def _filler(rng: random.Random, size: int) -> bytes:
    shape = rng.choice(["token", "list", "params", "quoted"])
    if shape == "token":
        return b"a" * size
    if shape == "list":
        return b",".join([b"x"] * (size // 2))
    if shape == "params":
        return b";p=1" * (size // 4)
    return b'"' + b"q" * size + b'"'


def _oversize_header(message: Message, rng: random.Random) -> bytes:
    size = _size(rng, 1_000, 60_000)
    headers = list(message.headers)
    if rng.random() < 0.3:
        headers.append((b"X-Fuzz", _filler(rng, size)))
    else:
        i = rng.randrange(len(headers))
        headers[i] = (headers[i][0], headers[i][1] + _filler(rng, size))
    return replace(message, headers=tuple(headers)).encode()


def _oversize_identifier(message: Message, rng: random.Random) -> bytes:
    big = b"9" * _size(rng, 256, 60_000)
    which = rng.choice(["ruri", "call-id", "from-tag", "to-tag", "branch"])
    if which == "ruri":
        if message.start.startswith(b"SIP/"):
            return replace(message, start=message.start + b" " + big).encode()
        method, _, rest = message.start.partition(b" sip:")
        return replace(message, start=method + b" sip:" + big + rest).encode()
    name, marker = {
        "call-id": (b"Call-ID", b""),
        "from-tag": (b"From", b";tag="),
        "to-tag": (b"To", b";tag="),
        "branch": (b"Via", b";branch="),
    }[which]
    headers = list(message.headers)
    i = message.header_index(name)
    assert i is not None  # every seed has them
    value = headers[i][1]
    if marker and marker in value:
        value = value.replace(marker, marker + big, 1)
    else:
        value = value + marker + big
    headers[i] = (name, value)
    return replace(message, headers=tuple(headers)).encode()


_BAD_BYTES = (
    b"\xff\xfe",  # never valid UTF-8
    b"\xc3\x28",  # a two-byte sequence cut short
    b"\xc0\xaf",  # overlong '/'
    b"\xe0\x80\xaf",  # overlong '/', three bytes
    b"\xf0\x80\x80\xaf",  # overlong '/', four bytes
    b"\xed\xa0\x80",  # a UTF-16 surrogate encoded as UTF-8
    b"\xf8\x88\x80\x80\x80",  # five-byte form
    b"\x00",
    b"\x00" * 64,
    b"\x01\x02\x1b[31m\x7f",
    b"\r",  # a bare CR
    b"\t\x0b\x0c",
    "Müller café".encode("latin-1"),
    b"\xe9t\xe9",
    "😀".encode("utf-16-le"),
)


def _bad_encoding(message: Message, rng: random.Random) -> bytes:
    bad = b"".join(rng.choice(_BAD_BYTES) for _ in range(rng.randint(1, 4)))
    headers = list(message.headers)
    where = rng.choice(["start", "value", "name", "body"])
    if where == "start":
        cut = rng.randrange(len(message.start) + 1)
        return replace(message, start=message.start[:cut] + bad + message.start[cut:]).encode()
    if where == "body":
        cut = rng.randrange(len(message.body) + 1)
        return replace(message, body=message.body[:cut] + bad + message.body[cut:]).encode()
    i = rng.randrange(len(headers))
    name, value = headers[i]
    if where == "name":
        name = name + bad
    else:
        cut = rng.randrange(len(value) + 1)
        value = value[:cut] + bad + value[cut:]
    headers[i] = (name, value)
    return replace(message, headers=tuple(headers)).encode()


def _lf_only(message: Message, rng: random.Random) -> bytes:
    style = rng.choice(["lf", "cr", "mixed"])
    if style != "mixed":
        return replace(message, line_end=b"\n" if style == "lf" else b"\r").encode()
    data = message.encode()
    first, *rest = data.split(CRLF)
    # The first line ends in a bare LF, so the mixture is never all CRLF by chance.
    mixed = [first + b"\n", *(line + rng.choice([CRLF, b"\n"]) for line in rest[:-1])]
    return b"".join(mixed) + rest[-1]


def _missing_header(message: Message, rng: random.Random) -> bytes:
    present = [name for name in MANDATORY if message.header_index(name) is not None]
    gone = set(rng.sample(present, rng.randint(1, len(present))))
    if rng.random() < 0.2:
        gone.add(b"Content-Type")
    kept = tuple(kv for kv in message.headers if kv[0] not in gone)
    data = replace(message, headers=kept).encode()
    if rng.random() < 0.2:  # no blank line between headers and body either
        data = data.replace(message.line_end * 2, message.line_end, 1)
    return data


_LENGTHS = (
    b"-1",
    b"-99999",
    b"99999999999999999999999",
    b"4294967296",
    b"2147483648",
    b"65536",
    b"abc",
    b" 12 34",
    b"0x10",
    b"1e3",
    b"+5",
    b"",
)


def _content_length(message: Message, rng: random.Random) -> bytes:
    actual = len(message.body)
    choice = rng.randrange(4)
    if choice == 0:
        value = rng.choice(_LENGTHS)
        if not value:  # no Content-Length at all
            return replace(message, content_length=b"").encode()
        return replace(message, content_length=value).encode()
    if choice == 1:  # off by a little or a lot, either way
        near = {0, actual - 1, actual + 1, actual + 2, actual + 100, actual + 10_000} - {actual}
        wrong = rng.choice(sorted(v for v in near if v >= 0))
        return replace(message, content_length=str(wrong).encode()).encode()
    if choice == 2:  # two that disagree, one in compact form
        extra = (b"l", str(actual + rng.randint(1, 50)).encode())
        return replace(message, headers=(*message.headers, extra)).encode()
    # A body longer than its length: the rest looks like a second message.
    tail = b"OPTIONS sip:x SIP/2.0" + CRLF + b"Content-Length: 99999" + CRLF * 2
    return replace(message, body=message.body + tail, content_length=str(actual).encode()).encode()


def _sdp_lines(rng: random.Random, where: Addressing) -> list[str]:
    lines = _sdp(where).rstrip("\r\n").split("\r\n")
    kind = rng.choice(["c", "m-formats", "m-lines", "port", "codecs", "a-lines", "no-v", "raw"])
    if kind == "c":
        bad_c = rng.choice(
            [
                "c=IN IP4 999.999.1.1",
                "c=IN IP6 ::zz::1",
                "c=",
                "c=IN IP4",
                "c=IN IP4 " + "1" * 2000,
                "c=XX YY ZZ",
                "c=IN IP4 224.2.1.1/127/3",
                "c=IN IP4 0.0.0.0",
                "c=IN IP4 127.0.0.1 extra words",
            ]
        )
        lines = [bad_c if line.startswith("c=") else line for line in lines]
    elif kind == "m-formats":  # a format list thousands of entries long
        formats = " ".join(str(rng.randrange(128)) for _ in range(_size(rng, 50, 8000)))
        lines = [f"m=audio 40000 RTP/AVP {formats}" if ln.startswith("m=") else ln for ln in lines]
    elif kind == "m-lines":
        lines += [f"m=audio {40002 + 2 * i} RTP/AVP 0" for i in range(_size(rng, 10, 1000))]
    elif kind == "port":
        port = rng.choice(["-1", "99999", "40000/65535", "0", "abc", "4294967297"])
        lines = [f"m=audio {port} RTP/AVP 0" if ln.startswith("m=") else ln for ln in lines]
    elif kind == "codecs":
        lines = [
            "m=audio 40000 RTP/AVP 96 97 127" if ln.startswith("m=") else ln
            for ln in lines
            if not ln.startswith("a=rtpmap")
        ]
        lines += ["a=rtpmap:96 FOO/8000", "a=rtpmap:97 opus/0/-1", "a=rtpmap:127 /"]
    elif kind == "a-lines":
        lines += [f"a=x-fuzz-{i}:{'v' * rng.randrange(40)}" for i in range(1000)]
    elif kind == "no-v":
        lines = lines[1:]
    else:
        lines = ["".join(chr(rng.randrange(32, 127)) for _ in range(rng.randrange(1, 400)))]
    return lines


def _sdp_garbage(message: Message, rng: random.Random, where: Addressing) -> bytes:
    body = ("\r\n".join(_sdp_lines(rng, where)) + "\r\n").encode()
    headers = (
        *(kv for kv in message.headers if kv[0] != b"Content-Type"),
        (b"Content-Type", b"application/sdp"),
    )
    return replace(message, headers=headers, body=body).encode()


def _byte_noise(message: Message, rng: random.Random) -> bytes:
    data = bytearray(message.encode())
    for _ in range(_size(rng, 1, 32)):
        at = rng.randrange(len(data))
        action = rng.randrange(3)
        if action == 0:
            data[at] ^= 1 << rng.randrange(8)
        elif action == 1:
            data.insert(at, rng.randrange(256))
        elif len(data) > 1:
            del data[at]
    return bytes(data)


def _deep_via(message: Message, rng: random.Random) -> bytes:
    depth = _size(rng, 10, 1000)
    hops = [
        f"SIP/2.0/UDP 10.{i // 250 % 250}.{i % 250}.1:5060;branch=z9hG4bK{i:06x}".encode()
        for i in range(depth)
    ]
    if rng.random() < 0.5:  # one Via per line
        vias = tuple((b"Via", hop) for hop in hops)
    else:  # one Via line, comma-separated
        vias = ((b"Via", b", ".join(hops)),)
    headers = list(message.headers)
    i = message.header_index(b"Via") or 0
    headers[i + 1 : i + 1] = vias
    return replace(message, headers=tuple(headers)).encode()


_METHODS = (
    b"FOO",
    b"INVITEX",
    b"INV1TE",
    b"SUBSCRIBE",
    b"NOTIFY",
    b"PRACK",
    b"UPDATE",
    b"INFO",
    b"REFER",
    b"PUBLISH",
    b"GET",
    b"M" * 1000,
    b"-",
)


def _unknown_method(message: Message, rng: random.Random) -> bytes:
    method = rng.choice(_METHODS)
    start = message.start
    if not start.startswith(b"SIP/"):  # a response keeps its status line; its CSeq changes
        start = method + b" " + start.partition(b" ")[2]
    headers = list(message.headers)
    i = message.header_index(b"CSeq")
    if i is not None and (start == message.start or rng.random() < 0.7):
        number = headers[i][1].split(b" ", 1)[0]
        headers[i] = (b"CSeq", number + b" " + method)
    return replace(message, start=start, headers=tuple(headers)).encode()


_GARBLE_ANY: tuple[Callable[[bytes], bytes], ...] = (
    bytes.lower,
    lambda s: s.replace(b" ", b"   "),
    lambda s: s.replace(b" ", b"\t"),
    lambda s: s.rsplit(b" ", 1)[0],  # no version, or no reason phrase
    lambda s: s.split(b" ", 1)[0],
    lambda s: b" " + s,
    lambda s: s.replace(b"SIP/2.0", b"SIP/3.0"),
    lambda s: s.replace(b"SIP/2.0", b"SIP/2.0 SIP/2.0"),
    lambda s: b"",
)
_GARBLE_REQUEST: tuple[Callable[[bytes], bytes], ...] = (
    lambda s: s.replace(b"sip:", b"sip: "),
    lambda s: s.replace(b"sip:", b"tel:+"),
    lambda s: s.replace(b"sip:", b"http://"),
    lambda s: s.replace(b"sip:", b"sip:@"),
)


def _status_code(code: bytes) -> Callable[[bytes], bytes]:
    return lambda start: start.replace(b" 200 ", b" " + code + b" ")


_GARBLE_RESPONSE = tuple(
    _status_code(code) for code in (b"999999", b"-1", b"2x0", b"0", b"099", b"")
)


def _garbled_start_line(message: Message, rng: random.Random) -> bytes:
    response = message.start.startswith(b"SIP/")
    garble = rng.choice(_GARBLE_ANY + (_GARBLE_RESPONSE if response else _GARBLE_REQUEST))
    return replace(message, start=garble(message.start)).encode()


def mutate(family: Family, message: Message, rng: random.Random, where: Addressing) -> bytes:
    """`message` bent the way `family` says; `where` is the addressing of SDP it writes."""
    if family is Family.SDP_GARBAGE:
        return _sdp_garbage(message, rng, where)
    mutator: Callable[[Message, random.Random], bytes] = {
        Family.TRUNCATE: _truncate,
        Family.REPEAT_HEADER: _repeat_header,
        Family.OVERSIZE_HEADER: _oversize_header,
        Family.OVERSIZE_IDENTIFIER: _oversize_identifier,
        Family.BAD_ENCODING: _bad_encoding,
        Family.LF_ONLY: _lf_only,
        Family.MISSING_HEADER: _missing_header,
        Family.CONTENT_LENGTH: _content_length,
        Family.BYTE_NOISE: _byte_noise,
        Family.DEEP_VIA: _deep_via,
        Family.UNKNOWN_METHOD: _unknown_method,
        Family.GARBLED_START_LINE: _garbled_start_line,
    }[family]
    return mutator(message, rng)


FAMILIES = tuple(Family)


def mutant(where: Addressing, *, seed: int, index: int, max_bytes: int = MAX_DATAGRAM) -> Mutant:
    """The `index`th mutant of run `seed`: the same arguments always give the same bytes."""
    rng = random.Random(f"{seed}:{index}")
    family = FAMILIES[index % len(FAMILIES)]
    names = _WITH_SDP if family is Family.SDP_GARBAGE and rng.random() < 0.7 else SEEDS
    name = rng.choice(names)
    message = seed_corpus(where, Ids.draw(rng))[name]
    data = mutate(family, message, rng, where)
    return Mutant(family, name, index, data[:max_bytes])


def mutants(
    where: Addressing, *, seed: int, count: int, start: int = 0, max_bytes: int = MAX_DATAGRAM
) -> Iterator[Mutant]:
    for index in range(start, start + count):
        yield mutant(where, seed=seed, index=index, max_bytes=max_bytes)
