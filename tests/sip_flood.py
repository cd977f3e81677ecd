"""A SIP flooder: INVITEs as fast as asked from one source, for a load or abuse test.

Run it where the flood should come from: `ip netns exec NS python -m tests.sip_flood ...`.
Prints how many it sent.
"""

from __future__ import annotations

import argparse
import socket
import time

from tests.sip_raw import PCMU_SDP, Request


def flood(host: str, port: int, *, bind: str, rate: float, seconds: float) -> int:
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((bind, 0))
        sock.setblocking(False)
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * rate)
            while sent < due:
                invite = Request("INVITE", f"sip:100@{host}:{port}")
                invite.local_host, invite.local_port = sock.getsockname()
                invite.body = PCMU_SDP.format(host=bind, port=40000)
                try:
                    sock.sendto(invite.encode(), (host, port))
                except BlockingIOError:
                    pass
                sent += 1
            try:  # drain whatever answers come back
                while sock.recv(65535):
                    pass
            except (BlockingIOError, ConnectionRefusedError):
                pass
            time.sleep(0.002)
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--bind", required=True)
    parser.add_argument("--rate", type=float, default=500.0, help="INVITEs per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(flood(args.host, args.port, bind=args.bind, rate=args.rate, seconds=args.seconds))


if __name__ == "__main__":
    main()
