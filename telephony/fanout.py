"""Live call events: a worker's fan-out outlet, and the subscription that merges every worker's.

`FanoutOutlet` is an EventOutlet. `emit` only serializes the event and queues it (bounded,
dropping the oldest): one background thread does the sending, so a slow subscriber or a Redis
outage never holds up the pjsua2 thread. Where the events go is its sink:

- embedded: a Unix socket, run_dir/worker-<N>.events.sock (mode 0600), that any number of
  subscribers connect to; each gets `CallEvent.to_json()` lines from when it connects. Each
  subscriber has its own bounded queue, so one that does not read loses its own oldest events
  and holds back nobody else.
- Redis: PUBLISH of the same line to the channel "parley:live".

Live views are for now, not for the record: a subscriber gets what is emitted while it is
connected, and drops are counted, not replayed. The spool (telephony.events.JsonlOutlet, with
`TeeOutlet`) stays the durable record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import redis
import redis.asyncio as aioredis

from telephony.events import CallEvent, EventOutlet
from telephony.inbox import LineTooLong, bind_unix, display_url, read_line

log = logging.getLogger(__name__)

LIVE_CHANNEL = "parley:live"
MAX_EVENT_BYTES = 1 * 2**20  # a longer event is dropped (and logged) rather than sent
DEFAULT_MAX_QUEUED = 10_000  # events waiting, in the outlet and for each subscriber
_CHUNK_BYTES = 64 * 1024  # lines joined into one send
_LINE_LIMIT = MAX_EVENT_BYTES + 1  # an event and its newline
_RETRY_INITIAL_S = 0.1


def events_path(run_dir: Path, source: int | str) -> Path:
    """The socket a worker (by index) or another process (by name) serves its events on."""
    name = f"worker-{source}" if isinstance(source, int) else source
    return run_dir / f"{name}.events.sock"


class _Sink(Protocol):
    """Where the outlet's thread sends lines; `serve` runs in that thread until the queue
    closes, then releases what it holds (the queue's wake-up sockets too)."""

    sent: int  # lines handed on
    dropped: int  # lines lost on the way
    connected: int  # subscribers connected now, where the sink can tell

    def serve(self, queue: _LineQueue) -> None: ...


class FanoutOutlet:
    """An EventOutlet that sends events live; build it with `unix` or `redis`."""

    def __init__(self, sink: _Sink, *, name: str, max_queued: int = DEFAULT_MAX_QUEUED) -> None:
        self.name = name
        self._sink = sink
        self._queue = _LineQueue(max_queued)
        self._thread = threading.Thread(
            target=self._serve, name=f"parley-fanout-{name}", daemon=True
        )
        self._thread.start()

    @classmethod
    def unix(
        cls, run_dir: Path, source: int | str, *, max_queued: int = DEFAULT_MAX_QUEUED
    ) -> FanoutOutlet:
        """Serves run_dir/worker-<N>.events.sock for a worker's index, <name>.events.sock for
        another process's name (the escalation service's); raises OSError where it cannot
        listen."""
        path = events_path(run_dir, source)
        sink = _UnixSink(path, max_queued=max_queued)
        return cls(sink, name=path.name.removesuffix(".events.sock"), max_queued=max_queued)

    @classmethod
    def live(cls, redis_url: str | None, run_dir: Path, source: int | str) -> FanoutOutlet:
        """The process's live outlet: Redis when configured, else its socket in `run_dir`."""
        if redis_url:
            return cls.redis(redis_url)
        return cls.unix(run_dir, source)

    @classmethod
    def redis(
        cls,
        redis_url: str,
        *,
        channel: str = LIVE_CHANNEL,
        max_queued: int = DEFAULT_MAX_QUEUED,
        retry_max_s: float = 5.0,
    ) -> FanoutOutlet:
        sink = _RedisSink(redis_url, channel=channel, retry_max_s=retry_max_s)
        return cls(sink, name=channel, max_queued=max_queued)

    @property
    def subscribers(self) -> int:
        """Subscribers connected now (0 on Redis, which does not say)."""
        return self._sink.connected

    @property
    def dropped(self) -> int:
        return self._queue.dropped + self._sink.dropped

    def counters(self) -> dict[str, int]:
        """emitted: events given to `emit`; sent: lines handed to a subscriber (each counts)
        or to Redis; dropped: lines lost on the way (queue full, a subscriber behind, Redis
        down, an event too big or not JSON)."""
        return {
            "emitted": self._queue.put_count,
            "sent": self._sink.sent,
            "dropped": self.dropped,
            "subscribers": self._sink.connected,
        }

    def emit(self, event: CallEvent) -> None:
        try:
            line = (event.to_json() + "\n").encode()
        except (TypeError, ValueError) as error:  # a field that is not JSON: a bug upstream
            log.error(
                "call event is not JSON; not sent live",
                extra={"call_id": event.call_id, "kind": event.kind.value, "error": str(error)},
            )
            self._queue.refuse()
            return
        if len(line) > MAX_EVENT_BYTES:
            log.error(
                "call event too big to send live",
                extra={"call_id": event.call_id, "kind": event.kind.value, "bytes": len(line)},
            )
            self._queue.refuse()
            return
        self._queue.put(line)

    def close(self) -> None:
        self._queue.close()
        self._thread.join(timeout=5.0)

    def _serve(self) -> None:
        try:
            self._sink.serve(self._queue)
        except Exception:
            # Never expected; the outlet then drops what it is given rather than stop the worker.
            log.exception("live event fan-out stopped", extra={"outlet": self.name})


class TeeOutlet:
    """Emits each event to every outlet (the spool and the fan-out, say)."""

    def __init__(self, *outlets: EventOutlet) -> None:
        self.outlets = outlets

    def emit(self, event: CallEvent) -> None:
        for outlet in self.outlets:
            try:
                outlet.emit(event)
            except Exception:  # an outlet must not raise; one that does stops no other
                log.exception("event outlet failed", extra={"outlet": type(outlet).__name__})

    def close(self) -> None:
        for outlet in self.outlets:
            try:
                outlet.close()
            except Exception:
                log.exception(
                    "event outlet failed to close", extra={"outlet": type(outlet).__name__}
                )


class _LineQueue:
    """Lines from any thread to the outlet's one thread. `put` never blocks: at `max_queued`
    the oldest line goes. The read end of a socket pair wakes the thread's selector."""

    def __init__(self, max_queued: int) -> None:
        self.max_queued = max_queued
        self.put_count = 0
        self.dropped = 0
        self.closed = False
        self._lines: deque[bytes] = deque()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._signalled = False
        self._drop_logged = False
        self._closing = threading.Event()

    def fileno(self) -> int:
        return self._wake_r.fileno()

    def put(self, line: bytes) -> None:
        with self._lock:
            self.put_count += 1
            if self.closed:
                self.dropped += 1
                return
            if len(self._lines) >= self.max_queued:
                self._lines.popleft()
                self.dropped += 1
                if not self._drop_logged:
                    self._drop_logged = True
                    log.warning("live events queue full; dropping the oldest")
            self._lines.append(line)
            self._wake()

    def refuse(self) -> None:
        """Counts a line that could not be made."""
        with self._lock:
            self.put_count += 1
            self.dropped += 1

    def take(self) -> list[bytes]:
        with self._lock:
            with contextlib.suppress(BlockingIOError):
                while self._wake_r.recv(4096):
                    pass
            self._signalled = False
            lines = list(self._lines)
            self._lines.clear()
            if lines:
                self._drop_logged = False
            return lines

    def wait(self, timeout_s: float) -> None:
        """Until a line is queued, the queue closes, or `timeout_s` passes."""
        select.select([self._wake_r], [], [], timeout_s)

    def pause(self, timeout_s: float) -> None:
        """Until the queue closes or `timeout_s` passes."""
        self._closing.wait(timeout_s)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._closing.set()
            self._wake()

    def release(self) -> None:
        """Called by the thread once it is done."""
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        if not self._signalled:
            self._signalled = True
            with contextlib.suppress(BlockingIOError):
                self._wake_w.send(b"\0")


@dataclass(slots=True, eq=False)
class _Subscriber:
    sock: socket.socket
    lines: deque[bytes]
    head: memoryview | None = None  # a chunk being sent; never dropped part-way
    dropped: int = 0


class _UnixSink:
    def __init__(self, path: Path, *, max_queued: int) -> None:
        self.path = path
        self.max_queued = max_queued
        self.sent = 0
        self.dropped = 0
        self.connected = 0
        self._listener = bind_unix(path)  # here, so a socket that cannot be made fails start-up

    def serve(self, queue: _LineQueue) -> None:
        selector = selectors.DefaultSelector()
        listener = self._listener.sock
        selector.register(listener, selectors.EVENT_READ)
        selector.register(queue.fileno(), selectors.EVENT_READ)
        subscribers: dict[int, _Subscriber] = {}
        try:
            while not queue.closed:
                for key, mask in selector.select():
                    if key.fileobj is listener:
                        self._accept(listener, selector, subscribers)
                    elif key.fileobj == queue.fileno():
                        self._deliver(queue.take(), selector, subscribers)
                    else:
                        subscriber = subscribers.get(key.fd)
                        if subscriber is not None:
                            self._service(subscriber, mask, selector, subscribers)
            # Closing: a last try at what is queued, without waiting for anybody.
            self._deliver(queue.take(), selector, subscribers)
        finally:
            for subscriber in list(subscribers.values()):
                self._drop_subscriber(subscriber, selector, subscribers)
            selector.close()
            self._listener.close()
            queue.release()

    def _accept(
        self,
        listener: socket.socket,
        selector: selectors.BaseSelector,
        subscribers: dict[int, _Subscriber],
    ) -> None:
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:  # out of descriptors, say: the subscriber tries again
            log.warning("live events: accept failed", extra={"error": repr(error)})
            return
        sock.setblocking(False)
        subscriber = _Subscriber(sock, deque())
        subscribers[sock.fileno()] = subscriber
        selector.register(sock, selectors.EVENT_READ)
        self.connected = len(subscribers)

    def _deliver(
        self,
        lines: list[bytes],
        selector: selectors.BaseSelector,
        subscribers: dict[int, _Subscriber],
    ) -> None:
        if not lines:
            return
        for subscriber in list(subscribers.values()):
            queued = subscriber.lines
            queued.extend(lines)
            excess = len(queued) - self.max_queued
            if excess > 0:
                for _ in range(excess):
                    queued.popleft()
                self._count_drops(subscriber, excess)
            self._flush(subscriber, selector, subscribers)

    def _service(
        self,
        subscriber: _Subscriber,
        mask: int,
        selector: selectors.BaseSelector,
        subscribers: dict[int, _Subscriber],
    ) -> None:
        if mask & selectors.EVENT_READ:
            try:
                data = subscriber.sock.recv(4096)  # subscribers send nothing; this sees them go
            except BlockingIOError:
                data = b"-"
            except OSError:
                data = b""
            if not data:
                self._drop_subscriber(subscriber, selector, subscribers)
                return
        if mask & selectors.EVENT_WRITE:
            self._flush(subscriber, selector, subscribers)

    def _flush(
        self,
        subscriber: _Subscriber,
        selector: selectors.BaseSelector,
        subscribers: dict[int, _Subscriber],
    ) -> None:
        try:
            while True:
                if subscriber.head is None:
                    if not subscriber.lines:
                        break
                    subscriber.head = memoryview(self._chunk(subscriber.lines))
                sent = subscriber.sock.send(subscriber.head)
                subscriber.head = subscriber.head[sent:] if sent < len(subscriber.head) else None
        except BlockingIOError:
            pass
        except OSError:
            self._drop_subscriber(subscriber, selector, subscribers)
            return
        waiting = subscriber.head is not None or bool(subscriber.lines)
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if waiting else 0)
        selector.modify(subscriber.sock, events)

    def _chunk(self, lines: deque[bytes]) -> bytes:
        """The oldest lines, joined up to about _CHUNK_BYTES: one send for many events."""
        taken = [lines.popleft()]
        size = len(taken[0])
        while lines and size + len(lines[0]) <= _CHUNK_BYTES:
            size += len(lines[0])
            taken.append(lines.popleft())
        self.sent += len(taken)
        return b"".join(taken)

    def _count_drops(self, subscriber: _Subscriber, count: int) -> None:
        if subscriber.dropped == 0:
            log.warning(
                "live events subscriber is not keeping up; dropping its oldest events",
                extra={"events_socket": self.path.name},
            )
        subscriber.dropped += count
        self.dropped += count

    def _drop_subscriber(
        self,
        subscriber: _Subscriber,
        selector: selectors.BaseSelector,
        subscribers: dict[int, _Subscriber],
    ) -> None:
        subscribers.pop(subscriber.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(subscriber.sock)
        subscriber.sock.close()
        self.connected = len(subscribers)


class _RedisSink:
    """PUBLISHes each line to a channel; while Redis is down, lines are dropped (counted) and
    the sink tries again with backoff."""

    def __init__(self, redis_url: str, *, channel: str, retry_max_s: float) -> None:
        self.redis_url = redis_url
        self.channel = channel
        self.retry_max_s = retry_max_s
        self.sent = 0
        self.dropped = 0
        self.connected = 0
        self._client: redis.Redis | None = None

    def serve(self, queue: _LineQueue) -> None:
        backoff = _RETRY_INITIAL_S
        down_since: float | None = None
        try:
            while True:
                lines = queue.take()
                if not lines:
                    if queue.closed:
                        return
                    queue.wait(1.0)
                    continue
                try:
                    self._publish(lines)
                except (redis.RedisError, OSError) as error:
                    self.dropped += len(lines)
                    if down_since is None:
                        down_since = time.monotonic()
                        log.warning(
                            "live events: Redis failed; dropping them until it answers",
                            extra={"redis": display_url(self.redis_url), "error": repr(error)},
                        )
                    self._disconnect()
                    if queue.closed:
                        return
                    queue.pause(backoff)
                    backoff = min(backoff * 2, self.retry_max_s)
                    continue
                if down_since is not None:
                    log.info(
                        "live events: Redis answers again",
                        extra={
                            "redis": display_url(self.redis_url),
                            "outage_s": round(time.monotonic() - down_since, 1),
                        },
                    )
                    down_since, backoff = None, _RETRY_INITIAL_S
        finally:
            self._disconnect()
            queue.release()

    def _publish(self, lines: list[bytes]) -> None:
        if self._client is None:
            self._client = redis.Redis.from_url(
                self.redis_url, socket_connect_timeout=2.0, socket_timeout=2.0
            )
        pipe = self._client.pipeline(transaction=False)
        for line in lines:
            pipe.publish(self.channel, line.rstrip(b"\n"))
        pipe.execute()
        self.sent += len(lines)

    def _disconnect(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None


# --- subscribing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedisChannel:
    """Live events on Redis pub/sub."""

    redis_url: str
    channel: str = LIVE_CHANNEL


async def subscribe(
    source: Path | RedisChannel, *, rescan_s: float = 1.0
) -> AsyncGenerator[CallEvent, None]:
    """Every worker's live events, as they happen, until the consumer stops.

    `source` is the run directory (the embedded default: every *.events.sock in it, each
    worker's and the escalation service's,
    rescanned every `rescan_s`, so new and restarted workers are picked up) or a RedisChannel.
    Events from one worker come in their order; those of different workers are interleaved as
    they arrive. A malformed line is logged and skipped. Close it with `contextlib.aclosing`
    (or `aclose()`) when done, so its connections close at once.
    """
    events = (
        _subscribe_redis(source)
        if isinstance(source, RedisChannel)
        else _subscribe_unix(Path(source), rescan_s)
    )
    async with contextlib.aclosing(events):
        async for event in events:
            yield event


async def follow(
    events: Callable[[], AsyncIterator[CallEvent]],
    handle: Callable[[CallEvent], Awaitable[None]],
    *,
    who: str,
) -> None:
    """Hands every live event to `handle` until cancelled. A subscription (`events()`) that
    ends or fails is made again, after a pause that doubles from 0.1 s up to 5 s; `handle`
    deals with its own errors (one that escapes counts as the subscription failing)."""
    backoff = _RETRY_INITIAL_S
    while True:
        stream = events()
        try:
            try:
                async for event in stream:
                    await handle(event)
                    backoff = _RETRY_INITIAL_S
            finally:
                close = getattr(stream, "aclose", None)
                if close is not None:  # its connections close now, not when collected
                    await close()
            log.warning("live events ended; following them again", extra={"follower": who})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("live events failed; following them again", extra={"follower": who})
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 5.0)


async def _subscribe_unix(run_dir: Path, rescan_s: float) -> AsyncGenerator[CallEvent, None]:
    queue: asyncio.Queue[CallEvent] = asyncio.Queue(maxsize=DEFAULT_MAX_QUEUED)
    readers: dict[Path, asyncio.Task[None]] = {}

    async def watch() -> None:
        while True:
            try:
                for path in sorted(run_dir.glob("*.events.sock")):
                    task = readers.get(path)
                    if task is None or task.done():
                        readers[path] = asyncio.create_task(_read_socket(path, queue))
            except OSError as error:
                log.warning(
                    "live events: cannot scan the run directory",
                    extra={"run_dir": str(run_dir), "error": repr(error)},
                )
            await asyncio.sleep(rescan_s)

    watcher = asyncio.create_task(watch())
    try:
        while True:
            yield await queue.get()
    finally:
        tasks = [watcher, *readers.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _read_socket(path: Path, queue: asyncio.Queue[CallEvent]) -> None:
    """Reads one worker's events until it goes; the watcher connects again."""
    try:
        reader, writer = await asyncio.open_unix_connection(path, limit=_LINE_LIMIT)
    except OSError as error:  # not up yet, or left by a worker that is gone
        log.debug(
            "live events: worker not reachable",
            extra={"events_socket": path.name, "error": repr(error)},
        )
        return
    log.info("live events: connected", extra={"events_socket": path.name})
    try:
        while True:
            try:
                line = await read_line(reader, _LINE_LIMIT)
            except LineTooLong:
                log.warning("live event too long; skipped", extra={"events_socket": path.name})
                continue
            if line is None:
                break
            event = _parse(line, source=path.name)
            if event is not None:
                await queue.put(event)
    except ConnectionError:
        pass
    finally:
        writer.close()
        log.info("live events: disconnected", extra={"events_socket": path.name})


async def _subscribe_redis(source: RedisChannel) -> AsyncGenerator[CallEvent, None]:
    backoff = _RETRY_INITIAL_S
    while True:
        # No socket timeout: a quiet channel is not a failure.
        client = aioredis.Redis.from_url(source.redis_url, socket_connect_timeout=2.0)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(source.channel)
            backoff = _RETRY_INITIAL_S
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                event = _parse(message["data"], source=source.channel)
                if event is not None:
                    yield event
        except (redis.RedisError, OSError) as error:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # A cancel that redis-py turned into an error: stop, do not retry.
                raise asyncio.CancelledError from error
            log.warning(
                "live events: Redis failed; subscribing again",
                extra={"redis": display_url(source.redis_url), "error": repr(error)},
            )
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
            with contextlib.suppress(Exception):
                await client.aclose()
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 5.0)


def _parse(data: bytes | str, *, source: str) -> CallEvent | None:
    try:
        text = data.decode() if isinstance(data, bytes) else data
        event = CallEvent.from_json(text)
        if not (
            isinstance(event.call_id, str)
            and isinstance(event.event_id, str)
            and isinstance(event.data, dict)
            and isinstance(event.t_mono_ns, int)
            and isinstance(event.t_wall, int | float)
        ):
            raise TypeError("a field has the wrong type")
    except (ValueError, KeyError, TypeError) as error:
        log.warning(
            "malformed live event skipped", extra={"source": source, "error": repr(error)[:200]}
        )
        return None
    return event
