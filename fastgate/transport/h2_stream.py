"""One request stream of a client's HTTP/2 connection: the downstream surface its ProxySession is
served through (the connection, h2_server.py, owns the bytes, the windows and the defences).

Theory of operation
-------------------
The request. The stream's header list is checked here (h2's own checks are off)
(``render_request`` in wire/h2_fields.py: no CR/LF/NUL, lower-case token names, no
connection-specific fields, pseudo-headers first and once, :method :scheme
:path present, no CONNECT but WebSocket's: any of these is a stream error PROTOCOL_ERROR),
then rendered as an HTTP/1.1 request head (":authority" becomes Host, cookie
crumbs are joined with "; ") and parsed by ``parse_request_head``, so target,
Host and size rules are the HTTP/1.1 ones; its complaint is answered as JSON,
as for HTTP/1.1. The head says ``http2`` (the access log's "HTTP/2.0").
The session's upstream speaks HTTP/1.1 and relays body bytes as the adapter
gives them: a body with a content-length goes as its DATA payloads; one
without is rendered as chunked (and the head says Transfer-Encoding:
chunked). DATA that disagrees with the content-length is a stream error.
Request trailers go in the last chunk of a body rendered chunked.

Body modes of a stream, as ClientConnection's states: PENDING (the session
has not asked for the body: DATA is held, not acknowledged), BUFFER
(``read_body``: fed to a BodyBuffer), BODY (``stream_body``: relayed with
``send_body``), DONE (the body ended, there was none, or nobody reads it).
Received DATA is acknowledged (WINDOW_UPDATE) only as the session takes it,
so the client's window bounds what waits here; ``pause_reading`` from the
session (its upstream is slow) withholds a stream's acknowledgements, which
stalls that stream alone.

The response. A head (corked until its first DATA or its end, so a failed
exchange can still be retried or answered) becomes HEADERS: the status, then
client_response_head's lines without connection-specific fields, names in
lower case. A chunked upstream body is de-chunked. DATA goes out within the
windows (h2_flow.py, which also pauses the upstreams of a client that does not
read); the body's last bytes by its content-length carry END_STREAM. When the
response ended and the client is still sending, the stream is reset with
NO_ERROR (RFC 9113 8.1).

WebSocket (RFC 8441). The SETTINGS announce ENABLE_CONNECT_PROTOCOL; an
extended CONNECT with ``:protocol websocket`` is rendered as the HTTP/1.1
upgrade it stands for, with a Sec-WebSocket-Key of ours (``websocket_key``),
and the session forwards it as any upgrade (a route that does not allow
websocket answers 403). Its DATA is held (PENDING) until the upstream's 101,
whose Sec-WebSocket-Accept must answer the key (else 502): then the stream
is answered 200 and enters TUNNEL, where DATA payloads go to the upstream as
they are (``tunnel_data``), acknowledged only while the session does not
pause reading (its upstream socket is full), END_STREAM half-closes the
upstream side (``tunnel_eof``), and the upstream's bytes go out as response
DATA within the windows (h2_flow.py pauses the upstream of a client that
does not read); the upstream closing is the response's end (END_STREAM).
Bytes either way restart the tunnel's idle timeout (the route's); a 2xx
that did not switch protocols is a 502 (the client would take it for an
open WebSocket).
"""

from collections import deque
from typing import TYPE_CHECKING

from h2.errors import ErrorCodes

from fastgate.proxy.heads import client_response_head
from fastgate.proxy.session import ProxySession
from fastgate.transport.body_buffer import BodyBuffer
from fastgate.transport.h2_flow import (
    WAIT_BODY_BYTES as _BODY_BYTES, WAIT_NOTHING as _NOTHING, WAIT_TUNNEL_IDLE as _TUNNEL_IDLE,
)
from fastgate.wire.chunked import BodyTooLarge, ChunkedFramer, FramingError, forwardable_trailers, render_trailers
from fastgate.wire.grpc import is_grpc
from fastgate.wire.h1 import HeadError, header_value, new_request_parser, parse_request_head
from fastgate.wire.h2_fields import response_headers, trailer_refused, tunnel_headers
from fastgate.wire.websocket import accept_of

