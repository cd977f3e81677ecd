"""The worker's command inbox and its client, over real Unix sockets and a real Redis."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import stat
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis

from telephony.commands import (
    Command,
    CommandError,
    Hangup,
    Hold,
    Reply,
    SetMode,
    decode_reply,
    encode,
)
from telephony.inbox import (
    CommandTimeout,
    RedisInbox,
    RedisTarget,
    UnixInbox,
    WorkerUnreachable,
    commands_key,
    inbox_path,
    replies_key,
    send_command,
)
from telephony.phases import Mode
from tests.jobs_support import REDIS_URL, require_redis

CALL = "0123456789abcdef0123456789abcdef"


async def _echo(command: Command) -> Reply:
    return Reply.success(command.command_id, {"type": command.TYPE, "call_id": command.call_id})


def _run_with_inbox(
    path: Path,
    handler: Callable[[Command], Awaitable[Reply]],
    body: Callable[[UnixInbox], Awaitable[None]],
) -> None:
    async def main() -> None:
        inbox = UnixInbox(path)
        await inbox.start(handler)
        try:
            await asyncio.wait_for(body(inbox), 5)
        finally:
            await inbox.close()

    asyncio.run(main())


# --- Unix sockets ----------------------------------------------------------------------------


def test_unix_request_and_reply(tmp_path: Path) -> None:
    path = inbox_path(tmp_path / "run", 2)
    assert path.name == "worker-2.cmd.sock"

    async def body(inbox: UnixInbox) -> None:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        command = SetMode(call_id=CALL, actor="supervisor:7", mode=Mode.BARGE)
        reply = await send_command(path, command)
        assert reply == Reply.success(command.command_id, {"type": "set_mode", "call_id": CALL})
        assert inbox.handled == 1

    _run_with_inbox(path, _echo, body)
    assert not path.exists(), "the socket file is removed on close"


def test_unix_malformed_lines_get_error_replies_and_the_connection_stays_usable(
    tmp_path: Path,
) -> None:
    path = inbox_path(tmp_path, 0)

    async def body(inbox: UnixInbox) -> None:
        reader, writer = await asyncio.open_unix_connection(path)

        async def ask(line: bytes) -> Reply:
            writer.write(line + b"\n")
            await writer.drain()
            return decode_reply((await reader.readline()).rstrip(b"\n"))

        garbage = await ask(b"{this is not json")
        assert (garbage.ok, garbage.command_id) == (False, "")
        assert garbage.error is not None and "not JSON" in garbage.error

        raw = json.loads(encode(Hold(call_id=CALL, actor="system", command_id="known-id")))
        raw["type"] = "hold_forever"
        unknown = await ask(json.dumps(raw).encode())
        assert (unknown.ok, unknown.command_id) == (False, "known-id")
        assert unknown.error is not None and "unknown command type" in unknown.error

        too_long = await ask(b"x" * 40_000)
        assert too_long.error is not None and "over the limit" in too_long.error

        good = Hold(call_id=CALL, actor="system")
        assert (await ask(encode(good))).ok
        writer.close()
        assert (inbox.refused, inbox.handled) == (3, 1)

    _run_with_inbox(path, _echo, body)


def test_unix_handler_exception_becomes_an_error_reply(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = inbox_path(tmp_path, 0)

    async def explode(command: Command) -> Reply:
        if isinstance(command, Hangup):
            raise RuntimeError("bridge gone")
        return await _echo(command)

    async def body(inbox: UnixInbox) -> None:
        hangup = Hangup(call_id=CALL, actor="system", reason="test")
        reply = await send_command(path, hangup)
        assert (reply.ok, reply.command_id) == (False, hangup.command_id)
        assert reply.error == "the worker failed to run hangup: RuntimeError"
        assert (await send_command(path, Hold(call_id=CALL, actor="system"))).ok
        assert inbox.failed == 1

    with caplog.at_level(logging.ERROR, logger="telephony.inbox"):
        _run_with_inbox(path, explode, body)
    [record] = [r for r in caplog.records if r.getMessage() == "command handler failed"]
    assert record.__dict__["call_id"] == CALL
    assert record.__dict__["command"] == "hangup"
    assert record.exc_info is not None


def test_unix_serves_many_clients_at_once(tmp_path: Path) -> None:
    path = inbox_path(tmp_path, 0)

    async def slow(command: Command) -> Reply:
        await asyncio.sleep(0.2)
        return await _echo(command)

    async def body(inbox: UnixInbox) -> None:
        commands = [Hold(call_id=f"call-{n}", actor="system") for n in range(20)]
        started = time.monotonic()
        replies = await asyncio.gather(*(send_command(path, c) for c in commands))
        assert time.monotonic() - started < 1.5, "twenty 0.2 s commands ran one after another"
        assert [r.command_id for r in replies] == [c.command_id for c in commands]
        assert [r.data["call_id"] for r in replies] == [f"call-{n}" for n in range(20)]

    _run_with_inbox(path, slow, body)


def test_unix_unreachable_worker_is_named(tmp_path: Path) -> None:
    missing = inbox_path(tmp_path, 9)
    with pytest.raises(WorkerUnreachable, match=f"^no command inbox at {missing}"):
        asyncio.run(send_command(missing, Hold(call_id=CALL, actor="system")))

    stale = tmp_path / "worker-8.cmd.sock"
    left = socket.socket(socket.AF_UNIX)
    left.bind(str(stale))
    left.close()  # the file stays, as after a crash
    with pytest.raises(WorkerUnreachable, match=f"^nothing listens at {stale}"):
        asyncio.run(send_command(stale, Hold(call_id=CALL, actor="system")))


def test_unix_stale_socket_is_replaced_and_a_live_one_is_not(tmp_path: Path) -> None:
    path = inbox_path(tmp_path, 0)
    left = socket.socket(socket.AF_UNIX)
    left.bind(str(path))
    left.close()

    async def body(inbox: UnixInbox) -> None:
        assert (await send_command(path, Hold(call_id=CALL, actor="system"))).ok
        with pytest.raises(OSError, match="served by a running process"):
            await UnixInbox(path).start(_echo)
        assert (await send_command(path, Hold(call_id=CALL, actor="system"))).ok

    _run_with_inbox(path, _echo, body)


def test_unix_worker_that_does_not_answer_times_out(tmp_path: Path) -> None:
    path = inbox_path(tmp_path, 0)

    async def never(command: Command) -> Reply:
        await asyncio.Event().wait()
        raise AssertionError

    async def body(inbox: UnixInbox) -> None:
        started = time.monotonic()
        with pytest.raises(CommandTimeout, match="did not answer hold") as caught:
            await send_command(path, Hold(call_id=CALL, actor="system"), timeout_s=0.3)
        assert 0.25 < time.monotonic() - started < 1.0
        assert caught.value.delivered is None  # sent: it may still run

    _run_with_inbox(path, never, body)


# --- Redis -----------------------------------------------------------------------------------


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of the test's own, so parallel runs never meet; its keys go afterwards."""
    require_redis()
    prefix = f"parley-test-{secrets.token_hex(4)}"
    yield prefix
    with redis.Redis.from_url(REDIS_URL) as client:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)


