"""A minimal SIP OPTIONS ping over UDP, to tell whether an edge or worker is answering."""

from __future__ import annotations

import socket
import time
import uuid


def build_options(host: str, port: int, local_port: int) -> bytes:
    branch = "z9hG4bK" + uuid.uuid4().hex[:16]
    return (
        f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@127.0.0.1>;tag={uuid.uuid4().hex[:8]}\r\n"
        f"To: <sip:{host}:{port}>\r\n"
        f"Call-ID: {uuid.uuid4().hex}@parley-probe\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def status_code(response: bytes) -> int:
    """The status code of a SIP response; ValueError for anything else."""
    first = response.split(b"\r\n", 1)[0].decode("latin-1")
    parts = first.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("SIP/2.0"):
        raise ValueError("not a SIP response")
    return int(parts[1])


def final_response(
    sock: socket.socket,
    payload: bytes,
    host: str,
    port: int,
    *,
    timeout_s: float,
    cseq: str | None = None,
) -> bytes | None:
    """Sends a request over a bound UDP socket, retransmitting, until a final response arrives.

    With `cseq` ("3 BYE"), only a response to that request counts (a retransmitted answer to
    an earlier request on the same socket is not it). Returns the response's bytes, or None
    when none came within the timeout.
    """
    sock.settimeout(0.2)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sock.sendto(payload, (host, port))
        try:
            data, _ = sock.recvfrom(65535)
        except (TimeoutError, ConnectionRefusedError):
            continue
        try:
            code = status_code(data)
        except ValueError:
            continue
        if code >= 200 and (cseq is None or _cseq(data) == cseq):
            return data
    return None


def _cseq(response: bytes) -> str:
    for line in response.split(b"\r\n")[1:]:
        if line.lower().startswith(b"cseq:"):
            return " ".join(line.decode("latin-1").split()[1:])
    return ""


def options_ping(host: str, port: int, *, timeout_s: float = 1.0) -> int:
    """Sends OPTIONS and returns the final status code; raises TimeoutError with no answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        request = build_options(host, port, sock.getsockname()[1])
        answer = final_response(sock, request, host, port, timeout_s=timeout_s)
    if answer is None:
        raise TimeoutError(f"no SIP answer from {host}:{port}")
    return status_code(answer)


def wait_answering(host: str, port: int, *, timeout_s: float = 15.0) -> None:
    """Waits until a SIP endpoint answers OPTIONS with 200."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if options_ping(host, port, timeout_s=0.5) == 200:
                return
        except TimeoutError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{host}:{port} did not answer SIP OPTIONS within {timeout_s}s")
