"""A client's HTTP/1.1 connection: the downstream adapter of the proxy core for HTTP/1.1.

Theory of operation
-------------------
This class owns the bytes and the connection: it finds request heads,
parses them (wire/h1.py), frames request bodies, renders answers and
response heads as HTTP/1.1, keeps the connection alive between requests and
times out what is slow. The request's life (route, limits, answer or
forward, retries, log) is the session's (proxy/session.py ProxySession),
which this class drives and serves through the downstream surface the
session's docstring lists. One request at a time: bytes of pipelined
requests wait in ``buffer`` until the current response is complete, so
answers go out in order and nothing behind a rejected request is ever parsed
or forwarded.

States:

- HEAD: waiting for a request head. Bytes collect until CRLF CRLF; size
  limits answer 414/431, the clock answers 408 (slow head) or closes an idle
  keep-alive connection.
- PENDING: the head is with the session, whose request has a body not read
  yet (routing, limits or the upstream's checks still deciding). New bytes
  are held in ``buffer``.
- BUFFER: reading the body into a BodyBuffer (transport/body_buffer.py) for
  the session: whole, when it fits the route's request_buffer_size (no
  upstream connection is taken for a body still arriving, its framing is
  checked before a byte goes upstream), or its first bytes for a body-keyed
  rate limit.
- BODY: relaying the body to the session as it comes, framed by
  Content-Length or ChunkedFramer (its bytes relayed as received): a body
  too large to buffer, or a route that streams.
- WAIT: the request is read whole; its answer is on its way. New bytes are
  pipelined requests: held in ``buffer``, and reading pauses past a bound.
- TUNNEL: after a 101, bytes flow both ways untouched.
- CLOSED.

A response head is held back (``corked_head``) to go out in one write with
the first body bytes. Back-pressure: when the upstream socket's buffer is
full the session pauses client reading; when the client's is full
(``pause_writing``) the session pauses upstream reading.
"""

import asyncio

from fastgate.proxy.heads import client_response_head
from fastgate.proxy.session import ProxySession
from fastgate.transport.body_buffer import BodyBuffer
from fastgate.transport.context import WorkerContext
from fastgate.transport.states import (
    BODY, BODY_TIMEOUT, BUFFER, CLOSED, CONTINUE, HEAD, HEAD_TIMEOUT, IDLE, PENDING, SEND, TUNNEL, TUNNEL_IDLE, WAIT,
)
from fastgate.upstream.connection import WRITE_HIGH_BYTES, WRITE_LOW_BYTES
from fastgate.wire.chunked import REQUEST_TRAILER_FORBIDDEN, ChunkedFramer, FramingError, render_trailers
from fastgate.wire.h1 import HEAD_END, HeadError, new_request_parser, parse_request_head
from fastgate.wire.status import status_line

_CLOSE = b"\r\nConnection: close\r\n\r\n"
_KEEP_ALIVE_1_0 = b"\r\nConnection: keep-alive\r\n\r\n"
_END = b"\r\n\r\n"


