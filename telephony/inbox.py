"""A command inbox (a media worker's, or the escalation service's), and its client.

Two carriers behind one `Inbox` protocol, peers rather than special cases:

- `UnixInbox`: a Unix stream socket in the run directory (`inbox_path`), mode 0600. Each line
  a client writes is one command (telephony.commands); the inbox answers each with one reply
  line, in order. A line it cannot read gets an error reply and the connection stays usable.
- `RedisInbox`: the list `parley:commands:<inbox>` (`worker-<N>` for a media worker); the reply
  goes to the list `parley:replies:<command_id>`, which expires after a minute.

What travels is set by a `Codec`: a worker's call commands by default (`CALL_COMMANDS`); the
escalation service passes its own (escalation.commands). Replies are `telephony.commands.Reply`
for every inbox.

The worker gives `start` its handler. Commands are handled one at a time per connection (Unix)
or per worker (Redis), so two commands for a call run in the order they were sent; a handler
should hand the work to the pjsua2 thread and answer, not wait for the far end. Nothing a client
sends, and nothing the handler raises, stops the inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis

from telephony import commands
from telephony.commands import (
    MAX_MESSAGE_BYTES,
    CommandError,
    Reply,
    decode_reply,
    encode_reply,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Codec:
    """How one inbox's commands travel. `decode` is the boundary: it raises CommandError for
    anything malformed; `encode` raises it for a command `decode` would refuse. A command has
    `TYPE` and `command_id` (and `call_id` where it is about a call)."""

    decode: Callable[[bytes | str], Any]
    encode: Callable[[Any], bytes]


CALL_COMMANDS = Codec(commands.decode, commands.encode)  # a media worker's

Handler = Callable[[Any], Awaitable[Reply]]  # takes what the inbox's codec decodes

DEFAULT_PREFIX = "parley"
REPLY_TTL_S = 60
MAX_LINE_BYTES = MAX_MESSAGE_BYTES + 1  # the message and its newline
_BLPOP_S = 1.0  # how long one BLPOP waits; the consumer loops


class Inbox(Protocol):
    async def start(self, handler: Handler) -> None: ...

    async def close(self) -> None: ...


class InboxError(Exception):
    """A command could not be delivered, or its reply did not come."""


class WorkerUnreachable(InboxError, ConnectionError):
    """Nothing takes commands at the target: the worker is not running, or the address is
    wrong. The command was not delivered."""


class CommandTimeout(InboxError, TimeoutError):
    """The worker did not answer in time. `delivered` is False where the command is known not
    to have been taken (it will never run), None where it may still run."""

    def __init__(self, message: str, *, delivered: bool | None) -> None:
        super().__init__(message)
        self.delivered = delivered


def inbox_path(run_dir: Path, inbox: int | str) -> Path:
    return run_dir / f"{inbox_name(inbox)}.cmd.sock"


def inbox_name(inbox: int | str) -> str:
    """A worker's index names its inbox `worker-<N>`; another process's inbox its own name."""
    return f"worker-{inbox}" if isinstance(inbox, int) else inbox


def commands_key(inbox: int | str, *, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}:commands:{inbox_name(inbox)}"


def replies_key(command_id: str, *, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}:replies:{command_id}"


# --- Unix sockets ----------------------------------------------------------------------------


@dataclass(slots=True)
class UnixListener:
    """A listening, non-blocking Unix stream socket and the file it is bound to."""

    sock: socket.socket
    path: Path
    inode: int

    def close(self) -> None:
        """Closes the socket and removes its file, unless another process has replaced it."""
        self.sock.close()
        with contextlib.suppress(OSError):
            if os.lstat(self.path).st_ino == self.inode:
                self.path.unlink()


def bind_unix(path: Path, *, backlog: int = 64) -> UnixListener:
    """Listens at `path`, a socket file only its owner may connect to.

    A socket file left by a process that is gone is replaced; one that a live process still
    serves is not (two workers with one index is a configuration error), nor is a file that is
    not a socket.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Before bind, so the file never exists with a wider mode (Linux gives the file the
        # socket inode's mode); chmod after, for systems that do not.
        os.fchmod(sock.fileno(), 0o600)
        sock.bind(str(path))
        os.chmod(path, 0o600)
        inode = os.lstat(path).st_ino
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return UnixListener(sock, path, inode)


def _remove_stale(path: Path) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket; remove it or fix run_dir")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)  # nobody listens: left by a process that is gone
        return
    except OSError:
        pass  # a listener too busy to accept counts as live
    finally:
        probe.close()
    raise OSError(
        errno.EADDRINUSE,
        f"{path} is served by a running process (another worker with the same index?)",
    )


class LineTooLong(ValueError):
    """A line over the limit; it has been read and discarded."""


async def read_line(reader: asyncio.StreamReader, limit: int) -> bytes | None:
    """The next line with its newline; None at the end of the stream. A line longer than
    `limit` is read to its end and discarded, and raises LineTooLong, so the next line is
    whole. Give the reader a `limit` of at least this one."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError:
        return None  # a last line without its newline was never a whole request
    except asyncio.LimitOverrunError as error:
        await _discard_line(reader, error.consumed)
        raise LineTooLong(f"line over the limit of {limit - 1} bytes") from None
    if len(line) > limit:
        raise LineTooLong(f"line over the limit of {limit - 1} bytes")
    return line


async def _discard_line(reader: asyncio.StreamReader, consumed: int) -> None:
    while True:
        await reader.readexactly(consumed)
        try:
            await reader.readuntil(b"\n")
            return
        except asyncio.IncompleteReadError:
            return
        except asyncio.LimitOverrunError as error:
            consumed = error.consumed


class UnixInbox:
    """Serves commands on a Unix socket; any number of clients at once."""

    def __init__(self, path: Path, *, codec: Codec = CALL_COMMANDS) -> None:
        self.path = path
        self.codec = codec
        self.handled = 0  # commands given to the handler
        self.refused = 0  # lines that were not a command
        self.failed = 0  # commands whose handler raised
        self._handler: Handler | None = None
        self._listener: UnixListener | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[object]] = set()

    async def start(self, handler: Handler) -> None:
        self._handler = handler
        self._listener = bind_unix(self.path)
        self._server = await asyncio.start_unix_server(
            self._serve, sock=self._listener.sock, limit=MAX_LINE_BYTES
        )
        log.info("command inbox listening", extra={"inbox": str(self.path)})

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                try:
                    line = await read_line(reader, MAX_LINE_BYTES)
                except LineTooLong as error:
                    self.refused += 1
                    reply = Reply.failure("", f"bad command: {error}; send one JSON command a line")
                else:
                    if line is None:
                        return
                    reply = await self._answer(line)
                writer.write(_reply_line(reply))
                await writer.drain()
        except ConnectionError:
            pass  # the client went away; its command, if any, has run
        finally:
            self._connections.discard(task)
            writer.close()

    async def _answer(self, line: bytes) -> Reply:
        assert self._handler is not None
        try:
            command = self.codec.decode(line.rstrip(b"\r\n"))
        except CommandError as error:
            self.refused += 1
            _log_refused(error, inbox=str(self.path))
            return Reply.failure(error.command_id, f"bad command: {error}")
        self.handled += 1
        reply, failed = await _run(self._handler, command, inbox=str(self.path))
        self.failed += failed
        return reply


class RedisInbox:
    """Takes commands from the inbox's Redis list; answers on each command's reply list.

    Redis errors (down, or answering with an error) are logged and retried with backoff; a
    reply that could not be pushed is pushed first once Redis is back.
    """

    def __init__(
        self,
        redis_url: str,
        inbox: int | str,
        *,
        prefix: str = DEFAULT_PREFIX,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 5.0,
        codec: Codec = CALL_COMMANDS,
    ) -> None:
        self.redis_url = redis_url
        self.key = commands_key(inbox, prefix=prefix)
        self.prefix = prefix
        self.codec = codec
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.handled = 0
        self.refused = 0
        self.failed = 0
        self.errors = 0  # Redis errors met
        self._handler: Handler | None = None
        self._task: asyncio.Task[None] | None = None
        self._unsent: tuple[str, bytes] | None = None  # a reply Redis did not take
        self._closing = False

    async def start(self, handler: Handler) -> None:
        self._handler = handler
        self._task = asyncio.create_task(self._consume(), name=f"inbox {self.key}")
        log.info(
            "command inbox on Redis",
            extra={"inbox": self.key, "redis": display_url(self.redis_url)},
        )

    async def close(self) -> None:
        # The flag as well as the cancel: redis-py may turn a cancel that lands inside a
        # BLPOP into a timeout or connection error, which the loop would otherwise retry.
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _consume(self) -> None:
        backoff = self.retry_initial_s
        down_since: float | None = None
        client: aioredis.Redis | None = None
        try:
            while not self._closing:
                try:
                    if client is None:
                        client = _redis(self.redis_url, socket_timeout=_BLPOP_S + 5)
                    if self._unsent is not None:
                        await _push_reply(client, *self._unsent)
                        self._unsent = None
                    popped = await client.blpop([self.key], timeout=_BLPOP_S)
                    if down_since is not None:
                        log.info(
                            "command inbox: Redis answers again",
                            extra={"inbox": self.key, "outage_s": _since(down_since)},
                        )
                        down_since, backoff = None, self.retry_initial_s
                    if popped is not None:
                        await self._take(client, popped[1])
                except (redis.RedisError, OSError) as error:
                    task = asyncio.current_task()
                    if self._closing or (task is not None and task.cancelling()):
                        return
                    self.errors += 1
                    down_since = down_since or time.monotonic()
                    log.warning(
                        "command inbox: Redis failed; retrying",
                        extra={"inbox": self.key, "error": repr(error), "retry_s": backoff},
                    )
                    if client is not None:
                        with contextlib.suppress(Exception):
                            await client.aclose()
                        client = None
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.retry_max_s)
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def _take(self, client: aioredis.Redis, payload: bytes | str) -> None:
        assert self._handler is not None
        try:
            command = self.codec.decode(payload)
        except CommandError as error:
            self.refused += 1
            _log_refused(error, inbox=self.key)
            if not error.command_id:
                return  # nowhere to answer; the sender times out
            reply = Reply.failure(error.command_id, f"bad command: {error}")
        else:
            self.handled += 1
            reply, failed = await _run(self._handler, command, inbox=self.key)
            self.failed += failed
        self._unsent = (replies_key(reply.command_id, prefix=self.prefix), _reply_line(reply))
        await _push_reply(client, *self._unsent)
        self._unsent = None


async def _push_reply(client: aioredis.Redis, key: str, line: bytes) -> None:
    async with client.pipeline(transaction=True) as pipe:
        pipe.rpush(key, line.rstrip(b"\n"))
        pipe.expire(key, REPLY_TTL_S)
        await pipe.execute()


async def _run(handler: Handler, command: Any, *, inbox: str) -> tuple[Reply, int]:
    """The handler's reply, and 1 where it raised (the reply then says so)."""
    fields = {"inbox": inbox, "command": command.TYPE, "command_id": command.command_id}
    try:
        reply = await handler(command)
    except Exception as error:
        call_id = getattr(command, "call_id", None)
        log.exception("command handler failed", extra={**fields, "call_id": call_id})
        return Reply.failure(
            command.command_id,
            f"the worker failed to run {command.TYPE}: {type(error).__name__}",
        ), 1
    if reply.command_id != command.command_id:
        log.error("command handler answered with another command id", extra=fields)
        reply = Reply(command.command_id, reply.ok, reply.error, reply.data)
    return reply, 0


def _reply_line(reply: Reply) -> bytes:
    try:
        return encode_reply(reply) + b"\n"
    except CommandError as error:
        log.error(
            "command reply cannot be sent",
            extra={"command_id": reply.command_id, "error": str(error)},
        )
        failure = Reply.failure(reply.command_id, f"the reply could not be encoded: {error}")
        return encode_reply(failure) + b"\n"


def _log_refused(error: CommandError, *, inbox: str) -> None:
    log.warning(
        "command refused",
        extra={"inbox": inbox, "command_id": error.command_id, "error": str(error)},
    )


# --- the client ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """An inbox on Redis: worker `inbox`'s where it is an index, else the one so named."""

    redis_url: str
    inbox: int | str
    prefix: str = DEFAULT_PREFIX


Target = Path | str | RedisTarget | tuple[str, int]


async def send_command(
    target: Target, command: Any, *, timeout_s: float = 2.0, codec: Codec = CALL_COMMANDS
) -> Reply:
    """Sends `command` to the inbox at `target` and returns its reply.

    `target` is the path of an inbox socket (`inbox_path`), or `(redis_url, worker_index)`, or
    a RedisTarget. Raises WorkerUnreachable, CommandTimeout (see its `delivered`), InboxError
    where the carrier failed after the command was sent, and CommandError for a command that
    cannot be encoded or a reply that cannot be read.
    """
    if timeout_s <= 0:
        raise ValueError("timeout_s must be positive")
    payload = codec.encode(command)
    if isinstance(target, tuple):
        target = RedisTarget(*target)
    if isinstance(target, RedisTarget):
        reply = await _send_redis(target, command, payload, timeout_s)
    else:
        reply = await _send_unix(Path(target), command, payload, timeout_s)
    if reply.command_id not in (command.command_id, ""):
        raise CommandError(
            f"the worker answered command {reply.command_id}, not {command.command_id}"
        )
    return reply


async def _send_unix(path: Path, command: Any, payload: bytes, timeout_s: float) -> Reply:
    sent = False
    try:
        async with asyncio.timeout(timeout_s):
            try:
                reader, writer = await asyncio.open_unix_connection(path, limit=MAX_LINE_BYTES)
            except FileNotFoundError:
                raise WorkerUnreachable(
                    f"no command inbox at {path}: is its process running, with this run directory?"
                ) from None
            except ConnectionRefusedError:
                raise WorkerUnreachable(
                    f"nothing listens at {path}: the process that made it has stopped"
                ) from None
            try:
                writer.write(payload + b"\n")
                await writer.drain()
                sent = True
                line = await reader.readline()
            finally:
                writer.close()
    except InboxError:
        raise
    except TimeoutError:
        raise CommandTimeout(
            f"the worker at {path} did not answer {command.TYPE} {command.command_id} "
            f"within {timeout_s} s" + ("; it may still run" if sent else ""),
            delivered=None if sent else False,
        ) from None
    except ConnectionError as error:
        raise WorkerUnreachable(f"the connection to {path} failed: {error}") from None
    if not line.endswith(b"\n"):
        raise InboxError(
            f"the worker at {path} closed the connection before answering {command.TYPE} "
            f"{command.command_id}; it may have run"
        )
    return decode_reply(line.rstrip(b"\r\n"))


async def _send_redis(target: RedisTarget, command: Any, payload: bytes, timeout_s: float) -> Reply:
    where = display_url(target.redis_url)
    key = commands_key(target.inbox, prefix=target.prefix)
    client = _redis(target.redis_url, socket_timeout=timeout_s + 2)
    try:
        try:
            await client.rpush(key, payload)
        except (redis.RedisError, OSError) as error:
            raise WorkerUnreachable(
                f"could not queue {command.TYPE} for {_shown_inbox(target.inbox)} "
                f"at Redis {where}: {error}"
            ) from None
        reply_key = replies_key(command.command_id, prefix=target.prefix)
        try:
            popped = await client.blpop([reply_key], timeout=timeout_s)
            # Taken back if the worker has not taken it: a late command never runs.
            removed = await client.lrem(key, 1, payload.decode()) if popped is None else 0
        except (redis.RedisError, OSError) as error:
            raise InboxError(
                f"lost Redis {where} while waiting for the reply to {command.TYPE} "
                f"{command.command_id}; it may still run: {error}"
            ) from None
        if popped is None:
            raise CommandTimeout(
                f"{_shown_inbox(target.inbox)} did not answer {command.TYPE} "
                f"{command.command_id} within {timeout_s} s"
                + ("; withdrawn, it will not run" if removed else "; it may still run"),
                delivered=False if removed else None,
            )
        return decode_reply(popped[1])
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


def _shown_inbox(inbox: int | str) -> str:
    return f"worker {inbox}" if isinstance(inbox, int) else f"the {inbox} inbox"


def _redis(url: str, *, socket_timeout: float) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=socket_timeout)


def display_url(url: str) -> str:
    """`url` without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


def _since(start: float) -> float:
    return round(time.monotonic() - start, 1)
