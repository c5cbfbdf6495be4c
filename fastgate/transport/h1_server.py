"""A client's HTTP/1.1 connection: requests in, proxied or local answers out.

Theory of operation
-------------------
One request at a time per connection; bytes of pipelined requests wait in
``buffer`` until the current response is complete, so answers go out in
order and nothing behind a rejected request is ever parsed or forwarded.

States:

- HEAD: waiting for a request head. Bytes collect until CRLF CRLF; size
  limits answer 414/431, the clock answers 408 (slow head) or closes an idle
  keep-alive connection.
- BUFFER: reading a request body before the request goes on: whole, when it
  fits the route's request_buffer_size (request buffering: no upstream
  connection is taken for a body still arriving, its framing is checked
  before a byte goes upstream, and a chunked one is sent with a
  Content-Length), or its first bytes for a body-keyed rate limit.
- BODY: relaying the request body upstream, framed by Content-Length or by
  ChunkedFramer (its bytes are relayed as received): a body too large to
  buffer, or a route that streams.
- WAIT: request fully read; the response is on its way. New bytes are
  pipelined requests: they are buffered, and reading pauses past a bound.
- TUNNEL: after a 101, bytes flow both ways untouched.
- LIMIT: the route's rate limits are being checked in Redis; new bytes are
  buffered as in WAIT until the decision comes (run by
  transport/limit_gate.py, a part of this class kept in its own file).
- AGGREGATE: the route's parts are being fetched (proxy/aggregate.py); new
  bytes are buffered as in WAIT until the merged answer is written.
- CLOSED.

The response side is driven by the upstream connection through the
exchange contract in upstream/connection.py: this class implements it.
Back-pressure: when the upstream socket's buffer is full, client reading
pauses; when the client's is full, upstream reading pauses.
"""

import asyncio
import time

from fastgate.observe.errorlog import log
from fastgate.observe.record import LIMIT_NONE
from fastgate.proxy.errors import error_response
from fastgate.proxy.heads import client_response_head, upstream_request_head
from fastgate.transport.context import WorkerContext
from fastgate.transport.body_buffer import BodyBuffer
from fastgate.transport.limit_gate import LimitGate
from fastgate.transport.states import (
    AGGREGATE, BODY, BODY_TIMEOUT, BUFFER, CLOSED, CONNECT, CONTINUE, HEAD, HEAD_TIMEOUT, IDLE, LIMIT, SEND, TUNNEL,
    TUNNEL_IDLE, WAIT,
)
from fastgate.upstream.retry import NO_DEADLINE
from fastgate.wire.chunked import REQUEST_TRAILER_FORBIDDEN, BodyTooLarge, ChunkedFramer, FramingError
from fastgate.wire.h1 import HEAD_END, HeadError, allowed_upgrade, new_request_parser, parse_request_head

_PENDING_HIGH_BYTES = 256 * 1024


