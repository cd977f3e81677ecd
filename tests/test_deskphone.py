"""`parley phone`: a supervisor's desk phone in its own process, called by `parley dial`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from admin.cli import build_parser
from telephony.deskphone import DeskPlan, registrar_host
from telephony.phonemedia import parse_keys
from tests.support import (
    PARLEY,
    ROOT,
    chirp_noise,
    dial,
    echo_match,
    free_port_block,
    read_wav,
    write_wav,
)

REALM = "parley-test"
_DIGEST_FIELD = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]+))')
_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact"}


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class Registrar:
    """A registrar on loopback UDP: challenges with digest (RFC 2617, no qop), checks the
    answer against its passwords, and keeps the bindings it accepted."""

    def __init__(self, passwords: dict[str, str]) -> None:
        self.passwords = passwords
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.uri = f"sip:127.0.0.1:{self.sock.getsockname()[1]}"
        self.nonce = uuid.uuid4().hex
        self.answers: list[tuple[str, int]] = []  # (user, status) for every REGISTER
        self.bindings: dict[str, str] = {}
        self.changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def wait_bound(self, user: str, timeout_s: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: user in self.bindings, timeout_s)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            start, headers = _parse(data)
            if start.startswith("REGISTER "):
                self.sock.sendto(self._register(start, headers), source)

    def _register(self, start: str, headers: dict[str, list[str]]) -> bytes:
        user = re.sub(r".*sip:([^@>]+)@.*", r"\1", headers["to"][0])
        authorization = headers.get("authorization", [""])[0]
        if not authorization:
            status, extra = 401, [f'WWW-Authenticate: Digest realm="{REALM}", nonce="{self.nonce}"']
        elif self._answer_ok(start.split()[1], authorization):
            status, extra = 200, self._bind(user, headers)
        else:
            status, extra = 403, []
        with self.changed:
            self.answers.append((user, status))
            self.changed.notify_all()
        return _response(status, headers, extra)

    def _answer_ok(self, request_uri: str, authorization: str) -> bool:
        fields = {m[0]: m[1] or m[2] for m in _DIGEST_FIELD.findall(authorization)}
        password = self.passwords.get(fields.get("username", ""))
        if password is None or fields.get("nonce") != self.nonce:
            return False
        ha1 = _md5(f"{fields['username']}:{REALM}:{password}")
        ha2 = _md5(f"REGISTER:{fields.get('uri', request_uri)}")
        return fields.get("response") == _md5(f"{ha1}:{self.nonce}:{ha2}")

    def _bind(self, user: str, headers: dict[str, list[str]]) -> list[str]:
        contact = headers.get("contact", [""])[0]
        expires = int(headers.get("expires", ["300"])[0])
        if expires == 0:
            self.bindings.pop(user, None)
            return []
        self.bindings[user] = contact
        return [f"Contact: {contact};expires={expires}", f"Expires: {expires}"]


def _parse(data: bytes) -> tuple[str, dict[str, list[str]]]:
    head = data.decode("latin-1").split("\r\n\r\n", 1)[0]
    start, *lines = head.split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        headers.setdefault(_COMPACT.get(name, name), []).append(value.strip())
    return start, headers


def _response(status: int, headers: dict[str, list[str]], extra: list[str]) -> bytes:
    reasons = {200: "OK", 401: "Unauthorized", 403: "Forbidden"}
    to = headers["to"][0] if ";tag=" in headers["to"][0] else f"{headers['to'][0]};tag=reg1"
    lines = [
        f"SIP/2.0 {status} {reasons[status]}",
        *(f"Via: {via}" for via in headers["via"]),
        f"From: {headers['from'][0]}",
        f"To: {to}",
        f"Call-ID: {headers['call-id'][0]}",
        f"CSeq: {headers['cseq'][0]}",
        *extra,
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@pytest.fixture
def registrar() -> Iterator[Registrar]:
    server = Registrar({"alice": "secret-alice"})
    yield server
    server.close()


@dataclass
class Phone:
    proc: subprocess.Popen[bytes]
    log: Path
    summary_path: Path
    port: int

    @property
    def uri(self) -> str:
        return f"sip:alice@127.0.0.1:{self.port}"

    def finish(self, timeout_s: float = 15) -> tuple[int, dict[str, Any]]:
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"parley phone did not exit:\n{self.output()}") from None
        summary = json.loads(self.summary_path.read_text()) if self.summary_path.exists() else {}
        return code, summary

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_phone(
    tmp: Path, registrar_uri: str, *options: str, password: str = "secret-alice"
) -> Phone:
    port = free_port_block(1)
    summary = tmp / "phone.json"
    argv = [*PARLEY, "phone", "--registrar", registrar_uri, "--user", "alice"]
    argv += ["--password", password, "--port", str(port), "--json", str(summary), *options]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env["PYTHONPATH"] = str(ROOT)
    log = tmp / "phone.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Phone(proc, log, summary, port)


def registered(phone: Phone, registrar: Registrar) -> Phone:
    if not registrar.wait_bound("alice", 10):
        phone.proc.kill()
        raise AssertionError(f"the phone never registered:\n{phone.output()}")
    return phone


# --- the plan: pure -----------------------------------------------------------------------


def test_keys_parse_into_sorted_presses() -> None:
    assert parse_keys("6:5, 2.5:4,0:*#") == ((0.0, "*#"), (2.5, "4"), (6.0, "5"))
    assert parse_keys("") == ()
    for bad in ("2.5", "x:4", "1:", "1:9x", "-1:4", "nan:4", "inf:4"):
        with pytest.raises(ValueError):
            parse_keys(bad)


def test_registrar_must_be_a_udp_sip_address() -> None:
    assert registrar_host("sip:127.0.0.1:5060") == "127.0.0.1"
    assert registrar_host("sip:pbx.example.org;transport=udp") == "pbx.example.org"
    for bad in ("127.0.0.1", "sips:127.0.0.1", "sip:bob@127.0.0.1", "sip::5060", "sip:h:99999"):
        with pytest.raises(ValueError):
            registrar_host(bad)
    with pytest.raises(ValueError, match="UDP only"):
        registrar_host("sip:127.0.0.1;transport=tcp")
    with pytest.raises(ValueError):
        DeskPlan("sip:127.0.0.1", "alice", "pw", keys=((1.0, "Z"),))


def phone_command(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


def test_bad_arguments_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PARLEY_PHONE_PASSWORD", raising=False)
    base = ["phone", "--registrar", "sip:127.0.0.1:5060", "--user", "alice", "--password", "p"]
    assert phone_command([*base, "--keys", "2.5"]) == 2
    assert "SECONDS:DIGITS" in capsys.readouterr().err
    assert phone_command(base[:-2]) == 2
    assert "PARLEY_PHONE_PASSWORD" in capsys.readouterr().err
    assert phone_command([*base, "--answer-after", "-1"]) == 2


# --- real processes on loopback -----------------------------------------------------------


@pytest.mark.sip
def test_phone_rings_answers_speaks_records_and_presses_keys(
    tmp_path: Path, registrar: Registrar
) -> None:
    # A key's RFC 4733 event replaces the phone's audio while it lasts: keys after speaking.
    says = chirp_noise(2.0, seed=11)
    caller_says = chirp_noise(2.0, seed=7)
    recording = tmp_path / "phone-heard.wav"
    phone = registered(
        start_phone(
            tmp_path,
            registrar.uri,
            "--answer-after", "0.5",
            "--play", str(write_wav(tmp_path / "supervisor.wav", says)),
            "--keys", "2.2:4,2.7:5",
            "--record", str(recording),
            "--max", "20",
        ),
        registrar,
    )  # fmt: skip
    caller_wav = write_wav(tmp_path / "caller.wav", caller_says)
    [call] = dial(phone.uri, tmp_path, play=caller_wav, hold=1.5)
    code, summary = phone.finish()
    assert code == 0, phone.output()
    assert call["answered"], call
    assert call["dtmf_received"] == "45"
    rang_s = (call["answered_mono_ns"] - call["placed_mono_ns"]) / 1e9
    assert 0.45 <= rang_s < 1.5, f"rang {rang_s:.2f} s before the answer"
    # Both jitter buffers settle in the first half second: match what follows.
    score, _ = echo_match(says[8000:], read_wav(tmp_path / "dial.wav"))
    assert score > 0.9, f"the caller did not hear the supervisor (match {score:.2f})"

    assert summary["registered"] and summary["unregistered"], summary
    [desk] = summary["calls"]
    assert desk["answered"] and desk["ended_by"] == "far_end"
    assert desk["ringing_mono_ns"] > call["placed_mono_ns"]  # one clock on one machine
    presses = [
        (d["digits"], (d["mono_ns"] - desk["answered_mono_ns"]) / 1e9) for d in desk["dtmf_sent"]
    ]
    assert [digits for digits, _ in presses] == ["4", "5"]
    assert 2.2 <= presses[0][1] < 2.6 and 2.7 <= presses[1][1] < 3.1, presses
    heard = read_wav(Path(desk["recording"]))
    score, _ = echo_match(caller_says[8000:], heard)
    assert score > 0.9, f"the phone did not record the caller (match {score:.2f})"
    times = np.array(desk["frame_times_ns"], dtype=np.int64)
    assert len(times) == len(heard) // 320 > 0
    assert (np.diff(times) >= 0).all()
    assert desk["answered_mono_ns"] <= times[0] and times[-1] <= desk["ended_mono_ns"]
    out = phone.output()
    for line in ("registered as alice at", "ringing: call from", "answered", "pressed 4"):
        assert line in out, out
    assert registrar.bindings == {}, "the phone did not unregister"


@pytest.mark.sip
def test_declining_answers_busy(tmp_path: Path, registrar: Registrar) -> None:
    phone = registered(
        start_phone(tmp_path, registrar.uri, "--decline", "--answer-after", "0.3"), registrar
    )
    [call] = dial(phone.uri, tmp_path, max_s=10)
    code, summary = phone.finish()
    assert code == 0, phone.output()
    assert not call["answered"] and call["status_code"] == 486, call
    [desk] = summary["calls"]
    assert not desk["answered"] and desk["status_code"] == 486 and desk["ended_by"] == "phone"
    assert "declined: 486 Busy Here" in phone.output()


@pytest.mark.sip
def test_the_phone_hangs_up_when_told(tmp_path: Path, registrar: Registrar) -> None:
    phone = registered(start_phone(tmp_path, registrar.uri, "--hangup-after", "1"), registrar)
    [call] = dial(phone.uri, tmp_path, hold=10, max_s=10)
    code, summary = phone.finish()
    assert code == 0, phone.output()
    assert call["answered"], call
    on_s = (call["ended_mono_ns"] - call["answered_mono_ns"]) / 1e9
    assert 0.9 <= on_s < 2.0, f"the call lasted {on_s:.2f} s"
    [desk] = summary["calls"]
    assert desk["ended_by"] == "phone" and desk["frames_received"] > 0
    assert "hung up" in phone.output()


@pytest.mark.sip
def test_register_only_without_a_registrar_fails_within_seconds(tmp_path: Path) -> None:
    nobody = f"sip:127.0.0.1:{free_port_block(1)}"
    started = time.monotonic()
    phone = start_phone(tmp_path, nobody, "--register-only", "--register-timeout", "2", "-q")
    code, summary = phone.finish()
    elapsed = time.monotonic() - started
    assert code == 1, phone.output()
    assert 2 <= elapsed < 8, f"took {elapsed:.1f} s to give up"
    assert not summary["registered"] and summary["register_status"] == 408
    assert "is the registrar running" in phone.output()
