"""Trunks: who may send calls to the edge, with what credentials, to which numbers, how fast.

Pure data and checks; `telephony.edge` turns them into the Kamailio script. A request from a
source no trunk lists is refused (403) unless it comes from an `anonymous` source range.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

SrtpPolicy = Literal["off", "optional", "required"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
# What may be dialled: digits, '+', '*', '#'; a trailing '*' in a pattern means "any suffix".
_NUMBER_PATTERN = re.compile(r"^\+?[0-9#*]{1,32}$")
# Digest user names and passwords end up inside the generated script's strings, where a
# quote, a backslash or a '$' (a Kamailio variable) would change their meaning.
_CREDENTIAL = re.compile(r"^[A-Za-z0-9._~!%^&*()+=,:;@?/{}\[\]|<>'`-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Trunk:
    name: str
    sources: tuple[str, ...] = ()  # CIDRs; empty: any source, credentials required
    username: str | None = None
    password: str | None = None
    numbers: tuple[str, ...] = ()  # empty: any number
    max_calls: int | None = None
    calls_per_s: int | None = None
    srtp: SrtpPolicy = "optional"

    @property
    def authenticates(self) -> bool:
        return self.username is not None


def normalize_sources(sources: Iterable[str]) -> tuple[str, ...]:
    """CIDRs in canonical form ('198.18.0.7' -> '198.18.0.7/32'); ValueError on garbage."""
    canonical = []
    for source in sources:
        try:
            canonical.append(str(ipaddress.ip_network(source.strip(), strict=False)))
        except ValueError:
            raise ValueError(f"{source!r} is not an IP address or CIDR range") from None
    return tuple(canonical)


def check_trunk(trunk: Trunk) -> None:
    """Raises ValueError saying what is wrong with a trunk's settings."""
    if not _NAME.match(trunk.name):
        raise ValueError(
            f"trunk name {trunk.name!r}: use 1-32 letters, digits, '-' or '_', starting with "
            "a letter or digit"
        )
    normalize_sources(trunk.sources)
    if (trunk.username is None) != (trunk.password is None):
        raise ValueError(f"trunk {trunk.name}: set both username and password, or neither")
    for value in (trunk.username, trunk.password):
        if value is not None and not _CREDENTIAL.match(value):
            raise ValueError(
                f"trunk {trunk.name}: username and password must be 1-64 printable ASCII "
                "characters other than spaces, quotes, backslashes and '$'"
            )
    if not trunk.sources and not trunk.authenticates:
        raise ValueError(
            f"trunk {trunk.name} has neither sources nor credentials: anyone could use it"
        )
    for number in trunk.numbers:
        if not _NUMBER_PATTERN.match(number):
            raise ValueError(
                f"trunk {trunk.name}: number {number!r} may hold only digits, '+', '#' and a "
                "trailing '*' (any suffix)"
            )
    for limit in ("max_calls", "calls_per_s"):
        value = getattr(trunk, limit)
        if value is not None and value < 1:
            raise ValueError(f"trunk {trunk.name}: {limit} must be at least 1")


def check_trunks(trunks: Iterable[Trunk]) -> None:
    names: set[str] = set()
    for trunk in trunks:
        check_trunk(trunk)
        if trunk.name in names:
            raise ValueError(f"two trunks are named {trunk.name}")
        names.add(trunk.name)


def numbers_regex(numbers: Iterable[str]) -> str | None:
    """A POSIX extended regex matching the dialled user part, or None for "any number".

    Written into the Kamailio script, so it holds only what `_NUMBER_PATTERN` admits.
    """
    alternatives = []
    for number in numbers:
        if not _NUMBER_PATTERN.match(number):
            raise ValueError(f"not a number pattern: {number!r}")
        prefix = number.endswith("*")
        body = number[:-1] if prefix else number
        escaped = "".join(f"[{c}]" if c in "+*#" else c for c in body)
        alternatives.append(escaped + (".*" if prefix else ""))
    if not alternatives:
        return None
    return "^(" + "|".join(alternatives) + ")$"
