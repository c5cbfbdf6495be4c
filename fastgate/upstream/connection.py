"""One HTTP/1.1 connection to an upstream server: response framing and relay.

Theory of operation
-------------------
The connection serves one exchange at a time. ``start(exchange, method)``
binds it to the client side that sent a request on it; from then on every
event about the response goes to that exchange, through this contract:

- ``on_response_head(head)``: a final response head (ResponseHead) arrived;
- ``on_informational(head)``: a 1xx head other than 101 arrived;
- ``on_upgraded(head)``: 101 arrived; afterwards bytes flow as tunnel data;
- ``on_response_data(data)``: body bytes (chunked coding kept) or tunnel bytes;
- ``on_response_trailers(fields)``: a chunked body's trailer fields, as (name,
  value) pairs, in place of its last chunk (an HTTP/2 upstream's trailers,
  upstream/h2_connection.py; here they stay in the relayed chunked bytes);
- ``on_response_end(reusable)``: the response is complete; the exchange
  must return the connection to the pool only if ``reusable``;
- ``on_upstream_failed(status, reason)``: the server broke, closed early,
  sent garbage or timed out; ``status`` is 502 or 504;
- ``on_upstream_stale()``: a pooled connection that had served earlier
  requests closed before sending a byte of the response (the server's
  keep-alive timeout raced our reuse); the request never reached the
  application, so a bodiless request may be sent again on a new connection;
- ``pause_client_reading()`` / ``resume_client_reading()``: this socket's
  write buffer is over / back under its high-water mark;
- ``internal_error()``: a bug was met while handling the response: log it,
  answer 500 if nothing was sent yet, close.

States: IDLE (in the pool), HEAD (reading a response head), LENGTH,
CHUNKED, UNTIL_CLOSE (reading a body framed that way), TUNNEL, CLOSED.

What a slow reader costs
------------------------
Each read of a response goes straight to the client's transport; what the
client's socket cannot take waits in that transport's write buffer. Past
WRITE_HIGH_BYTES there, the client side pauses reading here (its protocol's
pause_writing), so a stalled client holds about one read of its answer,
READ_BYTES, plus at most one earlier read whose unsent tail keeps it alive;
the rest of the answer waits in the kernel's socket buffers. Hence a
BufferedProtocol reading into one small buffer: uvloop's plain protocol
reads up to 256 KB at once, and a stalled client held all of it.

Measured with bench/slow_readers.py (500 readers that stop reading a 1 MiB
answer): the worker grows by about 35 KiB per reader; with uvloop's reads
and its 64 KiB mark it grew by 113 KiB (343 KiB behind the tests' Python
origin: tests/integration/test_slow_readers.py). The cost, by bench.icount:
about 2,000 instructions more per response than uvloop's own reads (1.3% of
a small request), and 10% more for a 1 MiB answer (32 reads instead of a
few); yet a paired run of the two on one CPU measured 15% less CPU time per
1 MiB answer in all (user time 160 -> 195 us, system time 590 -> 460 us).
The same marks bound the other way, a request body sent faster than the
server reads it. They are constants, not settings: larger values gain no
throughput (the kernel's socket buffers keep a fast transfer going), they
only let each stalled client cost more.
"""

import asyncio

from fastgate.observe.errorlog import log
from fastgate.wire.chunked import ChunkedFramer, FramingError
from fastgate.wire.h1 import HEAD_END, HeadError, parse_response_head

IDLE, HEAD, LENGTH, CHUNKED, UNTIL_CLOSE, TUNNEL, CLOSED = range(7)
_MAX_RESPONSE_HEAD = 64 * 1024

READ_BYTES = 32 * 1024
"""Most bytes taken from an upstream socket in one read (64 KiB: a 1 MiB answer costs 8% fewer
instructions, a stalled reader twice the memory; 16 KiB: 20% more instructions)."""
WRITE_HIGH_BYTES = 4 * 1024
"""A transport's write-buffer high-water mark, on both sides (uvloop's default: 64 KiB, 512 KiB on
a TLS transport): past it the other side stops reading. Small, so that a paused side holds about
one read, not several."""
WRITE_LOW_BYTES = 0
"""Its low-water mark: the other side reads again once everything was handed to the kernel."""

