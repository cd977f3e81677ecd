"""Builds a duplex session from a line's agent profile name.

- `embedded`: Parley's own engine server (Realtime protocol over WebSocket, 16 kHz);
- `echo`, `echo-delayed`: the echo test session (plays the caller back), for trying the phone
  path without a model.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.echo import EchoSession
from agent.remote import RealtimeSession
from agent.session import DuplexSession


class UnknownProfile(ValueError):
    pass


PROFILES = ("embedded", "echo", "echo-delayed")


@dataclass(frozen=True, slots=True)
class SessionTarget:
    """Where a line's sessions go: the engine's URL and what the engine should know."""

    engine_url: str
    line: str = ""
    knowledge_base: str = "sample"
    agent_backchannels: bool = False


def needs_server(profile: str) -> bool:
    """Whether sessions of this profile depend on a model server being up."""
    return profile == "embedded"


def create_session(profile: str, target: SessionTarget) -> DuplexSession:
    """A new session for one call. Raises UnknownProfile for a name no line may use."""
    if profile == "embedded":
        return RealtimeSession(
            target.engine_url,
            metadata={
                "line": target.line,
                "knowledge_base": target.knowledge_base,
                "agent_backchannels": "true" if target.agent_backchannels else "false",
            },
        )
    if profile == "echo":
        return EchoSession()
    if profile == "echo-delayed":
        # Half a second of delay leaves agent audio queued, so a flush has something to cut.
        return EchoSession(delay_ms=500)
    raise UnknownProfile(f"unknown agent profile {profile!r}; known: {', '.join(PROFILES)}")