def _run_redis(
    inbox: RedisInbox,
    handler: Callable[[Command], Awaitable[Reply]],
    body: Callable[[], Awaitable[None]],
) -> None:
    async def main() -> None:
        await inbox.start(handler)
        try:
            await asyncio.wait_for(body(), 8)
        finally:
            await inbox.close()

    asyncio.run(main())


def test_redis_round_trip(prefix: str) -> None:
    inbox = RedisInbox(REDIS_URL, 3, prefix=prefix)
    target = RedisTarget(REDIS_URL, 3, prefix=prefix)
    seen: list[Command] = []

    async def record(command: Command) -> Reply:
        seen.append(command)
        return await _echo(command)

    async def body() -> None:
        command = Hangup(call_id=CALL, actor="api:admin", reason="admin ended it")
        reply = await send_command(target, command)
        assert reply == Reply.success(command.command_id, {"type": "hangup", "call_id": CALL})
        assert seen == [command]

    _run_redis(inbox, record, body)
    with redis.Redis.from_url(REDIS_URL) as client:
        assert list(client.scan_iter(match=f"{prefix}:*")) == []  # the reply was taken


def test_redis_malformed_command_with_an_id_gets_an_error_reply(prefix: str) -> None:
    inbox = RedisInbox(REDIS_URL, 0, prefix=prefix)

    def push_and_wait() -> Reply:
        with redis.Redis.from_url(REDIS_URL) as client:
            client.rpush(commands_key(0, prefix=prefix), b"not json at all")
            bad = json.loads(encode(Hold(call_id=CALL, actor="system", command_id="bad-1")))
            bad["extra"] = 1
            client.rpush(commands_key(0, prefix=prefix), json.dumps(bad))
            popped = client.blpop([replies_key("bad-1", prefix=prefix)], timeout=3)
        assert popped is not None
        return decode_reply(popped[1])

    async def body() -> None:
        reply = await asyncio.to_thread(push_and_wait)
        assert (reply.ok, reply.command_id) == (False, "bad-1")
        assert reply.error is not None and "unknown fields: 'extra'" in reply.error
        assert inbox.refused == 2

    _run_redis(inbox, _echo, body)


def test_redis_wrong_type_key_is_survived(prefix: str) -> None:
    key = commands_key(1, prefix=prefix)
    with redis.Redis.from_url(REDIS_URL) as client:
        client.set(key, "not a list")
    inbox = RedisInbox(REDIS_URL, 1, prefix=prefix, retry_initial_s=0.05, retry_max_s=0.2)
    target = RedisTarget(REDIS_URL, 1, prefix=prefix)

    async def body() -> None:
        while inbox.errors < 2:
            await asyncio.sleep(0.02)
        with pytest.raises(
            WorkerUnreachable, match=r"could not queue hold for worker 1.*WRONGTYPE"
        ):
            await send_command(target, Hold(call_id=CALL, actor="system"))
        with redis.Redis.from_url(REDIS_URL) as client:
            client.delete(key)
        assert (await send_command(target, Hold(call_id=CALL, actor="system"))).ok

    _run_redis(inbox, _echo, body)


def test_redis_command_nobody_takes_is_withdrawn_on_timeout(prefix: str) -> None:
    target = RedisTarget(REDIS_URL, 5, prefix=prefix)
    with pytest.raises(CommandTimeout, match="withdrawn, it will not run") as caught:
        asyncio.run(send_command(target, Hold(call_id=CALL, actor="system"), timeout_s=0.2))
    assert caught.value.delivered is False
    with redis.Redis.from_url(REDIS_URL) as client:
        assert client.llen(commands_key(5, prefix=prefix)) == 0


def test_redis_tuple_target_and_unreachable_redis() -> None:
    with pytest.raises(WorkerUnreachable, match=r"at Redis redis://:\*\*\*@127.0.0.1:1/0"):
        asyncio.run(
            send_command(("redis://:secret@127.0.0.1:1/0", 0), Hold(call_id=CALL, actor="system"))
        )


def test_client_refuses_a_bad_command_before_sending(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="call_id must be"):
        asyncio.run(send_command(tmp_path / "x.sock", Hold(call_id="a b", actor="system")))
