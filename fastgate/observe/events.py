"""Request events: every finished request's record, published to NATS or a Redis stream.

Theory of operation
-------------------
``write(record)`` (the log phase, once per request) appends the record to a
deque of at most ``max_buffer`` records; a record that finds it full is
dropped and counted in ``dropped``. A request never waits for the sink.

``flush()`` (every tick of the worker clock, and from ``write`` as soon as
a full batch waits) starts the sink's one background task if it is not
running, and wakes it when records are waiting. The task connects
(``Publisher.connect()``: the NATS handshake, or loading the Redis script,
bounded by ``timeout``), then sends full batches of ``max_batch`` records
and, after a tick, the rest of what was buffered then: one round trip per
batch, each bounded by ``timeout``; then it sleeps until the next wake.
Records that arrive meanwhile wait for the next tick or a full batch: a
busy worker sends full batches, not a round trip for every few records. Records are taken out of
the buffer only once a connection works, so an outage costs the records
beyond ``max_buffer`` and the batch that was in flight when the connection
failed: that batch is dropped (counted in ``dropped``), never sent again,
so delivery is at most once. (A transport that sees the connection gone
before anything left raises ``NotSent`` and the batch is kept.)

After a failure the task closes the connection, waits (100 ms, doubling
up to 5 s; back to 100 ms after a batch went through) and connects again
once records are waiting. The error log gets one warning when the sink
fails, at most one more per minute while it keeps failing, and one line
when it works again.

``close()`` (worker exit) makes one last attempt, bounded by ``timeout``
in all, to send what is buffered, then logs how many records this worker
published and dropped.
"""

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol
from urllib.parse import urlsplit

from fastgate.config.schema import Events
from fastgate.observe.errorlog import log
from fastgate.observe.record import RequestRecord

Send = Callable[[list[RequestRecord]], Awaitable[None]]
"""Sends one batch over an open connection; raises if the batch may not have arrived."""


class NotSent(Exception):
    """Raised by a ``Send`` that found the connection gone before any of the batch left (before
    its first await): the batch goes back to the front of the buffer instead of being dropped."""


_FIRST_RETRY_S = 0.1
_MAX_RETRY_S = 5.0
_WARNING_INTERVAL_S = 60.0


class Publisher(Protocol):
    """One transport (events_nats.py, events_redis.py)."""

    def connect(self) -> AbstractAsyncContextManager[Send]:
        """An open, working connection (bounded by the settings' timeout; raises otherwise)."""
        ...