_READ_VIEW = memoryview(bytearray(READ_BYTES))
"""Where every upstream connection of the worker reads into (one read at a time); each read is
copied out as bytes at once."""


class UpstreamConnection(asyncio.BufferedProtocol):
    __slots__ = ("pool", "transport", "state", "exchange", "method", "buffer", "remaining",
                 "framer", "requests", "deadline", "read_timeout_s", "head_deadline", "keep_alive")

    def __init__(self, pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.requests = 0
        self.deadline = 0.0
        """Idle: when the pool drops it. Busy: the read timeout, or the head deadline before the head."""
        # per exchange
        self.state = IDLE
        self.exchange = None
        self.method = b""
        self.buffer = b""
        self.remaining = 0
        self.framer: ChunkedFramer | None = None
        self.read_timeout_s = pool.group.read_timeout_s
        """Longest pause between two reads in this exchange (the route's idle timeout)."""
        self.head_deadline = 0.0
        """When the response head must be in (0.0: no limit but the read timeout)."""
        self.keep_alive = True

    # -- asyncio callbacks -------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(WRITE_HIGH_BYTES, WRITE_LOW_BYTES)
        self.pool.opened += 1
        self.pool.clock.watched.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.group.limit.closed()
        state = self.state
        self.state = CLOSED
        self.pool.clock.watched.discard(self)
        exchange = self.exchange
        self.exchange = None
        if state == IDLE:
            self.pool.forget(self)
        elif exchange is None:
            return
        elif state == UNTIL_CLOSE:
            exchange.on_response_end(False)
        elif state == TUNNEL:
            exchange.on_response_end(False)
        elif state == HEAD and not self.buffer and self.requests > 1:
            exchange.on_upstream_stale()
        else:
            exchange.on_upstream_failed(502, "upstream closed the connection")

    def connect_done(self, future) -> None:
        """The connect ended (ServerPool.connect): without a connection made, its slot is free."""
        if self.transport is None:
            self.pool.group.limit.closed()

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.pause_client_reading()

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.resume_client_reading()

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_VIEW

    def buffer_updated(self, nbytes: int) -> None:
        try:
            self._received(_READ_VIEW[:nbytes].tobytes())
        except Exception:
            exchange = self.exchange
            self.abort()
            if exchange is not None:
                exchange.internal_error()
            else:
                log.exception("internal error reading from upstream %s", self.pool.label)

    def _received(self, data: bytes) -> None:
        state = self.state
        if state == TUNNEL:
            self.exchange.on_response_data(data)
            return
        deadline = self.pool.clock.now + self.read_timeout_s
        head_deadline = self.head_deadline
        self.deadline = head_deadline if head_deadline and head_deadline < deadline else deadline
        if state == HEAD:
            self._head(data)
        elif state == LENGTH:
            self._length_body(data, 0)
        elif state == CHUNKED:
            self._chunked_body(data, 0)
        elif state == UNTIL_CLOSE:
            self.exchange.on_response_data(data)
        else:  # bytes from an idle server: it is broken, do not reuse
            self.close()

    # -- the exchange side -------------------------------------------------
    def usable(self) -> bool:
        return self.state == IDLE and self.transport is not None and not self.transport.is_closing()

    def start(self, exchange, method: bytes, read_timeout_s: float, head_deadline: float) -> None:
        """Bind to ``exchange`` for one request with ``method``; the caller writes the request.

        No pause between reads may last ``read_timeout_s``, and the response
        head is due by ``head_deadline`` (clock time; 0.0: no limit, or not
        known yet: see ``expect_head``). Past either, ``on_upstream_failed(504)``.
        """
        self.exchange = exchange
        self.method = method
        self.state = HEAD
        self.buffer = b""
        self.requests += 1
        self.read_timeout_s = read_timeout_s
        self.head_deadline = head_deadline
        deadline = self.pool.clock.now + read_timeout_s
        self.deadline = head_deadline if head_deadline and head_deadline < deadline else deadline

    def expect_head(self, head_deadline: float) -> None:
        """The request was completely sent after ``start``: its response head is due by ``head_deadline``."""
        if self.state == HEAD and head_deadline:
            self.head_deadline = head_deadline
            if head_deadline < self.deadline:
                self.deadline = head_deadline

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def release(self) -> None:
        """Back to the pool after a clean exchange (called by the exchange)."""
        self.exchange = None
        self.state = IDLE
        self.pool.release(self)

    def close(self) -> None:
        self._shut(abort=False)

    def abort(self) -> None:
        """Drop the connection at once (the client went away mid-exchange)."""
        self._shut(abort=True)

    def _shut(self, abort: bool) -> None:
        self.exchange = None
        if self.state != CLOSED:
            self.state = CLOSED
            self.pool.clock.watched.discard(self)
            if self.transport is not None:
                if abort:
                    self.transport.abort()
                else:
                    self.transport.close()

    def on_deadline(self) -> None:
        if self.state == IDLE:
            self.close()
            return
        exchange = self.exchange
        self.abort()
        if exchange is not None:
            exchange.on_upstream_failed(504, "upstream timed out")

    # -- response framing ----------------------------------------------------
    def _head(self, data: bytes) -> None:
        if self.buffer:
            data = self.buffer + data
            self.buffer = b""
        while True:
            end = data.find(HEAD_END)
            if end < 0:
                if len(data) > _MAX_RESPONSE_HEAD:
                    self._fail("upstream response head too large")
                else:
                    self.buffer = data
                return
            end += 4
            try:
                head = parse_response_head(data[:end], self.method)
            except HeadError as exc:
                self._fail(exc.reason)
                return
            exchange = self.exchange
            status = head.status
            if status < 200:
                if status == 101:
                    self.state = TUNNEL
                    self.deadline = 0.0
                    exchange.on_upgraded(head)
                    if end < len(data) and self.exchange is not None:
                        exchange.on_response_data(data[end:])
                    return
                exchange.on_informational(head)
                if self.exchange is None:
                    return
                data = data[end:]
                continue
            self.keep_alive = head.keep_alive
            if self.head_deadline:  # from now on only the read timeout bounds the response
                self.head_deadline = 0.0
                self.deadline = self.pool.clock.now + self.read_timeout_s
            exchange.on_response_head(head)
            if self.exchange is None:  # the exchange gave up on the response
                return
            if head.chunked:
                self.state = CHUNKED
                self.framer = ChunkedFramer()
                self._chunked_body(data, end)
            elif head.until_close:
                self.state = UNTIL_CLOSE
                if end < len(data):
                    exchange.on_response_data(data[end:])
            else:
                self.state = LENGTH
                self.remaining = head.content_length
                self._length_body(data, end)
            return

    def _length_body(self, data: bytes, start: int) -> None:
        available = len(data) - start
        remaining = self.remaining
        if available:
            take = min(available, remaining)
            self.exchange.on_response_data(data[start:] if take == available and start == 0 else data[start : start + take])
            remaining -= take
            self.remaining = remaining
            if available > take:  # bytes past the response: the server is broken
                self._finish(False)
                return
        if remaining == 0 and self.exchange is not None:
            self._finish(True)

    def _chunked_body(self, data: bytes, start: int) -> None:
        try:
            end = self.framer.feed(data, start)
        except FramingError as exc:
            self._fail(f"bad chunked response from upstream: {exc}")
            return
        if end < 0:
            self.exchange.on_response_data(data if start == 0 else data[start:])
            return
        if end > start:
            self.exchange.on_response_data(data[start:end])
        if self.exchange is not None:
            self._finish(end == len(data))

    def _finish(self, reusable: bool) -> None:
        exchange = self.exchange
        self.framer = None
        self.deadline = 0.0
        if not (reusable and self.keep_alive):
            reusable = False
            self.close()
        exchange.on_response_end(reusable)

    def _fail(self, reason: str) -> None:
        exchange = self.exchange
        self.abort()
        if exchange is not None:
            exchange.on_upstream_failed(502, reason)