class ClientConnection(asyncio.Protocol):
    __slots__ = (
        "ctx", "proto_header", "transport", "session", "closed", "state", "buffer", "deadline", "waiting",
        "reading_paused", "writing_paused", "parsing", "parser", "keep_alive", "body_remaining", "body_framer",
        "body_buffer", "sent_continue", "corked_head", "dechunk",
    )

    def __init__(self, ctx: WorkerContext, proto_header: bytes) -> None:
        # shared by all connections of the worker
        self.ctx = ctx
        self.proto_header = proto_header
        """``\\r\\nX-Forwarded-Proto: http`` (or https), pre-encoded by the listener."""
        # per connection
        self.transport: asyncio.Transport | None = None
        self.session: ProxySession | None = None
        """The session of this connection's requests (one at a time), made when it connects."""
        self.closed = False
        self.state = HEAD
        self.buffer = b""
        """Received bytes not yet handled: a partial head, or pipelined requests."""
        self.deadline = 0.0
        self.waiting = IDLE
        self.parser = new_request_parser()
        """Kept across requests without a body; replaced after any other (see parse_request_head)."""
        self.parsing = False
        """``_head_bytes`` is looping over the buffer: a request answered meanwhile must not start another."""
        self.reading_paused = False
        self.writing_paused = False
        # per request
        self.keep_alive = True
        self.body_remaining = 0
        self.body_framer: ChunkedFramer | None = None
        self.body_buffer: BodyBuffer | None = None
        self.sent_continue = False
        self.corked_head = b""
        """A response head held back to go out in one write with the first body bytes."""
        self.dechunk: ChunkedFramer | None = None
        """Set when a chunked response goes to an HTTP/1.0 client without its coding."""

    # -- asyncio callbacks -------------------------------------------------
    def connection_made(self, transport: asyncio.Transport, counted: bool = False) -> None:
        """``counted``: the connection is counted as accepted by whoever learns its protocol (a listener
        that also serves h2c counts it once its first bytes tell)."""
        self.transport = transport
        transport.set_write_buffer_limits(WRITE_HIGH_BYTES, WRITE_LOW_BYTES)
        peer = transport.get_extra_info("peername")
        client_text = peer[0] if peer else "unix"
        ctx = self.ctx
        self.session = ProxySession(ctx, self, client_text.encode(), client_text, self.proto_header)
        ctx.connections.add(self)
        ctx.clock.watched.add(self)
        if not counted:
            ctx.metrics.count_accepted()
        self.deadline = ctx.clock.now + ctx.keepalive_timeout_s

    def connection_lost(self, exc: Exception | None) -> None:
        status = self._status_of_cut()
        self.state = CLOSED
        self.closed = True
        self.session.client_gone(status)
        ctx = self.ctx
        ctx.connections.discard(self)
        ctx.clock.watched.discard(self)
        if ctx.draining and not ctx.connections:
            ctx.on_drained()

    def eof_received(self) -> bool:
        """The client shut its sending side. A tunnel passes that on; otherwise the connection closes,
        and a request in progress is logged 499 and its upstream exchange dropped (as nginx does: a
        half-close cannot be told from a client that left)."""
        if self.state == TUNNEL and self.session.upstream is not None:
            self.session.tunnel_eof()
            return True
        return False

    def pause_writing(self) -> None:
        self.writing_paused = True
        self.session.pause_upstream()
        self.deadline = self.ctx.clock.now + self.ctx.send_timeout_s
        self.waiting = SEND

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.session.resume_upstream()
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
                self.deadline = self.ctx.clock.now + self.session.timeout_s()
                self.session.tunnel_data(data)
            elif state == WAIT or state == PENDING:
                self.buffer += data
                if len(self.buffer) > self.ctx.max_head_bytes:
                    self.pause_reading()
            elif state == BUFFER:
                self._buffer_bytes(data)
        except Exception:
            self.session.internal_error()

    def on_deadline(self) -> None:
        waiting = self.waiting
        if waiting == HEAD_TIMEOUT:
            self.session.refuse(408, "request head not received in time")
        elif waiting == BODY_TIMEOUT and not self.session.response_started:
            self.session.refuse(408, "request body not received in time")
        else:  # idle keep-alive, stalled body, slow reader, idle tunnel
            self.abort()

    # -- request side ---------------------------------------------------------
    def _head_bytes(self, data: bytes) -> None:
        ctx = self.ctx
        if self.buffer:
            data = self.buffer + data
            self.buffer = b""
        self.parsing = True
        try:
            while data:
                if data[:2] == b"\r\n":  # an empty line before a request line (RFC 9112 2.2): CRLF only
                    data = data[2:]
                    continue
                end = data.find(HEAD_END)
                if end < 0:
                    self.buffer = data
                    if self.waiting != HEAD_TIMEOUT:
                        self.waiting = HEAD_TIMEOUT
                        self.deadline = ctx.clock.now + ctx.header_timeout_s
                    if len(data) > ctx.max_line_bytes and data.find(b"\r\n") < 0:
                        self.session.refuse(414, "request line too long")
                    elif len(data) > ctx.max_head_bytes:
                        self.session.refuse(431, "request header fields too large")
                    return
                end += 4
                if end > ctx.max_head_bytes:
                    self.session.refuse(414 if data.find(b"\r\n") > ctx.max_line_bytes else 431,
                                        "request header fields too large")
                    return
                if end == len(data):
                    self.buffer = b""
                    self._request(data)
                else:
                    self.buffer = data[end:]
                    self._request(data[:end])
                if self.state != HEAD:
                    return
                data = self.buffer
                self.buffer = b""
        finally:
            self.parsing = False
        self.waiting = IDLE
        self.deadline = ctx.clock.now + ctx.keepalive_timeout_s

    def _request(self, raw: bytes) -> None:
        """Handle one complete request head; the bytes after it are in ``buffer``."""
        ctx = self.ctx
        session = self.session
        session.begin(len(raw))
        try:
            head = parse_request_head(raw, ctx.max_line_bytes, ctx.max_headers, self.parser, ctx.path_rules)
        except HeadError as exc:
            session.refuse(exc.status, exc.reason)
            return
        if head.has_body or head.upgrade:
            self.parser = new_request_parser()
        self.keep_alive = head.keep_alive and not ctx.draining
        self.state = PENDING if head.has_body else WAIT
        self.waiting = IDLE
        self.deadline = 0.0
        self.sent_continue = False
        session.start(head)

    def read_body(self, limit: int) -> None:
        """Read the body (BUFFER) until it ended or ``limit`` payload bytes are in; then
        ``session.body_ready(body)``."""
        head = self.session.head
        self.state = BUFFER
        self.body_buffer = BodyBuffer(head, limit, self.session.route.max_body_bytes)
        self._continue(head)
        self.waiting = BODY_TIMEOUT
        self.deadline = self.ctx.clock.now + self.ctx.body_timeout_s
        if self.buffer:
            data = self.buffer
            self.buffer = b""
            self._buffer_bytes(data)

    def _buffer_bytes(self, data: bytes) -> None:
        self.deadline = self.ctx.clock.now + self.ctx.body_timeout_s
        body = self.body_buffer
        try:
            ready = body.feed(data)
        except FramingError as exc:
            self.session.refuse_body(exc)
            return
        if not ready:
            return
        self.body_buffer = None
        if body.complete:
            self.state = WAIT
            self.buffer = body.rest
        else:
            self.state = PENDING
        self.waiting = IDLE
        self.deadline = 0.0
        self.session.body_ready(body)

    def stream_body(self, first: bytes | None) -> None:
        """Relay the body to the session as it comes (BODY): ``first``, the bytes already read
        (exactly as received), then what is held and what arrives, until the body ends."""
        head = self.session.head
        self.state = BODY
        if head.chunked:
            self.body_framer = ChunkedFramer(self.session.route.max_body_bytes, REQUEST_TRAILER_FORBIDDEN)
        else:
            self.body_framer = None
            self.body_remaining = head.content_length
        data = self.buffer
        self.buffer = b""
        if first:
            data = first + data
        elif not data:
            self._continue(head)
        self.waiting = BODY_TIMEOUT
        self.deadline = self.ctx.clock.now + self.ctx.body_timeout_s
        if data:
            self._body_bytes(data)

    def _continue(self, head) -> None:
        """Answer ``Expect: 100-continue`` when the body is first asked for and nothing of it came."""
        if head.expect_continue and not self.buffer:
            self.sent_continue = True
            head.expect_continue = False
            self.transport.write(CONTINUE)

    def _body_bytes(self, data: bytes) -> None:
        self.deadline = self.ctx.clock.now + self.ctx.body_timeout_s
        framer = self.body_framer
        session = self.session
        if framer is not None:
            try:
                end = framer.feed(data)
            except FramingError as exc:
                self.session.refuse_body(exc)
                return
            if end < 0:
                session.send_body(data)
                return
        else:
            end = self.body_remaining
            if len(data) < end:
                self.body_remaining = end - len(data)
                session.send_body(data)
                return
            self.body_remaining = 0
        session.send_body(data[:end] if end < len(data) else data)
        self.body_framer = None
        self.state = WAIT
        self.waiting = IDLE
        self.deadline = 0.0
        if end < len(data):
            self.buffer = data[end:]
        session.body_sent()

    # -- the downstream surface (called by the session) -------------------------
    def write_answer(self, status: int, fields: bytes, body: bytes, close: bool) -> None:
        """An answer made here: ``fields`` are ``\\r\\nName: value`` pieces. A request whose body was
        not read, or ``close``, ends the connection after it."""
        session = self.session
        head = session.head
        if close or not self.keep_alive or self.state != WAIT:
            self.keep_alive = False
            end = _CLOSE
        else:
            end = _KEEP_ALIVE_1_0 if head.http_1_0 else _END
        response = b"".join((
            status_line(status), fields, self.ctx.clock.date_header, end,
            body if head is None or head.method != b"HEAD" else b"",
        ))
        self.transport.write(response)
        session.bytes_out += len(response)

    def send_informational(self, head) -> None:
        """A 1xx other than 101: relayed, except to HTTP/1.0 and a second 100 after the gateway's own."""
        if self.session.head.http_1_0 or (head.status == 100 and self.sent_continue):
            return
        self.sent_continue = self.sent_continue or head.status == 100
        self.transport.write(client_response_head(head, self.session.route, b"", False, False, False))

    def switch_protocols(self, head) -> None:
        """101: the head goes out, and from now on bytes flow both ways untouched."""
        session = self.session
        self.state = TUNNEL
        self.waiting = TUNNEL_IDLE
        self.deadline = self.ctx.clock.now + session.timeout_s()
        self.transport.write(client_response_head(head, session.route, session.request_id, False, False, False))
        if self.buffer:
            session.tunnel_data(self.buffer)
            self.buffer = b""

    def send_response_head(self, head) -> None:
        session = self.session
        request = session.head
        close = not self.keep_alive or head.until_close or self.state == BODY or self.ctx.draining
        dechunk = head.chunked and request.http_1_0
        if dechunk:
            self.dechunk = ChunkedFramer()
            close = True
        else:
            self.dechunk = None
        if close:
            self.keep_alive = False
        self.corked_head = client_response_head(
            head, session.route, session.request_id, close, request.http_1_0, dechunk, session.response_fields)

    def send_data(self, data: bytes) -> None:
        if self.state == TUNNEL:
            self.deadline = self.ctx.clock.now + self.session.timeout_s()
        if self.dechunk is None:
            if self.corked_head:
                data = self.corked_head + data
                self.corked_head = b""
            self.session.bytes_out += len(data)
            self.transport.write(data)
            return
        if self.corked_head:
            self._write_corked_head()
        payload: list[bytes] = []
        try:
            self.dechunk.feed(data, 0, payload)
        except FramingError:
            self.abort()
            return
        self.session.bytes_out += sum(map(len, payload))
        self.transport.writelines(payload)

    def send_trailers(self, fields: list) -> None:
        """The end of a chunked response, with its trailer fields (RFC 9112 7.1.2). To an HTTP/1.0
        client, which gets the body without its coding, they are not sent."""
        if self.corked_head:
            self._write_corked_head()
        if self.dechunk is not None:
            return
        data = render_trailers(fields)
        self.session.bytes_out += len(data)
        self.transport.write(data)

    def end_response(self) -> None:
        """The response's last byte came: a head still held back goes out (a bodiless response)."""
        if self.corked_head:
            self._write_corked_head()

    def response_done(self) -> None:
        """The request is over (answered, logged): keep the connection for the next one, or close it.

        A request whose body was not all read (state other than WAIT), a tunnel,
        or a response that said Connection: close ends the connection. A head
        without Connection: close sent before a drain began keeps it: the next
        request is answered with the close.
        """
        if self.state != WAIT or not self.keep_alive:
            self.close()
            return
        ctx = self.ctx
        self.state = HEAD
        self.waiting = IDLE
        self.deadline = ctx.clock.now + ctx.keepalive_timeout_s
        self.resume_reading()
        if self.buffer and not self.parsing:
            self._head_bytes(b"")

    def response_sent(self) -> bool:
        """Whether bytes of the response went to the client (a head still corked has not)."""
        return self.state == TUNNEL or (self.session.response_started and not self.corked_head)

    def forget_response(self) -> None:
        """Drop a response head that never reached the client (its exchange failed)."""
        self.corked_head = b""
        self.dechunk = None

    def _write_corked_head(self) -> None:
        self.session.bytes_out += len(self.corked_head)
        self.transport.write(self.corked_head)
        self.corked_head = b""

    def pause_reading(self) -> None:
        if not self.reading_paused and self.state != CLOSED:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and self.state != CLOSED:
            self.reading_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        """Close after what was written (an answer that ends the connection)."""
        status = self._status_of_cut()
        self.state = CLOSED
        self.closed = True
        self.buffer = b""
        self.ctx.clock.watched.discard(self)
        self.session.client_gone(status)
        self.transport.close()

    def abort(self) -> None:
        """Cut the connection: a stalled or broken exchange, or an idle keep-alive timeout."""
        status = self._status_of_cut()
        self.state = CLOSED
        self.closed = True
        self.ctx.clock.watched.discard(self)
        self.session.client_gone(status)
        self.transport.abort()

    def _status_of_cut(self) -> int:
        """What the log says of a request cut short: its status once bytes of it went out, else 499."""
        session = self.session
        return session.status if self.response_sent() else 499

    def drain(self) -> None:
        """Graceful stop: the next response says Connection: close, then the connection ends.

        An idle keep-alive connection is not closed at once: the client may be
        sending a request on it right now, and closing would reset it. Nor is
        one whose response head already went out without Connection: close.
        It closes after its next response, at its keep-alive timeout, or when
        the worker's drain timeout ends, whichever comes first.
        """
        if not (self.state == WAIT and self.session.response_started):
            self.keep_alive = False
