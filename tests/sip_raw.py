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
    from_tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
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
            f"From: <sip:tester@{self.local_host}>;tag={self.from_tag}",
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
        answer = final_response(
            sock,
            request.encode(),
            host,
            port,
            timeout_s=timeout_s,
            cseq=f"{request.cseq} {request.method}",
        )
    return None if answer is None else Response(status_code(answer), answer)


def headers(raw: bytes, name: str) -> list[str]:
    """Every value of a header (comma-separated values split), in order."""
    values = []
    for line in raw.decode("latin-1").split("\r\n")[1:]:
        if not line:
            break
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            values += [part.strip() for part in value.split(",")]
    return values


def uri_of(header_value: str) -> str:
    """'<sip:a@b;lr>;tag=1' -> 'sip:a@b;lr'."""
    return header_value.split("<", 1)[1].split(">", 1)[0]


@dataclass
class Dialog:
    """A call set up by hand: what an in-dialog request needs."""

    sock: socket.socket
    call_id: str
    from_tag: str
    to_uri: str
    to_tag: str
    contact: str  # the far end's Contact: the Request-URI of in-dialog requests
    routes: tuple[str, ...]  # the route set, from Record-Route (reversed for a caller)

    def request(self, method: str, ruri: str | None = None, cseq: int = 2) -> Request:
        return Request(
            method,
            ruri or self.contact,
            to_uri=self.to_uri,
            to_tag=self.to_tag,
            from_tag=self.from_tag,
            call_id=self.call_id,
            cseq=cseq,
            routes=self.routes,
        )

    def send(
        self, request: Request, host: str, port: int, *, timeout_s: float = 3.0
    ) -> bytes | None:
        request.local_host, request.local_port = self.sock.getsockname()
        return final_response(
            self.sock,
            request.encode(),
            host,
            port,
            timeout_s=timeout_s,
            cseq=f"{request.cseq} {request.method}",
        )


def open_dialog(host: str, port: int, user: str, *, ack: bool = True) -> tuple[Dialog, bytes]:
    """Sends an INVITE (PCMU offer, no RTP ever) and, once answered, optionally ACKs it.

    The caller owns the returned dialog's socket and closes it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    invite = Request("INVITE", f"sip:{user}@{host}:{port}", to_uri=f"sip:{user}@{host}")
    invite.local_host, invite.local_port = sock.getsockname()
    invite.body = PCMU_SDP.format(host="127.0.0.1", port=invite.local_port + 2)
    answer = final_response(sock, invite.encode(), host, port, timeout_s=5.0, cseq="1 INVITE")
    if answer is None or status_code(answer) != 200:
        sock.close()
        raise AssertionError(f"INVITE not answered: {answer!r}")
    to = next(h for h in headers(answer, "To"))
    dialog = Dialog(
        sock=sock,
        call_id=invite.call_id,
        from_tag=invite.from_tag,
        to_uri=uri_of(to),
        to_tag=to.split("tag=", 1)[1].split(";", 1)[0],
        contact=uri_of(headers(answer, "Contact")[0]),
        routes=tuple(uri_of(r) for r in reversed(headers(answer, "Record-Route"))),
    )
    if ack:
        request = dialog.request("ACK", cseq=1)
        request.local_host, request.local_port = sock.getsockname()
        sock.sendto(request.encode(), (host, port))
    return dialog, answer