class EventSink:
    """A RequestObserver sink that publishes records in the background (see the module docstring)."""

    needs_record = True
    """It takes ``write(record)`` (observe/observer.py)."""

    def __init__(self, settings: Events, publisher: Publisher, loop: asyncio.AbstractEventLoop) -> None:
        self._publisher = publisher
        self._loop = loop
        self._target = describe_target(settings)
        self._max_batch = settings.max_batch
        self._max_buffer = settings.max_buffer
        self._timeout_s = float(settings.timeout)
        self._buffer: deque[RequestRecord] = deque()
        self.sent = 0
        """Records published by this worker."""
        self.dropped = 0
        """Records this worker gave up on: buffer full, their batch failed, or still buffered at exit."""
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        """Set when records wait for the task."""
        self._flush_all = False
        """The tick asked for every buffered record; else only full batches are due."""
        self._closing = asyncio.Event()
        self._retry_s = _FIRST_RETRY_S
        self._failing = False
        self._warned_at = -math.inf

    def write(self, record: RequestRecord) -> None:
        buffer = self._buffer
        if len(buffer) < self._max_buffer:
            buffer.append(record)
            if len(buffer) == self._max_batch:  # a full batch need not wait for the tick
                self._wake_task()
        else:
            self.dropped += 1

    def flush(self) -> None:
        """The clock tick: send everything buffered."""
        if self._buffer:
            self._flush_all = True
            self._wake_task()

    def _wake_task(self) -> None:
        if (self._task is None or self._task.done()) and not self._closing.is_set():
            self._task = self._loop.create_task(self._run())
        self._wake.set()

    def reopen(self) -> None:
        """Nothing to reopen: connections are made again on failure."""

    async def close(self) -> None:
        """One last attempt, bounded by ``timeout``, to send what is buffered; then stop the task."""
        if self._buffer:
            self._wake_task()
        self._closing.set()  # from now on no new task is started
        self._wake.set()  # an idle task sees that it is closing
        if self._task is not None:
            await asyncio.wait([self._task], timeout=self._timeout_s)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.dropped += len(self._buffer)
        self._buffer.clear()
        if self.sent or self.dropped:
            log.info("events: %d records published to %s, %d dropped", self.sent, self._target, self.dropped)

    async def _run(self) -> None:
        """Connect, send what is buffered whenever woken, reconnect after a failure; until closed."""
        while True:
            if not self._buffer:
                await self._wake.wait()
            if self._closing.is_set() and not self._buffer:
                return
            try:
                async with self._publisher.connect() as send:
                    await self._pump(send)
                return  # closing, and everything was sent
            except Exception as exc:
                self._failed(exc)
            if self._closing.is_set():
                return  # the last attempt failed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._retry_s):
                    await self._closing.wait()
            self._retry_s = min(self._retry_s * 2, _MAX_RETRY_S)

    async def _pump(self, send: Send) -> None:
        """Send full batches, and after a tick what was buffered then; sleep until the next wake.

        Records that arrive during a round trip wait for the next tick or a full batch, so
        that a busy worker sends full batches rather than one round trip per few records.
        """
        buffer, max_batch, closing = self._buffer, self._max_batch, self._closing
        while True:
            self._wake.clear()  # a wake during the round trips below starts the next round
            due = len(buffer) if self._flush_all else 0
            self._flush_all = False
            while due > 0 or len(buffer) >= max_batch or (closing.is_set() and buffer):
                batch = [buffer.popleft() for _ in range(min(len(buffer), max_batch))]
                due -= len(batch)
                try:
                    async with asyncio.timeout(self._timeout_s):
                        await send(batch)
                except NotSent:
                    buffer.extendleft(reversed(batch))
                    raise
                except BaseException:
                    self.dropped += len(batch)
                    raise
                self.sent += len(batch)
                self._retry_s = _FIRST_RETRY_S
                if self._failing:
                    self._failing = False
                    log.info("events: publishing to %s again (%d records dropped so far)", self._target, self.dropped)
            if closing.is_set():
                return
            await self._wake.wait()

    def _failed(self, exc: Exception) -> None:
        now = self._loop.time()
        if not self._failing or now - self._warned_at >= _WARNING_INTERVAL_S:
            self._warned_at = now
            log.warning("events: cannot publish to %s (%s); retrying, up to %d records are kept meanwhile "
                        "(%d dropped so far)", self._target, describe_error(exc), self._max_buffer, self.dropped)
        self._failing = True


def build_event_sink(settings: Events, loop: asyncio.AbstractEventLoop) -> EventSink:
    """The sink for ``[events]``; imports only the client library of the configured transport."""
    if settings.sink == "nats":
        from fastgate.observe.events_nats import NatsPublisher as Transport
    else:
        from fastgate.observe.events_redis import RedisPublisher as Transport
    return EventSink(settings, Transport(settings), loop)


def describe_target(settings: Events) -> str:
    """The sink as a log text, without credentials: "nats://host:4222 subject x"."""
    url = urlsplit(settings.url)
    where = url.path if url.scheme == "unix" else url.netloc.rpartition("@")[2]
    kind = "subject" if settings.sink == "nats" else "stream"
    return f"{url.scheme}://{where} {kind} {settings.subject}"


def describe_error(exc: BaseException) -> str:
    """An exception as a short log text; an exception group (coredis) as its first leaf."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
