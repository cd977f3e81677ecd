"""Hand-built SIP requests over UDP: what an attacker or a broken peer would send."""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass, field

from telephony.sipprobe import final_response, status_code

PCMU_SDP = (
    "v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


@dataclass
class Response:
    code: int
    raw: bytes

    def header(self, name: str) -> str | None:
        for line in self.raw.decode("latin-1").split("\r\n")[1:]:
            if not line:
                break
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


@dataclass
class Request:
    method: str
    ruri: str
    local_host: str = "127.0.0.1"
    local_port: int = 0
    to_uri: str = "sip:100@127.0.0.1"
    to_tag: str | None = None
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    cseq: int = 1
    routes: tuple[str, ...] = ()
    extra_headers: tuple[str, ...] = ()
    body: str = ""
    content_type: str = "application/sdp"

    def encode(self) -> bytes:
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        to_tag = f";tag={self.to_tag}" if self.to_tag else ""
        lines = [
            f"{self.method} {self.ruri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.local_host}:{self.local_port};branch={branch};rport",
            "Max-Forwards: 70",
            *(f"Route: <{route}>" for route in self.routes),
            f"From: <sip:tester@{self.local_host}>;tag={uuid.uuid4().hex[:8]}",
            f"To: <{self.to_uri}>{to_tag}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} {self.method}",
            f"Contact: <sip:tester@{self.local_host}:{self.local_port}>",
            *self.extra_headers,
        ]
        if self.body:
            lines.append(f"Content-Type: {self.content_type}")
        lines.append(f"Content-Length: {len(self.body.encode())}")
        return ("\r\n".join(lines) + "\r\n\r\n" + self.body).encode()


def exchange(
    request: Request,
    host: str,
    port: int,
    *,
    bind: str = "127.0.0.1",
    timeout_s: float = 3.0,
) -> Response | None:
    """Sends the request (retransmitting as UDP does) and returns its final response, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((bind, 0))
        request.local_host = bind
        request.local_port = sock.getsockname()[1]
        answer = final_response(sock, request.encode(), host, port, timeout_s=timeout_s)
    return None if answer is None else Response(status_code(answer), answer)