if TYPE_CHECKING:
    from fastgate.transport.h2_server import H2ServerConnection

_PENDING, _BUFFER, _BODY, _TUNNEL, _DONE = range(5)
"""What becomes of the request's DATA (see "Body modes" above)."""


class H2Stream:
    """One request stream: the downstream surface its ProxySession is served through."""

    __slots__ = (
        "conn", "stream_id", "session", "closed",
        # the request's body
        "mode", "content_length", "received", "chunked", "ended", "held", "body_buffer", "paused", "unacked",
        "request_trailers",
        # the response
        "corked", "head_sent", "dechunk", "out", "out_bytes", "out_left", "end_queued", "trailers", "finished",
        "done",
        "upstream_paused", "sent_continue", "deadline", "waiting",
        # an extended CONNECT (WebSocket)
        "websocket_key", "tunnel_idle_s",
    )

    def __init__(self, conn: "H2ServerConnection", stream_id: int) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.session = ProxySession(conn.ctx, self, conn.client_ip, conn.client_text, conn.proto_header)
        self.closed = False
        """The session's view: the stream is over for it (answered and closed, reset, or the connection gone)."""
        self.mode = _DONE
        self.content_length = -1
        self.received = 0
        """Payload bytes of DATA received."""
        self.chunked = False
        """The body is rendered chunked (no content-length)."""
        self.ended = False
        """The client ended its side of the stream (END_STREAM received)."""
        self.request_trailers: list | None = None
        """The request's trailer fields, relayed in the last chunk."""
        self.held: deque = deque()
        """(rendered bytes, flow-controlled length, last) received while the session does not read."""
        self.body_buffer: BodyBuffer | None = None
        self.paused = False
        """The session paused reading: received DATA is not acknowledged."""
        self.unacked = 0
        self.corked: list | None = None
        """Response headers held back until the first DATA or the end."""
        self.head_sent = False
        self.dechunk: ChunkedFramer | None = None
        self.out: deque = deque()
        """Response DATA waiting for window."""
        self.out_bytes = 0
        self.out_left = -1
        """Response body bytes still to come, by its content-length (-1: unknown): at 0 the last DATA can
        carry END_STREAM before the session ends the response."""
        self.end_queued = False
        """The response ended: END_STREAM goes with the last queued byte (or with the trailers)."""
        self.trailers: list | None = None
        """The response's trailer fields, sent as HEADERS with END_STREAM after the last DATA."""
        self.finished = False
        """END_STREAM was sent, or the stream was reset: nothing more goes out."""
        self.done = False
        """The session is done with the stream (``response_done`` or ``close``)."""
        self.upstream_paused = False
        self.sent_continue = False
        self.deadline = 0.0
        """While the stream waits on the client (the clock watches it): when to give up."""
        self.waiting = _NOTHING
        """What it waits for: _BODY_BYTES (the request body, body_timeout), _WINDOW (room for its
        response, send_timeout) or _TUNNEL_IDLE (bytes through its tunnel); _NOTHING."""
        self.websocket_key = b""
        """The Sec-WebSocket-Key sent upstream for an extended CONNECT (b"": an ordinary request)."""
        self.tunnel_idle_s = 0.0
        """Once its tunnel is open: how long it may carry nothing either way (the upstream's read timeout)."""

    # -- the request (called by the connection) -----------------------------------
    def start(self, raw: bytes, end_stream: bool) -> None:
        ctx = self.conn.ctx
        session = self.session
        self.ended = end_stream
        session.begin(len(raw))
        if len(raw) > ctx.max_head_bytes:
            session.refuse(431, "request header fields too large")
            return
        try:
            head = parse_request_head(raw, ctx.max_line_bytes, ctx.max_headers, new_request_parser(), ctx.path_rules)
        except HeadError as exc:
            session.refuse(exc.status, exc.reason)
            return
        head.http2 = True
        head.grpc = is_grpc(raw)
        self.content_length = head.content_length
        self.chunked = head.chunked
        if head.upgrade:  # only an extended CONNECT renders as one: its DATA waits for the tunnel
            self.websocket_key = header_value(raw, b"sec-websocket-key")
            self.mode = _PENDING
        else:
            self.mode = _PENDING if head.has_body else _DONE
        session.start(head)

    def data(self, data: bytes, flow: int) -> None:
        """A DATA frame's payload; ``flow`` is what it counts against the windows."""
        if self.waiting == _BODY_BYTES:
            self.deadline = self.conn.ctx.clock.now + self.conn.ctx.body_timeout_s
        received = self.received + len(data)
        self.received = received
        if self.websocket_key:
            self._deliver(data, flow, False)
            return
        length = self.content_length
        if length >= 0:
            if received > length:
                self.protocol_error()
                return
            self._deliver(data, flow, received == length)
            return
        route = self.session.route
        if route is not None and received > route.max_body_bytes:
            self._refuse_body(BodyTooLarge("request body too large"))
            self.conn.ack(self.stream_id, flow)
            return
        self._deliver(b"%x\r\n%b\r\n" % (len(data), data) if data else b"", flow, False)

    def end(self) -> None:
        """END_STREAM: the request body is complete."""
        self.ended = True
        if self.content_length >= 0:
            if self.received != self.content_length:
                self.protocol_error()
        elif self.chunked:
            self._deliver(render_trailers(self.request_trailers) if self.request_trailers else b"0\r\n\r\n", 0, True)
        elif self.websocket_key:
            self._deliver(b"", 0, True)

    def trailers_received(self, fields: list) -> None:
        """The request's trailer fields (END_STREAM follows): one that is malformed, or frames, routes
        or authorises the request, is a stream error (with or without a content-length, as h2's own
        checks made it); the rest are relayed in the last chunk of a body rendered chunked, as an
        HTTP/1.1 client's are, and dropped with a content-length (no chunk to carry them)."""
        for name, value in fields:
            if trailer_refused(name, value):
                self.protocol_error()
                return
        if self.chunked:
            self.request_trailers = fields

    def _deliver(self, rendered: bytes, flow: int, last: bool) -> None:
        mode = self.mode
        if mode == _PENDING:
            self.held.append((rendered, flow, last))
        elif mode == _BUFFER:
            self.conn.ack(self.stream_id, flow)
            if rendered:
                self._buffer(rendered)
        elif mode == _BODY:
            if self.paused:
                self.unacked += flow
            else:
                self.conn.ack(self.stream_id, flow)
            session = self.session
            if rendered:
                session.send_body(rendered)
            if last and not self.closed:
                self.mode = _DONE
                self._unwatch(_BODY_BYTES)
                session.body_sent()
        elif mode == _TUNNEL and not self.done:
            if self.paused:
                self.unacked += flow
            else:
                self.conn.ack(self.stream_id, flow)
            self._tunnel_active()
            if rendered:
                self.session.tunnel_data(rendered)
            if last:
                self.session.tunnel_eof()
        else:
            self.conn.ack(self.stream_id, flow)

    def _buffer(self, rendered: bytes) -> None:
        body = self.body_buffer
        try:
            ready = body.feed(rendered)
        except FramingError as exc:
            self._refuse_body(exc)
            return
        if not ready:
            return
        self.body_buffer = None
        self.mode = _DONE if body.complete else _PENDING
        self._unwatch(_BODY_BYTES)
        self.session.body_ready(body)

    def _replay(self) -> None:
        """Deliver what was held, as long as the session reads."""
        held = self.held
        while held and (self.mode == _BUFFER or self.mode == _BODY or self.mode == _TUNNEL) and not self.closed:
            self._deliver(*held.popleft())

    def _refuse_body(self, exc: FramingError) -> None:
        """A body that cannot be relayed: the session's 413/400, or a cut once the response began."""
        if self.session.response_started:
            self.abort()
        else:
            self.session.refuse_body(exc)

    def _continue(self) -> None:
        """Answer ``expect: 100-continue`` when the body is first asked for and nothing of it came."""
        head = self.session.head
        if head.expect_continue and not self.received and not self.ended:
            head.expect_continue = False
            self.sent_continue = True
            self.conn.send_headers(self, [(b":status", b"100")], False)

    def reset_by_client(self) -> None:
        """RST_STREAM from the client: the request is cut (499 unless its response went out)."""
        self.finished = self.ended = True
        self._gone()
        self.conn.stream_over(self)

    def protocol_error(self) -> None:
        """A stream error: reset PROTOCOL_ERROR, nothing more forwarded."""
        self._gone()
        self._reset(ErrorCodes.PROTOCOL_ERROR)

    def connection_gone(self) -> None:
        self.finished = True
        self._gone()

    def _gone(self) -> None:
        if not self.closed:
            self.closed = True
            self.done = True
            self.session.client_gone(self._status_of_cut())

    # -- the downstream surface (called by the session) --------------------------
    def write_answer(self, status: int, fields: bytes, body: bytes, close: bool) -> None:
        """An answer made here: ``fields`` are ``\\r\\nName: value`` pieces; Date is added."""
        session = self.session
        head = session.head
        self.corked = response_headers(status, fields + self.conn.ctx.clock.date_header)
        session.bytes_out += len(fields) + 40
        self.end_queued = True
        if body and (head is None or head.method != b"HEAD"):
            self._queue(body)
        self.conn.flush_stream(self)

    def send_informational(self, head) -> None:
        """A 1xx other than 101, relayed; a second 100 after the gateway's own is not."""
        if head.status == 100 and self.sent_continue:
            return
        self.sent_continue = self.sent_continue or head.status == 100
        raw = client_response_head(head, self.session.route, b"", False, False, False)
        self.conn.send_headers(self, response_headers(head.status, raw[head.line_end:]), False)

    def switch_protocols(self, head) -> None:
        """The upstream accepted the WebSocket upgrade an extended CONNECT was sent as (RFC 8441): if
        its Sec-WebSocket-Accept answers our key, the stream is answered 200 (logged so) and from now on
        carries the tunnel's bytes as DATA both ways, each way within its windows; else 502."""
        session = self.session
        if header_value(head.raw, b"sec-websocket-accept") != accept_of(self.websocket_key):
            session.on_upstream_failed(502, "upstream's Sec-WebSocket-Accept does not answer the key sent")
            return
        session.status = 200
        raw = client_response_head(head, session.route, session.request_id, False, False, False)
        session.bytes_out += len(raw)
        self.tunnel_idle_s = session.timeout_s()
        if not self.conn.send_headers(self, tunnel_headers(raw[head.line_end:]), False):
            self.abort()
            return
        self.head_sent = True
        self.mode = _TUNNEL
        self._tunnel_active()
        self._replay()

    def send_response_head(self, head) -> None:
        session = self.session
        if self.websocket_key and 200 <= head.status < 300:  # a 2xx would tell the client its WebSocket is open
            session.on_upstream_failed(502, "upstream answered a WebSocket upgrade without switching protocols")
            return
        dechunk = head.chunked
        self.dechunk = ChunkedFramer(keep_trailers=True) if dechunk else None
        raw = client_response_head(head, session.route, session.request_id, False, False, dechunk,
                                   session.response_fields)
        session.bytes_out += len(raw)
        self.corked = response_headers(head.status, raw[head.line_end:])
        self.out_left = head.content_length

    def send_data(self, data: bytes) -> None:
        dechunk = self.dechunk
        if self.mode == _TUNNEL:
            self._tunnel_active()
        if dechunk is None:
            self._queue(data)
            if self.out_left > 0:
                self.out_left -= len(data)
                self.end_queued = self.out_left == 0
        else:
            payload: list[bytes] = []
            try:
                dechunk.feed(data, 0, payload)
            except FramingError:
                self.abort()
                return
            for piece in payload:
                self._queue(piece)
            if dechunk.trailers:  # an HTTP/1.1 upstream's chunked trailers
                self.send_trailers(forwardable_trailers(dechunk.trailers))
        self.conn.flush_stream(self)

    def send_trailers(self, fields: list) -> None:
        """The response's trailer fields: HEADERS with END_STREAM once its DATA is out."""
        if fields:
            self.trailers = fields
            self.session.bytes_out += sum(len(name) + len(value) + 4 for name, value in fields)

    def _queue(self, data) -> None:
        if not data:
            return
        self.out.append(data)
        self.session.bytes_out += len(data)
        self.conn.queued(self, len(data))

    def end_response(self) -> None:
        self.end_queued = True
        self.conn.flush_stream(self)

    def response_done(self) -> None:
        """The request is over (answered, logged): the stream ends once its last byte is out."""
        self.done = True
        if self.finished:
            self.conn.stream_over(self)

    def response_sent(self) -> bool:
        return self.head_sent

    def forget_response(self) -> None:
        """Drop a response that never reached the client (its exchange failed)."""
        self.corked = None
        self.dechunk = None
        self.trailers = None
        self.out.clear()
        self.conn.held_bytes -= self.out_bytes
        self.out_bytes = 0
        self.out_left = -1
        self.end_queued = False

    def read_body(self, limit: int) -> None:
        session = self.session
        self.body_buffer = BodyBuffer(session.head, limit, session.route.max_body_bytes)
        self.mode = _BUFFER
        self._continue()
        self._watch(_BODY_BYTES, self.conn.ctx.body_timeout_s)
        self._replay()

    def stream_body(self, first: bytes | None) -> None:
        self.mode = _BODY
        self._watch(_BODY_BYTES, self.conn.ctx.body_timeout_s)
        if first:
            self.session.send_body(first)
        else:
            self._continue()
        self._replay()

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        if self.paused:
            self.paused = False
            if self.unacked:
                unacked = self.unacked
                self.unacked = 0
                self.conn.ack(self.stream_id, unacked)
                self.conn.send_soon()

    def close(self) -> None:
        """The session is done with the stream: an answer queued still goes out, else the stream is reset."""
        self._gone()
        if self.end_queued and not self.finished:
            return  # flush_stream ends it, then stream_over
        if self.finished:
            self.conn.stream_over(self)
        else:
            self._reset(ErrorCodes.INTERNAL_ERROR)

    def abort(self) -> None:
        """Cut the stream (a broken or stalled exchange)."""
        self._gone()
        self._reset(ErrorCodes.INTERNAL_ERROR)

    def _status_of_cut(self) -> int:
        return self.session.status if self.head_sent else 499

    # -- timeouts -------------------------------------------------------------------
    def _watch(self, what: int, timeout_s: float) -> None:
        clock = self.conn.ctx.clock
        self.waiting = what
        self.deadline = clock.now + timeout_s
        clock.watched.add(self)

    def _unwatch(self, what: int) -> None:
        if self.waiting == what:
            self.waiting = _NOTHING
            self.deadline = 0.0
            self.conn.ctx.clock.watched.discard(self)
            if self.mode == _TUNNEL and what != _TUNNEL_IDLE and not self.done:
                self._tunnel_active()

    def _tunnel_active(self) -> None:
        """Bytes went through the tunnel: its idle timeout starts again (unless a send_timeout runs)."""
        if self.waiting == _NOTHING or self.waiting == _TUNNEL_IDLE:
            self._watch(_TUNNEL_IDLE, self.tunnel_idle_s)

    def on_deadline(self) -> None:
        """The client sent nothing of the body for body_timeout (408, or the stream is cut once its
        response began), left no room for the response for send_timeout, or a tunnel carried nothing
        for its idle timeout (cut)."""
        waiting = self.waiting
        self._unwatch(waiting)
        if self.closed:
            return
        if waiting == _BODY_BYTES and not self.session.response_started:
            self.session.refuse(408, "request body not received in time")
        else:
            self.abort()

    def _reset(self, code) -> None:
        self.forget_response()
        self.ended = True  # RST_STREAM ends both directions
        if not self.finished:
            self.finished = True
            self.conn.reset_stream(self.stream_id, code)
        self.conn.stream_over(self)
