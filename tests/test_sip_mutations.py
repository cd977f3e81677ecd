"""The SIP mutator: valid seeds, the same mutants for the same seed, every family doing its bit."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest

from tests.sip_mutations import (
    FAMILIES,
    MANDATORY,
    MAX_DATAGRAM,
    SEEDS,
    Addressing,
    Family,
    Ids,
    Message,
    mutant,
    mutants,
    mutate,
    seed_corpus,
)

WHERE = Addressing("127.0.0.1", 5080, local_port=40123)
CRLF = b"\r\n"


def _seeds(rng_seed: int = 1) -> dict[str, Message]:
    return seed_corpus(WHERE, Ids.draw(random.Random(rng_seed)))


def _split(data: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    """(start line, headers, body) of a well-formed message."""
    head, _, body = data.partition(CRLF * 2)
    start, *lines = head.split(CRLF)
    headers = [
        (name.strip(), value.strip()) for name, _, value in (ln.partition(b":") for ln in lines)
    ]
    return start, headers, body


def _names(data: bytes) -> list[bytes]:
    return [name.lower() for name, _ in _split(data)[1]]


def test_the_corpus_holds_every_seed() -> None:
    assert tuple(_seeds()) == SEEDS


@pytest.mark.parametrize("name", SEEDS)
def test_every_seed_is_a_well_formed_message(name: str) -> None:
    data = _seeds()[name].encode()
    start, headers, body = _split(data)
    if name == "ok":
        assert start == b"SIP/2.0 200 OK"
    else:
        method, uri, version = start.split(b" ")
        assert method.decode() == ("INVITE" if name == "reinvite" else name.upper())
        assert uri == b"sip:100@127.0.0.1:5080" and version == b"SIP/2.0"
    present = {key.lower() for key, _ in headers}
    mandatory = {h.lower() for h in MANDATORY} - ({b"max-forwards"} if name == "ok" else set())
    assert mandatory <= present
    assert dict(headers)[b"Content-Length"] == str(len(body)).encode()
    assert b"SIP/2.0/UDP 127.0.0.1:40123" in dict(headers)[b"Via"]
    if name in ("invite", "reinvite", "ok"):
        assert body.startswith(b"v=0\r\n") and dict(headers)[b"Content-Type"] == b"application/sdp"
    assert (b";tag=" in dict(headers)[b"To"]) == (name in ("ack", "bye", "ok", "reinvite"))


def test_tcp_addressing_names_tcp_in_via_and_contact() -> None:
    where = Addressing("127.0.0.1", 5080, transport="TCP")
    data = seed_corpus(where, Ids.draw(random.Random(1)))["invite"].encode()
    assert b"Via: SIP/2.0/TCP " in data and b";transport=tcp>" in data


def test_the_same_seed_gives_the_same_mutants() -> None:
    first = list(mutants(WHERE, seed=7, count=300))
    assert first == list(mutants(WHERE, seed=7, count=300))
    assert mutant(WHERE, seed=7, index=123) == first[123]
    assert list(mutants(WHERE, seed=7, count=50, start=100)) == first[100:150]
    other = list(mutants(WHERE, seed=8, count=300))
    assert sum(a.data != b.data for a, b in zip(first, other, strict=True)) > 290


def test_every_mutant_is_a_new_transaction() -> None:
    calls = [m.data for m in mutants(WHERE, seed=3, count=200) if m.family is Family.DEEP_VIA]
    call_ids = {next(v for k, v in _split(d)[1] if k == b"Call-ID") for d in calls}
    assert len(call_ids) == len(calls)


def test_families_take_turns_and_every_seed_is_used() -> None:
    run = list(mutants(WHERE, seed=1, count=13 * 100))
    assert [m.family for m in run[: len(FAMILIES)]] == list(FAMILIES)
    assert set(Counter(m.family for m in run).values()) == {100}
    assert set(Counter(m.seed for m in run)) == set(SEEDS)


def test_sdp_garbage_prefers_seeds_with_sdp() -> None:
    run = [m for m in mutants(WHERE, seed=1, count=13 * 200) if m.family is Family.SDP_GARBAGE]
    with_sdp = sum(m.seed in ("invite", "ok", "reinvite") for m in run)
    assert with_sdp > len(run) * 0.6


def test_mutants_fit_a_datagram_and_the_oversized_come_close() -> None:
    run = list(mutants(WHERE, seed=2, count=13 * 150))
    assert max(len(m.data) for m in run) <= MAX_DATAGRAM
    big = [len(m.data) for m in run if m.family is Family.OVERSIZE_HEADER]
    assert max(big) > 40_000 and min(big) < 4_000  # huge and merely large both
    assert all(len(m.data) <= 500 for m in mutants(WHERE, seed=2, count=100, max_bytes=500))


# --- each family does what its name says, on every seed ------------------------------------------


def _some_header_line_is_long(seed: bytes, data: bytes) -> bool:
    return max(len(line) for line in data.split(CRLF)[1:]) >= 500


def _repeats(seed: bytes, data: bytes) -> bool:
    before, after = Counter(_names(seed)), Counter(_names(data))
    return any(after[name] >= before[name] + 1 for name in before) and len(after) == len(before)


def _huge_identifier(seed: bytes, data: bytes) -> bool:
    lines = data.split(CRLF)
    identifying = [lines[0]] + [
        ln for ln in lines if ln.split(b":")[0] in (b"Call-ID", b"From", b"To", b"Via")
    ]
    return any(b"9" * 256 in line for line in identifying)


def _badly_encoded(seed: bytes, data: bytes) -> bool:
    text = data.replace(CRLF, b"")
    try:
        text.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return any((byte < 0x20 and byte != 0x09) or byte == 0x7F for byte in text) or b"\r" in text


def _not_crlf(seed: bytes, data: bytes) -> bool:
    return data.count(CRLF) < seed.count(CRLF)


def _lacks_mandatory(seed: bytes, data: bytes) -> bool:
    return not {h.lower() for h in MANDATORY if h.lower() in _names(seed)} <= set(_names(data))


def _length_lies(seed: bytes, data: bytes) -> bool:
    _, headers, body = _split(data)
    lengths = [v for k, v in headers if k.lower() in (b"content-length", b"l")]
    return lengths != [str(len(body)).encode()]


def _sdp_changed(seed: bytes, data: bytes) -> bool:
    _, headers, body = _split(data)
    return body != _split(seed)[2] and (b"Content-Type", b"application/sdp") in headers


def _noisy(seed: bytes, data: bytes) -> bool:
    return data != seed and abs(len(data) - len(seed)) <= 32


def _deep(seed: bytes, data: bytes) -> bool:
    vias = [v for k, v in _split(data)[1] if k == b"Via"]
    return sum(v.count(b"SIP/2.0/") for v in vias) >= 11


def _odd_method(seed: bytes, data: bytes) -> bool:
    start, headers, _ = _split(data)
    cseq_method = dict(headers)[b"CSeq"].split(b" ", 1)[1]
    if start.startswith(b"SIP/"):
        return cseq_method not in {s.upper().encode() for s in SEEDS}
    return start.split(b" ")[0] != seed.split(b" ")[0]


def _garbled(seed: bytes, data: bytes) -> bool:
    return data.split(CRLF)[0] != seed.split(CRLF)[0]


PROPERTIES: dict[Family, Callable[[bytes, bytes], bool]] = {
    Family.TRUNCATE: lambda seed, data: seed.startswith(data) and 0 < len(data) < len(seed),
    Family.REPEAT_HEADER: _repeats,
    Family.OVERSIZE_HEADER: _some_header_line_is_long,
    Family.OVERSIZE_IDENTIFIER: _huge_identifier,
    Family.BAD_ENCODING: _badly_encoded,
    Family.LF_ONLY: _not_crlf,
    Family.MISSING_HEADER: _lacks_mandatory,
    Family.CONTENT_LENGTH: _length_lies,
    Family.SDP_GARBAGE: _sdp_changed,
    Family.BYTE_NOISE: _noisy,
    Family.DEEP_VIA: _deep,
    Family.UNKNOWN_METHOD: _odd_method,
    Family.GARBLED_START_LINE: _garbled,
}


def test_every_family_has_a_property() -> None:
    assert set(PROPERTIES) == set(Family)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.value)
def test_each_family_bends_every_seed_its_way(family: Family) -> None:
    rng = random.Random(family.value)
    holds = PROPERTIES[family]
    for name, message in _seeds().items():
        seed = message.encode()
        for _ in range(40):
            data = mutate(family, message, rng, WHERE)
            assert holds(seed, data), (name, data[:400])


def test_repeats_reach_hundreds_and_vias_thousands_of_bytes_deep() -> None:
    rng = random.Random(5)
    invite = _seeds()["invite"]
    repeats = [
        len(mutate(Family.REPEAT_HEADER, invite, rng, WHERE).split(CRLF)) for _ in range(200)
    ]
    assert max(repeats) > 300
    vias = [_split(mutate(Family.DEEP_VIA, invite, rng, WHERE))[1] for _ in range(100)]
    assert max(sum(v.count(b"SIP/2.0/") for k, v in h if k == b"Via") for h in vias) > 500
