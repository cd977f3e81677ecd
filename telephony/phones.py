"""Supervisors' phones: the SIP endpoints a supervisor's audio leg rings.

A phone either registers at the edge with digest credentials (a softphone or desk phone
anywhere the edge can reach), or is dialled at a fixed URI (a PBX extension). Media workers
reach phones only through the edge, and the edge rings nothing else on a worker's behalf.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = ["PHONE_NAME", "SupervisorPhone", "phone_uri"]

PHONE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
# Printable, and nothing the edge script or a SIP header would read specially.
_PASSWORD = re.compile(r"[A-Za-z0-9!#%&()*+,./:;=?@\[\]^_{|}~-]{8,64}")
_FIXED_URI = re.compile(
    r"sip:(?P<user>[A-Za-z0-9._-]{1,32})@(?P<host>[0-9a-fA-F.:\[\]]+?)(?::(?P<port>\d{1,5}))?"
)


@dataclass(frozen=True, slots=True)
class SupervisorPhone:
    name: str  # the SIP user name the phone registers as (sip:NAME@edge)
    password: str | None = None  # digest password, for a phone that registers
    uri: str | None = None  # sip:user@address[:port], for a phone dialled where it is

    def __post_init__(self) -> None:
        if not PHONE_NAME.fullmatch(self.name):
            raise ValueError(f"phone name {self.name!r}: use 1-32 letters, digits, '.', '_' or '-'")
        if (self.password is None) == (self.uri is None):
            raise ValueError(
                f"phone {self.name}: give either a password (it registers) or a uri "
                "(it is dialled there), not both or neither"
            )
        if self.password is not None and not _PASSWORD.fullmatch(self.password):
            raise ValueError(
                f"phone {self.name}: the password must be 8-64 printable characters "
                "without spaces, quotes, '$', '<', '>' or backslashes"
            )
        if self.uri is not None:
            match = _FIXED_URI.fullmatch(self.uri)
            host = match["host"].strip("[]") if match else ""
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ValueError(
                    f"phone {self.name}: uri must look like sip:user@192.0.2.10:5060 "
                    "(an IP address: the edge resolves no names)"
                ) from None
            if match and match["port"] and not 0 < int(match["port"]) < 65536:
                raise ValueError(f"phone {self.name}: port out of range in {self.uri}")

    @property
    def registers(self) -> bool:
        return self.password is not None


def phone_uri(phone: SupervisorPhone, edge_host: str, edge_port: int) -> str:
    """What a media worker dials to ring `phone`: always the edge, which knows where it is."""
    return f"sip:{phone.name}@{edge_host}:{edge_port}"
