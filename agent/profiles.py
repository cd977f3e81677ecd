"""Builds a duplex session from a line's agent profile name."""

from __future__ import annotations

from agent.echo import EchoSession
from agent.session import DuplexSession


class UnknownProfile(ValueError):
    pass


PROFILES = ("echo", "echo-delayed")


def create_session(profile: str) -> DuplexSession:
    """A new session for one call. Raises UnknownProfile for a name no line may use."""
    if profile == "echo":
        return EchoSession()
    if profile == "echo-delayed":
        # Half a second of delay leaves agent audio queued, so a flush has something to cut.
        return EchoSession(delay_ms=500)
    raise UnknownProfile(f"unknown agent profile {profile!r}; known: {', '.join(PROFILES)}")