class ClientConnection(LimitGate, asyncio.Protocol):
    __slots__ = (
        "ctx", "transport", "client_ip", "client_text", "proto_header", "state", "buffer", "deadline", "waiting",
        "reading_paused", "writing_paused",
        "head", "route", "request_id", "keep_alive", "upstream", "connecting", "pending",
        "pending_bytes", "body_remaining", "body_framer", "response_started", "dechunk",
        "sent_continue", "pool", "corked_head", "parser", "upstream_head", "started_s",
        "limit_headers", "checking", "body_buffer", "body_for_limits", "tried", "attempt", "retry_budget", "retry_timer", "total_deadline",
        "queued",
        "received_s", "bytes_in", "bytes_out", "status", "upstream_label", "upstream_s", "limit_outcome", "traceparent",
        "aggregation",
    )

    def __init__(self, ctx: WorkerContext, proto_header: bytes) -> None:
        # shared by all connections of the worker
        self.ctx = ctx
        self.proto_header = proto_header
        """``\\r\\nX-Forwarded-Proto: http`` (or https), pre-encoded by the listener."""
        # per connection
        self.transport: asyncio.Transport | None = None
        self.client_text = ""
        """The peer's address as text (the access log's client_ip)."""
        self.client_ip = b""
        """The same, as bytes (X-Forwarded-For, limit and hash keys)."""
        self.state = HEAD
        self.buffer = b""
        """Received bytes not yet handled: a partial head, or pipelined requests."""
        self.deadline = 0.0
        self.waiting = IDLE
        self.parser = new_request_parser()
        """Kept across requests without a body; replaced after any other (see parse_request_head)."""
        self.reading_paused = False
        self.writing_paused = False
        # per request
        self.head = None
        self.route = None
        self.request_id = b""
        self.keep_alive = True
        self.pool = None
        """The pool of the server chosen for this request; counts it in flight until released."""
        self.started_s = 0.0
        """When the request went upstream, for balancers that track response times."""
        self.tried: list | None = None
        """Pools this request was sent or tried to connect to, once it went to a second server."""
        self.attempt = 0
        """Retries this request had after it was sent (Upstream.retries)."""
        self.retry_budget = None
        """The retry budget (upstream/retry.py) this request holds a place in while it is being retried."""
        self.retry_timer: asyncio.TimerHandle | None = None
        self.total_deadline = 0.0
        """When the route's total_timeout ends for this request (clock time; 0.0: none, or not started)."""
        self.upstream = None
        """The UpstreamConnection serving this request, once connected."""
        self.connecting: asyncio.Future | None = None
        self.queued = None
        """The ConnectionLimit this request waits in for a connection (upstream/connection_limit.py)."""
        self.pending: list[bytes] = []
        """Bytes for the upstream while its connection is being made."""
        self.pending_bytes = 0
        self.upstream_head = b""
        """The request head as sent upstream, kept to send it again (stale connection, retry)."""
        self.body_remaining = 0
        self.body_framer: ChunkedFramer | None = None
        self.response_started = False
        self.dechunk: ChunkedFramer | None = None
        """Set when a chunked response goes to an HTTP/1.0 client without its coding."""
        self.sent_continue = False
        self.limit_headers = b""
        """Rate-limit headers for this request's response (from the limit decision)."""
        self.checking = False
        """True while a rate-limit check runs, so a synchronous decision is told from a later one."""
        self.body_buffer: BodyBuffer | None = None
        """The request body read before the request goes on (state BUFFER; transport/body_buffer.py)."""
        self.body_for_limits = False
        """The body is being read for a body-keyed limit, checked once it is in."""
        self.corked_head = b""
        """A response head held back to go out in one write with the first body bytes."""
        # what the log phase reads (observe/observer.py, observe/record.py)
        self.received_s = 0.0
        """When the current request's head arrived (time.monotonic); 0.0 between requests."""
        self.bytes_in = 0
        self.bytes_out = 0
        self.status = 0
        """The status of the response sent or being sent, 0 before one."""
        self.upstream_label = ""
        """host:port of the server whose response is relayed."""
        self.upstream_s = 0.0
        """Seconds from sending the request upstream to its response head."""
        self.limit_outcome = LIMIT_NONE
        self.traceparent = b""
        """``\\r\\ntraceparent: ...`` as sent upstream (observe/trace.py), b"" when tracing is off."""
        self.aggregation = None
        """The route's parts in flight (state AGGREGATE), cancelled if the connection ends."""

    # -- asyncio callbacks -------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client_text = peer[0] if peer else "unix"
        self.client_ip = self.client_text.encode()
        ctx = self.ctx
        ctx.connections.add(self)
        ctx.clock.watched.add(self)
        ctx.metrics.count_accepted()
        self.deadline = ctx.clock.now + ctx.keepalive_timeout_s

    def connection_lost(self, exc: Exception | None) -> None:
        if self.received_s:  # the client went away during a request
            self._finished(self.status if self._response_sent() else 499)
        self.state = CLOSED
        ctx = self.ctx
        ctx.connections.discard(self)
        ctx.clock.watched.discard(self)
        self._drop_upstream()
        if ctx.draining and not ctx.connections:
            ctx.on_drained()

    def eof_received(self) -> bool:
        if self.state == TUNNEL and self.upstream is not None:
            self.upstream.transport.write_eof()
            return True
        return False

    def pause_writing(self) -> None:
        self.writing_paused = True
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.pause_reading()
        self.deadline = self.ctx.clock.now + self.ctx.send_timeout_s
        self.waiting = SEND

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.resume_reading()
        if self.waiting == SEND:
            self.deadline = 0.0

    def data_received(self, data: bytes) -> None:
        try:
            state = self.state
            if state == HEAD:
                self._head_bytes(data)
            elif state == BODY:
                self._body_bytes(data)
            elif state == TUNNEL:
                self.deadline = self.ctx.clock.now + self.upstream.read_timeout_s
                self.upstream.transport.write(data)
            elif state == WAIT or state == LIMIT or state == AGGREGATE:
                self.buffer += data
                if len(self.buffer) > self.ctx.max_head_bytes:
                    self._pause_reading()
            elif state == BUFFER:
                self._buffer_bytes(data)
        except Exception:
            self.internal_error()

    def internal_error(self) -> None:
        """A bug met while serving this connection: log it, answer 500 if still possible, close."""
        log.exception("internal error serving %s", self.client_text)
        try:
            self._refuse(500, "internal error")
        except Exception:
            self.state = CLOSED
            self.transport.abort()

    def on_deadline(self) -> None:
        waiting = self.waiting
        if waiting == HEAD_TIMEOUT:
            self._refuse(408, "request head not received in time")
        elif waiting == BODY_TIMEOUT and not self.response_started:
            self._refuse(408, "request body not received in time")
        elif waiting == CONNECT:
            if self.queued is not None:
                self._fail_upstream(503, "upstream connection limit reached")
                return
            self._abandon_connect()
            self._connect_failed(504, "upstream connect timed out")
        else:  # idle keep-alive, stalled body, slow reader, idle tunnel
            self._abort()

    # -- request side ---------------------------------------------------------
    def _head_bytes(self, data: bytes) -> None:
        ctx = self.ctx
        if self.buffer:
            data = self.buffer + data
            self.buffer = b""
        while data:
            if data[:2] == b"\r\n":  # stray CRLF between requests (RFC 9112 2.2)
                data = data.lstrip(b"\r\n")
                continue
            end = data.find(HEAD_END)
            if end < 0:
                self.buffer = data
                if self.waiting != HEAD_TIMEOUT:
                    self.waiting = HEAD_TIMEOUT
                    self.deadline = ctx.clock.now + ctx.header_timeout_s
                if len(data) > ctx.max_line_bytes and data.find(b"\r\n") < 0:
                    self._refuse(414, "request line too long")
                elif len(data) > ctx.max_head_bytes:
                    self._refuse(431, "request header fields too large")
                return
            end += 4
            if end > ctx.max_head_bytes:
                self._refuse(414 if data.find(b"\r\n") > ctx.max_line_bytes else 431, "request header fields too large")
                return
            if end == len(data):
                self._request(data, b"")
            else:
                self._request(data[:end], data[end:])
            if self.state != HEAD:
                return
            data = self.buffer
            self.buffer = b""
        self.waiting = IDLE
        self.deadline = ctx.clock.now + ctx.keepalive_timeout_s

    def _request(self, raw: bytes, rest: bytes) -> None:
        """Handle one complete request head; bytes left to parse as heads go to ``buffer``."""
        ctx = self.ctx
        self.received_s = time.monotonic()
        self.bytes_in = len(raw)
        self.bytes_out = 0
        self.status = 0
        self.upstream_label = ""
        self.upstream_s = 0.0
        self.limit_outcome = LIMIT_NONE
        self.traceparent = b""
        self.sent_continue = False
        self.body_buffer = None
        try:
            head = parse_request_head(raw, ctx.max_line_bytes, ctx.max_headers, self.parser, ctx.path_rules)
        except HeadError as exc:
            self._refuse(exc.status, exc.reason)
            return
        if ctx.tracer is not None:
            self.traceparent = ctx.tracer.start(head.traceparent)
        if head.has_body or head.upgrade:
            self.parser = new_request_parser()
        self.head = head
        self.keep_alive = head.keep_alive and not ctx.draining
        route = ctx.router.match(head.host, head.path, head.method)
        self.route = route
        self.request_id = head.request_id or (ctx.request_ids.next() if route is None or route.request_id else b"")
        if route is None:
            self._answer_locally(404, error_response(
                404, "no route matches this request", self.request_id, ctx.clock.date_header,
                not self.keep_alive or head.has_body, head_only=head.method == b"HEAD"), rest)
            return
        if head.content_length > route.max_body_bytes:
            self._refuse(413, "request body too large")
            return
        if head.upgrade:
            head.upgrade = allowed_upgrade(head.upgrade, route.upgrades)
        limits = route.limits
        if limits is None:
            self._dispatch(head, route, rest)
        elif limits.needs_body and head.has_body:
            self.body_for_limits = True
            self._read_body(head, max(limits.body_read_limit, self._buffered_size(head, route)), rest)
        else:
            self._check_limits(None, rest)

    def _dispatch(self, head, route, rest: bytes) -> None:
        """The request passed its limits: answer it here, aggregate its parts or forward it."""
        if route.aggregate is not None:
            self.state = AGGREGATE
            self.buffer = rest
            self.waiting = IDLE
            self.deadline = 0.0  # the parts have their own timeouts
            self.aggregation = route.aggregate.start(
                head, self.request_id, self.client_ip, self.proto_header, self.ctx.clock, self._aggregated)
            return
        if route.respond_head is None:
            self._forward(head, route, rest)
            return
        close = not self.keep_alive or head.has_body
        self._answer_locally(route.respond_status, b"".join((
            route.respond_head, self.ctx.clock.date_header, self.limit_headers,
            b"\r\nX-Request-ID: " + self.request_id if self.request_id else b"",
            b"\r\nConnection: close\r\n\r\n" if close else (
                b"\r\nConnection: keep-alive\r\n\r\n" if head.http_1_0 else b"\r\n\r\n"),
            route.respond_body if head.method != b"HEAD" else b"",
        )), rest)

    def _answer_locally(self, status: int, response: bytes, rest: bytes) -> None:
        """Write a response made here; a request with a body ends the connection."""
        self.transport.write(response)
        self.bytes_out += len(response)
        self._finished(status)
        if not self.keep_alive or self.head.has_body:
            self._close()
            return
        self.head = self.route = None
        self.limit_headers = b""
        self.state = HEAD
        self.buffer = rest

    def _aggregated(self) -> None:
        """The aggregation has its answer (called from a later loop turn): write it, go on."""
        try:
            aggregation = self.aggregation
            self.aggregation = None
            rest = self.buffer
            self.buffer = b""
            self._answer_locally(aggregation.status, aggregation.response(not self.keep_alive, self.limit_headers),
                                 rest)
            self._resume_reading()
            if self.state == HEAD:
                self._head_bytes(b"")
        except Exception:
            self.internal_error()

    def _forward(self, head, route, rest: bytes) -> None:
        """The request goes to the route's upstream, unless the upstream cannot take it now; a body
        that fits the buffer is read whole first."""
        group = route.upstream
        if group.tripped and not group.breaker.admit():
            self._unavailable("upstream circuit breaker open", rest,
                              b"\r\nRetry-After: %d" % group.breaker.retry_after(self.ctx.clock.now))
            return
        if group.max_concurrent and group.overloaded():
            self._unavailable("upstream overloaded", rest)
            return
        if head.has_body and self.body_buffer is None:
            size = self._buffered_size(head, route)
            if size:
                self._read_body(head, size, rest)
                return
        self._send(head, route, rest)

    @staticmethod
    def _buffered_size(head, route) -> int:
        """How much of this request's body is read before it goes upstream: 0 when it streams."""
        size = route.buffer_bytes
        return size if size and (head.chunked or head.content_length <= size) else 0

    def _read_body(self, head, limit: int, rest: bytes) -> None:
        """Read the body (BUFFER) until it ended or ``limit`` payload bytes are in, then go on."""
        self.state = BUFFER
        self.body_buffer = BodyBuffer(head, limit, self.route.max_body_bytes)
        if head.expect_continue and not rest:
            self.sent_continue = True
            head.expect_continue = False
            self.transport.write(CONTINUE)
        self.waiting = BODY_TIMEOUT
        self.deadline = self.ctx.clock.now + self.ctx.body_timeout_s
        if rest:
            self._buffer_bytes(rest)

    def _buffer_bytes(self, data: bytes) -> None:
        self.deadline = self.ctx.clock.now + self.ctx.body_timeout_s
        try:
            ready = self.body_buffer.feed(data)
        except FramingError as exc:
            self._refuse_body(exc)
            return
        if not ready:
            return
        self.state = HEAD
        self.waiting = IDLE
        self.deadline = 0.0
        if self.body_for_limits:
            self.body_for_limits = False
            self._check_limits(self.body_buffer.payload(self.route.limits.body_read_limit), b"")
        else:
            self._send(self.head, self.route, b"")

    def _send(self, head, route, rest: bytes) -> None:
        """Pick a server and send the request: the body read whole, or streamed as it comes."""
        ctx = self.ctx
        group = route.upstream
        pool = group.pick(head, self.client_ip)
        if pool is None:
            self._unavailable("no upstream server available", rest)
            return
        pool.active += 1
        self.pool = pool
        self.started_s = time.monotonic()
        self.response_started = False
        self.dechunk = None
        body = self.body_buffer
        whole = None
        if body is not None:
            self.body_buffer = None
            if body.complete:
                whole = body.payload()
                rest = body.rest + rest
            else:
                rest = body.raw() + rest
        request_head = upstream_request_head(
            head, route, self.request_id, self.client_ip, self.proto_header, pool.host_header, self.traceparent,
            body_length=len(whole) if whole is not None and head.chunked else -1,
        )
        if whole:
            request_head += whole
        self.upstream_head = request_head
        self.tried = None
        self.attempt = 0
        if whole is not None:
            self.state = WAIT
        elif head.chunked:
            self.state = BODY
            self.body_framer = ChunkedFramer(route.max_body_bytes, REQUEST_TRAILER_FORBIDDEN)
        elif head.content_length > 0:
            self.state = BODY
            self.body_remaining = head.content_length
        else:
            self.state = WAIT
        total_s = route.timeouts.total_s
        self.total_deadline = ctx.clock.now + total_s if total_s and self.state == WAIT else 0.0
        upstream = pool.acquire()
        if upstream is not None:
            self._start_exchange(upstream)
            upstream.transport.write(request_head)
            if self.state == WAIT:
                self.deadline = 0.0
        else:
            self._connect(request_head)
            if self.state == CLOSED:
                return
        if self.state == BODY:
            if head.expect_continue and not rest:
                self.sent_continue = True
                self.transport.write(CONTINUE)
            if self.upstream is not None:
                self.waiting = BODY_TIMEOUT
                self.deadline = ctx.clock.now + ctx.body_timeout_s
            if rest:
                self._body_bytes(rest)
        elif rest:
            self.buffer = rest

    def _body_bytes(self, data: bytes) -> None:
        if self.waiting != CONNECT:
            self.waiting = BODY_TIMEOUT
            self.deadline = self.ctx.clock.now + self.ctx.body_timeout_s
        framer = self.body_framer
        if framer is not None:
            try:
                end = framer.feed(data)
            except FramingError as exc:
                self._refuse_body(exc)
                return
            if end < 0:
                self._send_upstream(data)
                return
        else:
            end = self.body_remaining
            if len(data) < end:
                self.body_remaining = end - len(data)
                self._send_upstream(data)
                return
            self.body_remaining = 0
        self._send_upstream(data[:end] if end < len(data) else data)
        self.body_framer = None
        self.state = WAIT
        if self.waiting == BODY_TIMEOUT:
            self.deadline = 0.0
        timeouts = self.route.timeouts
        if timeouts.total_s:
            self.total_deadline = self.ctx.clock.now + timeouts.total_s
        if self.upstream is not None:
            self.upstream.expect_head(timeouts.head_deadline(self.ctx.clock.now, self.total_deadline))
        if end < len(data):
            self.buffer = data[end:]

    def _connect(self, request_head: bytes) -> None:
        """Open a new upstream connection; ``request_head`` goes first once it is made."""
        self.pending = [request_head]
        self.pending_bytes = len(request_head)
        self._open_connection(self.pool)

    def _open_connection(self, pool) -> None:
        """Connect to ``pool``'s server, within the connect timeout and what is left of the total one;
        at the group's max_connections, wait for a connection as long (or answer 503 at once)."""
        self.waiting = CONNECT
        deadline = self.ctx.clock.now + self.route.timeouts.connect_s
        total = self.total_deadline
        self.deadline = total if total and total < deadline else deadline
        group = pool.group
        limit = group.limit
        if limit.full():
            if limit.wait(self, group.pools):
                self.queued = limit
            else:
                self._fail_upstream(503, "upstream connection limit reached")
            return
        self.connecting = pool.connect(self._connected)

    # -- called by the group's ConnectionLimit while this request waits in it ------
    def connection_slot_free(self) -> None:
        """A connection slot is ours: connect."""
        self.queued = None
        try:
            self._open_connection(self.pool)
        except Exception:
            self.internal_error()

    def take_connection(self, upstream) -> None:
        """A connection to our server was released clean: the request goes on it."""
        self.queued = None
        try:
            self._attach(upstream)
        except Exception:
            self.internal_error()

    def _connect_failed(self, status: int, reason: str) -> None:
        """No connection to the chosen server: try another one (connect_retries), else answer."""
        pool = self.pool
        pool.group.exchange_failed(pool)
        self.ctx.metrics.count_upstream_error(pool, status, True)
        tried = self.tried or [pool]
        other = self.route.retry.server_after_connect_failure(self.head, self.client_ip, tried, self._left_s())
        if other is None:
            self._fail_upstream(status, reason)
            return
        tried.append(other)
        self.tried = tried
        self._release_pool()
        other.active += 1
        self.pool = other
        self._open_connection(other)

    def _send_upstream(self, data: bytes) -> None:
        upstream = self.upstream
        if upstream is not None:
            upstream.transport.write(data)
        elif self.connecting is not None or self.queued is not None:
            self.pending.append(data)
            self.pending_bytes += len(data)
            if self.pending_bytes > _PENDING_HIGH_BYTES:
                self._pause_reading()

    def _connected(self, future: asyncio.Future) -> None:
        if future is not self.connecting:
            return  # given up on (timeout or client gone): close what was made
        self.connecting = None
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self._connect_failed(502, "upstream refused the connection" if isinstance(exc, ConnectionRefusedError)
                                 else f"cannot connect to upstream: {exc.__class__.__name__}")
            return
        upstream = future.result()[1]
        if self.state == CLOSED:
            upstream.close()
            return
        self._attach(upstream)

    def _attach(self, upstream) -> None:
        """The request goes on ``upstream``, a connection made or handed over for it: what was held
        back while it waited is written."""
        self._start_exchange(upstream)
        upstream.transport.writelines(self.pending)
        self.pending = []
        self.pending_bytes = 0
        if self.state == BODY:
            self.waiting = BODY_TIMEOUT
            self.deadline = self.ctx.clock.now + self.ctx.body_timeout_s
        else:
            self.waiting = IDLE
            self.deadline = 0.0
        self._resume_reading()

    # -- the exchange contract (called by UpstreamConnection) -----------------
    def on_informational(self, head) -> None:
        if self.head.http_1_0 or (head.status == 100 and self.sent_continue):
            return
        self.sent_continue = self.sent_continue or head.status == 100
        self.transport.write(client_response_head(head, self.route, b"", False, False, False))

    def on_upgraded(self, head) -> None:
        if not self.head.upgrade:
            self.on_upstream_failed(502, "upstream switched protocols unasked")
            return
        self.response_started = True
        self.status = 101
        self.upstream_label = self.pool.label if self.pool is not None else ""
        self.state = TUNNEL
        self.waiting = TUNNEL_IDLE
        self.deadline = self.ctx.clock.now + self.upstream.read_timeout_s
        self.transport.write(client_response_head(head, self.route, self.request_id, False, False, False))
        if self.buffer:
            self.upstream.transport.write(self.buffer)
            self.buffer = b""

    def on_response_head(self, head) -> None:
        pool = self.pool
        group = pool.group
        if head.status < 500:
            group.answered += 1
            if pool.failures:
                pool.failures = 0
        elif group.record_server_error(pool, head.status) and self._retry():
            return
        self.response_started = True
        self.status = head.status
        self.upstream_label = pool.label
        if self.started_s:
            self.upstream_s = upstream_s = time.monotonic() - self.started_s
            if pool.group.balancer.tracks_latency:
                pool.observe(upstream_s)
            self.started_s = 0.0
        close = not self.keep_alive or head.until_close or self.state == BODY or self.ctx.draining
        dechunk = head.chunked and self.head.http_1_0
        if dechunk:
            self.dechunk = ChunkedFramer()
            close = True
        if close:
            self.keep_alive = False
        self.corked_head = client_response_head(
            head, self.route, self.request_id, close, self.head.http_1_0, dechunk, self.limit_headers)

    def on_response_data(self, data: bytes) -> None:
        if self.state == TUNNEL:
            self.deadline = self.ctx.clock.now + self.upstream.read_timeout_s
        if self.dechunk is None:
            if self.corked_head:
                data = self.corked_head + data
                self.corked_head = b""
            self.bytes_out += len(data)
            self.transport.write(data)
            return
        if self.corked_head:
            self._write_corked_head()
        payload: list[bytes] = []
        try:
            self.dechunk.feed(data, 0, payload)
        except FramingError:
            self._abort()
            return
        self.bytes_out += sum(map(len, payload))
        self.transport.writelines(payload)

    def on_response_end(self, reusable: bool) -> None:
        self._end_retry()
        if self.corked_head:
            self._write_corked_head()
        self._finished(self.status)
        self._release_pool()
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            if reusable and self.state == WAIT and self.head.reuse_upstream:
                upstream.release()
            else:
                upstream.close()
            if self.writing_paused and upstream.transport is not None:
                upstream.transport.resume_reading()
        if self.state == TUNNEL:
            self._close()
            return
        if self.state == BODY:  # answered before the whole body was read: nothing more to do
            self._close()
            return
        self.head = self.route = None
        self.limit_headers = b""
        self._after_response(self.keep_alive)

    def on_upstream_stale(self) -> None:
        head = self.head
        if self.state != WAIT or head.has_body or head.upgrade:
            self.on_upstream_failed(502, "upstream closed the connection")
            return
        self.upstream = None
        self._connect(self.upstream_head)

    def on_upstream_failed(self, status: int, reason: str) -> None:
        pool = self.pool
        if pool is not None:
            pool.group.exchange_failed(pool)
            self.ctx.metrics.count_upstream_error(pool, status, False)
        if not self._retry():
            self._fail_upstream(status, reason)

    def _fail_upstream(self, status: int, reason: str) -> None:
        """Answer ``status`` if nothing of the response reached the client yet, else cut it short."""
        self._drop_upstream()
        if self.state == CLOSED:
            return
        if self._response_sent() or self.state == TUNNEL:
            self._abort()
        else:
            self._forget_response()
            self._refuse(status, reason)

    def _response_sent(self) -> bool:
        """Whether bytes of the response went to the client (a head still corked has not)."""
        return self.response_started and not self.corked_head

    def _forget_response(self) -> None:
        """Drop a response head that never reached the client (its exchange failed)."""
        self.response_started = False
        self.corked_head = b""
        self.dechunk = None

    def _write_corked_head(self) -> None:
        self.bytes_out += len(self.corked_head)
        self.transport.write(self.corked_head)
        self.corked_head = b""

    def pause_client_reading(self) -> None:
        self._pause_reading()

    def resume_client_reading(self) -> None:
        self._resume_reading()

    # -- helpers ---------------------------------------------------------------
    def _after_response(self, keep_alive: bool) -> None:
        """``keep_alive`` is what the response head announced: a head without Connection: close
        sent before a drain began is kept, the next request is answered with it."""
        if not keep_alive:
            self._close()
            return
        self.state = HEAD
        self.waiting = IDLE
        self.deadline = self.ctx.clock.now + self.ctx.keepalive_timeout_s
        self._resume_reading()
        if self.buffer:
            data = self.buffer
            self.buffer = b""
            self._head_bytes(data)

    def _unavailable(self, reason: str, rest: bytes, extra_headers: bytes = b"") -> None:
        """503 before anything went upstream (overload, breaker, no server); the connection stays
        open unless the request has a body, which was not read."""
        self._answer_locally(503, error_response(
            503, reason, self.request_id, self.ctx.clock.date_header, not self.keep_alive or self.head.has_body,
            extra_headers, self.head.method == b"HEAD"), rest)

    def _refuse_body(self, exc: FramingError) -> None:
        """A request body that cannot be relayed: 413 past its size limit, else 400."""
        if isinstance(exc, BodyTooLarge):
            self._refuse(413, "request body too large")
        else:
            self._refuse(400, f"malformed request body: {exc}")

    def _refuse(self, status: int, reason: str) -> None:
        """Answer an error (JSON) and close the connection."""
        if self.state == CLOSED:
            return
        self._drop_upstream()
        if not self.response_started:
            response = error_response(
                status, reason, self.request_id if self.head is not None else b"",
                self.ctx.clock.date_header, True)
            self.transport.write(response)
            self.bytes_out += len(response)
            self._finished(status)
        else:
            self._finished(self.status)
        self._close()

    def _close(self) -> None:
        self.state = CLOSED
        self.buffer = b""
        self.ctx.clock.watched.discard(self)
        self._drop_upstream()
        self.transport.close()

    def _abort(self) -> None:
        """Cut the connection: a stalled or broken exchange, or an idle keep-alive timeout."""
        self._finished(self.status if self._response_sent() else 499)
        self.state = CLOSED
        self.ctx.clock.watched.discard(self)
        self._drop_upstream()
        self.transport.abort()

    # -- retries after the request was sent -------------------------------------
    def _retry(self) -> bool:
        """Send the request again to another server if the retry policy lets it; False when not.

        The policy (upstream/retry.py) decides from the request, the attempts
        and the budget; here only a request whose body was completely read
        and of whose response nothing went to the client may go again.
        """
        pool = self.pool
        if pool is None or self._response_sent() or self.state != WAIT:
            return False
        group = pool.group
        tried = self.tried or [pool]
        left_s = self._left_s()
        retry = self.route.retry
        other = retry.server_for_retry(self.head, self.client_ip, tried, self.attempt, left_s)
        if other is None:
            return False
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            upstream.abort()
        self._release_pool()
        self._forget_response()
        if not self.attempt:
            group.budget.take()
            self.retry_budget = group.budget
        self.attempt += 1
        self.ctx.metrics.count_retry(group)
        tried.append(other)
        self.tried = tried
        other.active += 1
        self.pool = other
        self.waiting = IDLE
        self.deadline = 0.0
        self.retry_timer = self.ctx.clock.loop.call_later(retry.backoff(self.attempt, left_s), self._send_again)
        return True

    def _send_again(self) -> None:
        self.retry_timer = None
        if self.state == CLOSED:
            return
        upstream = self.pool.acquire()
        if upstream is None:
            self._connect(self.upstream_head)
            return
        self._start_exchange(upstream)
        upstream.transport.write(self.upstream_head)

    def _start_exchange(self, upstream) -> None:
        """Bind ``upstream`` to this request's attempt; a complete request's head is due by the
        attempt's deadline (upstream/timeouts.py), one still being sent gets it with its last byte."""
        self.upstream = upstream
        timeouts = self.route.timeouts
        upstream.start(self, self.head.method, timeouts.idle_s,
                       0.0 if self.state == BODY else timeouts.head_deadline(self.ctx.clock.now, self.total_deadline))

    def _left_s(self) -> float:
        """What is left of the request's total timeout, exactly (a retry decision is rare)."""
        total = self.total_deadline
        return total - self.ctx.clock.loop.time() if total else NO_DEADLINE

    def _end_retry(self) -> None:
        """The request is over: give its place in the retry budget back."""
        budget = self.retry_budget
        if budget is not None:
            self.retry_budget = None
            budget.give_back()
        if self.retry_timer is not None:
            self.retry_timer.cancel()
            self.retry_timer = None

    def _finished(self, status: int) -> None:
        """The log phase, once per request (observe/observer.py)."""
        if self.received_s:
            self.ctx.observer.done(self, status)
            self.received_s = 0.0

    def _release_pool(self) -> None:
        """The exchange with the chosen server is over: it no longer counts as in flight."""
        pool = self.pool
        if pool is not None:
            self.pool = None
            pool.active -= 1
            self.started_s = 0.0

    def _drop_upstream(self) -> None:
        """Let go of the upstream side mid-exchange: it cannot be reused."""
        if self.aggregation is not None:
            self.aggregation.cancel()
            self.aggregation = None
        self._end_retry()
        self._release_pool()
        self._abandon_connect()
        if self.queued is not None:
            self.queued.cancel(self)
            self.queued = None
        self.pending = []
        upstream = self.upstream
        if upstream is not None:
            self.upstream = None
            upstream.abort()

    def _abandon_connect(self) -> None:
        """Give up a connect in progress; a connection it still makes is closed."""
        connecting = self.connecting
        if connecting is not None:
            self.connecting = None
            connecting.add_done_callback(_close_made_connection)
            connecting.cancel()

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.state != CLOSED:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.reading_paused and self.state != CLOSED:
            self.reading_paused = False
            self.transport.resume_reading()

    def drain(self) -> None:
        """Graceful stop: the next response says Connection: close, then the connection ends.

        An idle keep-alive connection is not closed at once: the client may be
        sending a request on it right now, and closing would reset it. Nor is
        one whose response head already went out without Connection: close.
        It closes after its next response, at its keep-alive timeout, or when
        the worker's drain timeout ends, whichever comes first.
        """
        if not (self.state == WAIT and self.response_started):
            self.keep_alive = False


def _close_made_connection(future: asyncio.Future) -> None:
    """A connect that finished after it was given up on: close what it made."""
    if not future.cancelled() and future.exception() is None:
        future.result()[1].close()
