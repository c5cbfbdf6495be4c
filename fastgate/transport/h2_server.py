"""A client's HTTP/2 connection: the downstream adapter of the proxy core for HTTP/2.

Theory of operation
-------------------
``H2ServerConnection`` is an asyncio Protocol over the sans-IO ``h2`` library
(server side; h2's own header checks are off: those below are stricter).
It multiplexes: every request stream
gets an ``H2Stream``, which offers its own ProxySession (proxy/session.py)
the same downstream surface ClientConnection (h1_server.py) offers, so the
request's life (route, limits, answer or forward, retries, log) is the
session's, exactly as for HTTP/1.1. The connection owns the bytes, the
flow-control windows, the stream table and the timeouts.

The request. The stream's header list is checked beyond what h2 checks
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

Limits and defences (``[http2]``, transport/h2_settings.py): the SETTINGS
announce the concurrency, frame, header-list, HPACK-table and window sizes,
and h2 enforces them from the first byte; a stream past the concurrency
limit is refused (REFUSED_STREAM). Every read passes the FrameGuard
(wire/h2_guard.py) before h2 sees it: a header block growing past the header
list limit, too many overhead frames, or too many streams reset while in
progress (rapid reset) end the connection with GOAWAY ENHANCE_YOUR_CALM, as an
HPACK bomb does in h2's decoder; a reset stream's session lets go of its
upstream at once. While the client does not read, nothing more is read from it.
Each such end, and every connection error h2 finds, is counted by reason.

Graceful stop: ``drain`` sends GOAWAY with the largest stream id and a PING;
once the PING is answered and no stream is left in flight, GOAWAY with the
last stream id served, and the connection closes.
"""

import asyncio
from collections import deque

from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated, DataReceived, PingAckReceived, RemoteSettingsChanged, RequestReceived, StreamEnded,
    StreamReset, TrailersReceived, WindowUpdated,
)
from h2.exceptions import DenialOfServiceError, ProtocolError
from hyperframe.frame import GoAwayFrame

from fastgate.observe.errorlog import log
from fastgate.proxy.heads import client_response_head
from fastgate.proxy.session import ProxySession
from fastgate.transport.body_buffer import BodyBuffer
from fastgate.transport.context import WorkerContext
from fastgate.transport.h2_flow import (
    WAIT_BODY_BYTES as _BODY_BYTES, WAIT_NOTHING as _NOTHING, WAIT_TUNNEL_IDLE as _TUNNEL_IDLE, ResponseFlow,
)
from fastgate.wire.chunked import (
    BodyTooLarge, ChunkedFramer, FramingError, forwardable_trailers, render_trailers,
)
from fastgate.wire.grpc import is_grpc
from fastgate.wire.h1 import HeadError, header_value, new_request_parser, parse_request_head
from fastgate.wire.h2_fields import StreamError, render_request, response_headers, trailer_refused, tunnel_headers
from fastgate.wire.h2_guard import HEADER_LIST, PROTOCOL_ERROR
from fastgate.wire.websocket import accept_of

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""The client connection preface: an h2c connection with prior knowledge opens with it."""
_LINGER_S = 1.0
"""After a connection error's GOAWAY, how long what the client still sends is read and dropped."""
_DISCARD_BYTES = 64 * 1024
"""After a complete response, how much more of the request body is read and dropped before the stream
is reset (RST_STREAM NO_ERROR): h2 answers DATA that arrives after our reset with a reset of its own
(STREAM_CLOSED), which clients such as curl report as an error even after a whole response."""
_LAST_STREAM_ID = (1 << 31) - 1
"""The last stream id of a graceful stop's first GOAWAY: no new streams, but those on the way are served."""
_DRAIN_PING = b"fg-drain"
"""The PING sent after that GOAWAY: its ACK tells that the client saw it (a round trip later)."""
_DRAIN_ACK_WAIT_S = 1.0
"""How long the final GOAWAY (with the real last stream id) waits for that ACK."""

_PENDING, _BUFFER, _BODY, _TUNNEL, _DONE = range(5)

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
        """The request's trailer fields (END_STREAM follows): relayed in the last chunk of a body
        rendered chunked, as an HTTP/1.1 client's are; one that frames, routes or authorises the
        request is a stream error; with a content-length they are dropped (no chunk to carry them)."""
        if not self.chunked:
            return
        for name, value in fields:
            if trailer_refused(name, value):
                self.protocol_error()
                return
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


