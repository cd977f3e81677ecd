"""Caller hosts in their own network namespaces, for tests and benchmarks: a veth pair per
host, addressed from 198.18.0.0/15 (the benchmarking range), so calls cross a real interface
as from another machine. Needs root (`ip netns`)."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass


class NetnsUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class CallerHost:
    name: str  # the namespace
    address: str  # the caller's address inside it
    gateway: str  # the platform host's address on the same link

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def add_address(self, last_octet: int) -> str:
        """A second address for this host (a second source on the same machine)."""
        address = self.address.rsplit(".", 1)[0] + f".{last_octet}"
        _ip("netns", "exec", self.name, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
        return address


def _ip(*args: str) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NetnsUnavailable(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def _used_subnets() -> set[int]:
    used = set()
    for line in _ip("-o", "-4", "addr").splitlines():
        for part in line.split():
            if part.startswith("198.18."):
                used.add(int(part.split(".")[2]))
    return used


@contextlib.contextmanager
def caller_host(tag: str = "c") -> Iterator[CallerHost]:
    """A namespace with one address, routed to the platform host; removed afterwards."""
    if os.geteuid() != 0:
        raise NetnsUnavailable("network namespaces need root (ip netns)")
    used = _used_subnets()
    subnet = random.choice([n for n in range(1, 255) if n not in used])
    suffix = f"{tag}{os.getpid() % 10000}{subnet}"
    name, host_if = f"parley-{suffix}", f"pv{suffix}"[:15]
    gateway, address = f"198.18.{subnet}.1", f"198.18.{subnet}.2"
    _ip("netns", "add", name)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", name)
        _ip("addr", "add", f"{gateway}/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        inside = ("netns", "exec", name, "ip")
        _ip(*inside, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip(*inside, "link", "set", "eth0", "up")
        _ip(*inside, "link", "set", "lo", "up")
        _ip(*inside, "route", "add", "default", "via", gateway)
        yield CallerHost(name, address, gateway)
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
