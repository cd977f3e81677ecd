"""Who answers a line's calls: a registry of session adapters, chosen by the line's `agent`.

- `embedded`: Parley's own engine servers (Realtime protocol over WebSocket, 16 kHz), several
  if configured: a call moves to another when its engine dies (agent/failover.py);
- `realtime`: a model that speaks OpenAI's Realtime API, GA protocol (GPT-realtime; a second
  Parley engine server also speaks it), at 24 kHz, with the shared tools (agent/tools.py);
- `gemini-live`: Google's Gemini Live API (BidiGenerateContent), 16 kHz up and 24 kHz down,
  with the same tools, resumed on a new connection when the server says goAway;
- `echo`, `echo-delayed`: the echo test session (plays the caller back), for trying the phone
  path without a model.

Each adapter is built from a SessionTarget: the engine's URL and what the engine should know,
and for a hosted model its URL, model name, and the name of the environment variable that holds
its API key (read when the session starts; the key itself is never in settings or logs).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.echo import EchoSession
from agent.failover import EnginePool, FailoverSession
from agent.gemini_live import URL as GEMINI_URL
from agent.gemini_live import GeminiLiveSession, GeminiOptions
from agent.openai_realtime import OpenAIOptions, OpenAIRealtimeSession
from agent.remote import RealtimeSession
from agent.session import DuplexSession, SessionError
from agent.tools import Tools, engine_lookup
from agent.turn_source import EngineTurns


class UnknownProfile(ValueError):
    pass


OPENAI_URL = "wss://api.openai.com/v1/realtime"


@dataclass(frozen=True, slots=True)
class ModelTarget:
    """A hosted model: where it is, which one, and where its key is."""

    url: str = ""
    model: str = ""
    api_key_env: str = ""  # the name of an environment variable, never the key
    voice: str = ""
    turn_detection: str = "server_vad"
    eagerness: str = "auto"
    transcription_model: str = ""
    instructions: str = ""

    def api_key(self) -> str:
        """The key, from the environment of the process that opens the session."""
        if not self.api_key_env:
            return ""
        key = os.environ.get(self.api_key_env, "").strip()
        if not key:
            raise SessionError(
                f"the API key is missing: environment variable {self.api_key_env} is not set "
                "for the media workers",
                retryable=False,
            )
        return key


@dataclass(frozen=True, slots=True)
class SessionTarget:
    """Where a line's sessions go: the engine's URL and what the engine should know."""

    engine_url: str
    engine_token: str = ""  # sent as a Bearer token to Parley's engine server
    line: str = ""
    knowledge_base: str = "sample"
    agent_backchannels: bool = False
    model: ModelTarget = field(default_factory=ModelTarget)
    # A media worker's engine servers (health and load): an embedded line's call goes to
    # one of them and moves to another if its engine dies. None: `engine_url` alone.
    engines: EnginePool | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Adapter:
    name: str
    summary: str  # for settings errors and `parley --help`
    build: Callable[[SessionTarget], DuplexSession]
    uses_engine: bool = False  # its sessions go to Parley's engine server
    hosted: bool = False  # a hosted model: `defaults` say which one, where, and its key's name
    defaults: ModelTarget = field(default_factory=ModelTarget)


def _embedded(target: SessionTarget) -> DuplexSession:
    def at(url: str, greet: bool) -> RealtimeSession:
        return RealtimeSession(
            url,
            headers=engine_headers(target.engine_token),
            metadata={
                "line": target.line,
                "knowledge_base": target.knowledge_base,
                "agent_backchannels": "true" if target.agent_backchannels else "false",
                "greet": "true" if greet else "false",
            },
        )

    if target.engines is None:
        return at(target.engine_url, True)
    return FailoverSession(target.engines, at)


def _realtime(target: SessionTarget) -> DuplexSession:
    model = target.model
    defaults = OpenAIOptions()
    options = OpenAIOptions(
        model=model.model or defaults.model,
        voice=model.voice or defaults.voice,
        turn_detection=model.turn_detection,
        eagerness=model.eagerness,
        transcription_model=model.transcription_model or defaults.transcription_model,
    )
    turns = None
    if model.turn_detection == "parley":
        # Parley's engine decides the caller's turns beside the model (agent/turn_source.py).
        url = (target.engines.choose() if target.engines else None) or target.engine_url
        turns = EngineTurns(
            url, headers=engine_headers(target.engine_token), knowledge_base=target.knowledge_base
        )
    return OpenAIRealtimeSession(
        model.url or OPENAI_URL,
        api_key=model.api_key(),
        options=options,
        instructions=model.instructions,
        tools=_tools(target),
        turns=turns,
    )


def _tools(target: SessionTarget) -> Tools:
    """A hosted model's tools; lookup answered by the engine from the line's knowledge base."""
    if not target.engine_url:
        return Tools()
    return Tools(
        lookup=engine_lookup(target.engine_url, target.engine_token, target.knowledge_base)
    )


def _gemini_live(target: SessionTarget) -> DuplexSession:
    model = target.model
    defaults = GeminiOptions()
    options = GeminiOptions(
        model=model.model or defaults.model, voice=model.voice or defaults.voice
    )
    return GeminiLiveSession(
        model.url or GEMINI_URL,
        api_key=model.api_key(),
        options=options,
        instructions=model.instructions,
        tools=_tools(target),
    )


ADAPTERS: dict[str, Adapter] = {
    adapter.name: adapter
    for adapter in (
        Adapter("embedded", "Parley's own engine server", _embedded, uses_engine=True),
        Adapter(
            "realtime",
            "a model on OpenAI's Realtime API (GPT-realtime)",
            _realtime,
            hosted=True,
            defaults=ModelTarget(OPENAI_URL, "gpt-realtime", "OPENAI_API_KEY", "marin"),
        ),
        Adapter(
            "gemini-live",
            "Google's Gemini Live API",
            _gemini_live,
            hosted=True,
            defaults=ModelTarget(
                GEMINI_URL, "gemini-live-2.5-flash-preview", "GEMINI_API_KEY", "Kore"
            ),
        ),
        Adapter("echo", "plays the caller's audio back (no model)", lambda _: EchoSession()),
        # Half a second of delay leaves agent audio queued, so a flush has something to cut.
        Adapter(
            "echo-delayed", "the echo, half a second late", lambda _: EchoSession(delay_ms=500)
        ),
    )
}
PROFILES = tuple(ADAPTERS)


def engine_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def adapter(profile: str) -> Adapter:
    try:
        return ADAPTERS[profile]
    except KeyError:
        raise UnknownProfile(
            f"unknown agent profile {profile!r}; known: {', '.join(PROFILES)}"
        ) from None


def needs_server(profile: str) -> bool:
    """Whether sessions of this profile depend on Parley's engine server being up."""
    return adapter(profile).uses_engine


def create_session(profile: str, target: SessionTarget) -> DuplexSession:
    """A new session for one call. Raises UnknownProfile for a name no line may use, and
    SessionError when the adapter cannot be set up (its API key missing)."""
    return adapter(profile).build(target)