class H2ServerConnection(ResponseFlow, asyncio.Protocol):
    """A client's HTTP/2 connection: h2's state, the streams, the windows, the timeouts, the defences."""

    __slots__ = (
        "ctx", "proto_header", "transport", "h2", "streams", "closed", "client_ip", "client_text",
        "writing_paused", "deadline", "going_away", "goaway_sent", "lingering", "discarding", "guard", "verdict",
        "last_stream_id", "drain_acked",
        "held_bytes", "paused_streams", "send_scheduled",
    )

    def __init__(self, ctx: WorkerContext, proto_header: bytes) -> None:
        self.ctx = ctx
        self.proto_header = proto_header
        self.transport: asyncio.Transport | None = None
        self.h2: H2Connection | None = None
        self.streams: dict[int, H2Stream] = {}
        self.closed = False
        self.client_ip = b""
        self.client_text = ""
        self.writing_paused = False
        self.deadline = 0.0
        self.going_away = False
        """A graceful stop began: GOAWAY with the largest stream id went out, the final one follows."""
        self.drain_acked = False
        """The client answered the graceful stop's PING (or did not within _DRAIN_ACK_WAIT_S)."""
        self.goaway_sent = False
        """No new stream is served: the final GOAWAY went out (or came in)."""
        self.discarding: dict[int, int] = {}
        """Streams answered while the client still sends: stream id -> body bytes still dropped before a reset."""
        self.lingering = False
        """A connection error's GOAWAY went out: what the client still sends is read and dropped for a
        moment (closing at once would answer it with a reset, which can destroy the GOAWAY)."""
        self.guard = None
        """The frame-level defences (wire/h2_guard.py FrameGuard)."""
        self.verdict = ""
        """Abuse found while h2's events are handled: the connection ends once they are (a reason)."""
        self.last_stream_id = 0
        """The highest stream id whose request was looked at (h2 may have parsed more of a read)."""
        self.held_bytes = 0
        """Response bytes waiting in the streams' queues (h2_flow.py)."""
        self.paused_streams: set = set()
        """Streams whose upstream is paused because their client does not take their response."""
        self.send_scheduled = False
        """``send_soon`` asked for a write at the end of this loop turn."""

    # -- asyncio callbacks ----------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client_text = peer[0] if peer else "unix"
        self.client_ip = self.client_text.encode()
        ctx = self.ctx
        self.h2 = ctx.http2.server_connection()
        self.guard = ctx.http2.frame_guard(ctx.clock.now)
        ctx.connections.add(self)
        ctx.clock.watched.add(self)
        ctx.metrics.count_h2_opened()
        self.deadline = ctx.clock.now + ctx.keepalive_timeout_s
        self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        streams = list(self.streams.values())
        self.streams.clear()
        self.paused_streams.clear()
        for stream in streams:
            try:
                stream.connection_gone()
            except Exception:
                log.exception("internal error ending an HTTP/2 stream of %s", self.client_text)
        ctx = self.ctx
        ctx.metrics.count_h2_closed()
        ctx.connections.discard(self)
        ctx.clock.watched.discard(self)
        if ctx.draining and not ctx.connections:
            ctx.on_drained()

    def pause_writing(self) -> None:
        """The client does not take what is sent: nothing more is read from it either, so that what it
        sends cannot make more to send (PING and SETTINGS acknowledgements, resets)."""
        self.writing_paused = True
        self.deadline = self.ctx.clock.now + self.ctx.send_timeout_s
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if not self.closed:
            self.transport.resume_reading()
        self._idle_deadline()
        self.flush_all()

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return
        reason = self.guard.scan(data, self.ctx.clock.now)
        if reason is not None:
            self._abuse(reason)
            return
        try:
            events = self.h2.receive_data(data)
        except ProtocolError as exc:
            self.ctx.metrics.count_h2_abuse(HEADER_LIST if isinstance(exc, DenialOfServiceError) else PROTOCOL_ERROR)
            self._connection_error()
            return
        try:
            for event in events:
                self._event(event)
                if self.verdict:
                    self._abuse(self.verdict)
                    return
        except Exception:
            log.exception("internal error serving HTTP/2 client %s", self.client_text)
            self.transport.abort()
            return
        self.send()
        if self.ctx.draining and not self.going_away:  # came in while the worker drains: served, then GOAWAY
            self.drain()
        elif self.drain_acked and not self.streams and not self.goaway_sent:
            self._final_goaway()

    def _abuse(self, reason: str) -> None:
        """GOAWAY ENHANCE_YOUR_CALM (with the last stream looked at), then as any connection error."""
        log.info("HTTP/2 client %s: %s, connection closed (ENHANCE_YOUR_CALM)", self.client_text, reason)
        self.ctx.metrics.count_h2_abuse(reason)
        try:
            self.h2.close_connection(ErrorCodes.ENHANCE_YOUR_CALM, last_stream_id=self.last_stream_id)
        except ProtocolError:
            pass  # h2 already closed its side; the transport goes anyway
        self._connection_error()

    def _connection_error(self) -> None:
        """A connection error with its GOAWAY queued in h2: send it, cut the streams, linger, close."""
        self.goaway_sent = True
        self.send()
        for stream in list(self.streams.values()):
            stream.connection_gone()
        self.streams.clear()
        self.paused_streams.clear()
        self._close_after_goaway()

    def _close_after_goaway(self) -> None:
        """Half-close and linger, reading and dropping what the client still sends for a moment:
        closing at once would answer it with a TCP reset, which can destroy the GOAWAY and the last
        responses before the client read them."""
        transport = self.transport
        if transport.can_write_eof():
            transport.write_eof()
            self.lingering = True
            self.deadline = self.ctx.clock.now + _LINGER_S
            transport.resume_reading()
        else:
            transport.close()

    def _event(self, event) -> None:
        streams = self.streams
        if isinstance(event, DataReceived):
            stream = streams.get(event.stream_id)
            if stream is None:
                self.ack(event.stream_id, event.flow_controlled_length)
                self._discard(event.stream_id, event.flow_controlled_length, event.stream_ended is not None)
                return
            self._stream_call(stream, stream.data, event.data, event.flow_controlled_length)
            if event.stream_ended is not None and not stream.ended and not stream.finished:
                self._stream_call(stream, stream.end)
        elif isinstance(event, RequestReceived):
            self._new_stream(event)
        elif isinstance(event, TrailersReceived):
            stream = streams.get(event.stream_id)
            if stream is not None:
                self._stream_call(stream, stream.trailers_received, event.headers)
        elif isinstance(event, StreamEnded):
            stream = streams.get(event.stream_id)
            if stream is not None and not stream.ended:
                self._stream_call(stream, stream.end)
            self.discarding.pop(event.stream_id, None)
        elif isinstance(event, (WindowUpdated, RemoteSettingsChanged)):
            self.flush_all()
        elif isinstance(event, StreamReset):
            self.discarding.pop(event.stream_id, None)
            stream = streams.get(event.stream_id)
            if stream is not None:
                in_progress = not stream.finished
                stream.reset_by_client()
                if in_progress:
                    self.verdict = self.guard.reset(self.ctx.clock.now) or ""
        elif isinstance(event, PingAckReceived):
            if self.going_away and event.ping_data == _DRAIN_PING:
                self._drain_acked()
        elif isinstance(event, ConnectionTerminated):
            self.goaway_sent = True  # no new streams either way
            if not streams:
                self.transport.close()

    def _stream_call(self, stream: H2Stream, method, *args) -> None:
        try:
            method(*args)
        except Exception:
            stream.session.internal_error()

    def _new_stream(self, event: RequestReceived) -> None:
        stream_id = event.stream_id
        self.last_stream_id = stream_id
        if self.goaway_sent:
            self.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        if len(self.streams) + len(self.discarding) >= self.ctx.http2.max_concurrent_streams:
            self.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            self.verdict = self.guard.reset(self.ctx.clock.now) or ""
            return
        end_stream = event.stream_ended is not None
        try:
            raw = render_request(event.headers, end_stream)
        except StreamError:
            self.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
            return
        stream = H2Stream(self, stream_id)
        self.streams[stream_id] = stream
        if not self.writing_paused and not self.going_away:
            self.deadline = 0.0
        self._stream_call(stream, stream.start, raw, end_stream)

    def on_deadline(self) -> None:
        """Idle (no stream) for the keep-alive timeout, a client that does not read, the end of a
        connection error's lingering, or a graceful stop whose PING went unanswered."""
        if self.lingering:
            self.transport.close()
        elif self.writing_paused:
            self.transport.abort()
        elif self.going_away and not self.drain_acked:
            self._drain_acked()
            if not self.streams:
                self._final_goaway()
        elif not self.streams:
            self.goaway_sent = True
            self.h2.close_connection()
            self.send()
            self.transport.close()
        else:
            self.deadline = 0.0

    def _idle_deadline(self) -> None:
        now = self.ctx.clock.now
        if self.going_away and not self.drain_acked:
            self.deadline = now + _DRAIN_ACK_WAIT_S
        else:
            self.deadline = now + self.ctx.keepalive_timeout_s if not self.streams else 0.0

    # -- what the streams call -----------------------------------------------------
    def send(self) -> None:
        """Write what h2 has to send, now: before the transport closes or writes past h2, at the end of
        a read, and where a full socket must stop a sending loop."""
        data = self.h2.data_to_send()
        if data and not self.closed:
            self.transport.write(data)

    def send_soon(self) -> None:
        """Write what h2 has to send at the end of this loop turn: the responses of several streams
        that complete in one turn (each upstream's read is its own callback) go out in one write,
        not a system call each. Any ``send`` before then takes them along."""
        if not self.send_scheduled:
            self.send_scheduled = True
            self.ctx.clock.loop.call_soon(self._send_scheduled)

    def _send_scheduled(self) -> None:
        self.send_scheduled = False
        if not self.transport.is_closing():
            self.send()

    def ack(self, stream_id: int, flow: int) -> None:
        """``flow`` bytes of the stream's DATA were taken: the client may send as much more."""
        if flow and not self.closed:
            self.h2.acknowledge_received_data(flow, stream_id)

    def reset_stream(self, stream_id: int, code) -> None:
        if self.closed:
            return
        try:
            self.h2.reset_stream(stream_id, code)
        except ProtocolError:
            pass  # already closed on h2's side
        self.send_soon()

    def send_headers(self, stream: H2Stream, headers: list, end: bool) -> bool:
        if self.closed or stream.finished:
            return False
        try:
            self.h2.send_headers(stream.stream_id, headers, end_stream=end)
        except ProtocolError:
            log.warning("HTTP/2 response headers refused for %s: %r", self.client_text, headers)
            return False
        self.send_soon()
        return True

    def stream_over(self, stream: H2Stream) -> None:
        """The stream is done on both sides as far as we are concerned: forget it, and free the window
        its unread DATA took (a client still sending may go on for _DISCARD_BYTES, dropped, before it is
        told to stop: ``_discard``)."""
        if stream.waiting != _NOTHING:
            stream._unwatch(stream.waiting)
        if self.streams.pop(stream.stream_id, None) is None:
            return
        self.paused_streams.discard(stream)
        if self.closed:
            return
        flow = stream.unacked + sum(item[1] for item in stream.held)
        stream.held.clear()
        stream.unacked = 0
        if not stream.ended:
            stream.ended = True
            self.discarding[stream.stream_id] = _DISCARD_BYTES
        if flow:
            self.h2.acknowledge_received_data(flow, stream.stream_id)
        if not self.streams and self.goaway_sent:
            self.send()
            self.transport.close()
            return
        self.send_soon()
        if not self.streams:
            if self.drain_acked:
                self._final_goaway()
            elif not self.writing_paused and not self.going_away:
                self._idle_deadline()

    def _discard(self, stream_id: int, length: int, ended: bool) -> None:
        """DATA of a stream answered while its client still sends: dropped up to _DISCARD_BYTES, then
        the client is told to stop (RST_STREAM NO_ERROR, RFC 9113 8.1)."""
        left = self.discarding.get(stream_id)
        if left is None:
            return
        left -= length
        if ended:
            del self.discarding[stream_id]
        elif left < 0:
            del self.discarding[stream_id]
            try:
                self.h2.reset_stream(stream_id, ErrorCodes.NO_ERROR)
            except ProtocolError:
                pass
        else:
            self.discarding[stream_id] = left

    # -- graceful stop ----------------------------------------------------------------
    def drain(self) -> None:
        """Graceful stop, in two steps (RFC 9113 6.8): GOAWAY with the largest stream id and a PING.
        Once the PING is answered (the streams the client opened before it saw the GOAWAY have
        arrived), or after _DRAIN_ACK_WAIT_S, and once no stream is left in flight, the final GOAWAY
        with the last stream id served, and the connection closes. Waiting for the streams to end
        serves those a client had queued behind its PING ACK (nghttp2 sends the ACK first); a client
        that keeps opening streams is cut by the worker's drain_timeout."""
        if self.going_away or self.goaway_sent or self.closed:
            return
        self.going_away = True
        self.send()
        self._write_goaway(_LAST_STREAM_ID)
        self.h2.ping(_DRAIN_PING)
        self.send()
        if not self.writing_paused:
            self.deadline = self.ctx.clock.now + _DRAIN_ACK_WAIT_S

    def _drain_acked(self) -> None:
        """The client saw the first GOAWAY: the final one follows once no stream is in flight (judged
        after the whole read, as the client may have sent requests right behind its ACK)."""
        self.drain_acked = True
        if not self.writing_paused:
            self.deadline = 0.0

    def _final_goaway(self) -> None:
        """The last GOAWAY of a graceful stop (no stream left in flight), then close."""
        self.goaway_sent = True
        self.send()
        self._write_goaway(self.last_stream_id)
        self._close_after_goaway()

    def _write_goaway(self, last_stream_id: int) -> None:
        """GOAWAY NO_ERROR, written past h2 (which would refuse to send anything more after its own)."""
        frame = GoAwayFrame(0)
        frame.last_stream_id = last_stream_id
        frame.error_code = 0
        self.transport.write(frame.serialize())
