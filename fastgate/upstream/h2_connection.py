"""One HTTP/2 connection to an upstream server, carrying the exchanges of many requests at once.

Theory of operation
-------------------
``H2UpstreamConnection`` is an asyncio Protocol over the sans-IO ``h2``
library (client side). Every request on it gets an ``H2UpstreamStream``,
which offers its exchange (a ProxySession, or an aggregation part) what an
HTTP/1.1 UpstreamConnection offers (upstream/connection.py): ``start``,
``expect_head``, ``release``, ``close``, ``abort``, ``read_timeout_s`` and a
``transport`` (the stream itself: ``write``, ``writelines``,
``pause_reading``, ``resume_reading``), and calls back the same exchange
contract, plus ``on_response_trailers(fields)``.

The request. The exchange writes what it would write to an HTTP/1.1
server: the head fastgate rendered, then the body in its HTTP/1.1 framing.
The head becomes HEADERS (wire/h2_upstream.py ``request_fields``), the body
DATA (de-chunked by ChunkedFramer when it is chunked), with END_STREAM on
the last byte, or on the HEADERS of a request without a body. DATA goes out
within the stream's and the connection's windows; what does not fit waits in
the stream, and past ``_STREAM_HIGH_BYTES`` there the exchange pauses its
client until WINDOW_UPDATEs drain it.

The response. Its fields become an HTTP/1.1 ResponseHead
(``response_head``); without content-length its DATA is rendered as chunks,
and its end is the last chunk or, when trailers came, the exchange's
``on_response_trailers`` (the client side writes the last chunk with them,
or a HEADERS frame). Received DATA is acknowledged as it is handed on; while
the exchange has paused reading (its client is slow) the connection window
is given back at once but the stream's is withheld, so a slow client stalls
its own stream and no other.

Streams per connection are bounded by min(the server's
SETTINGS_MAX_CONCURRENT_STREAMS, the upstream's max_streams_per_connection).
A new connection is ready once the server's SETTINGS arrived (within the
connect timeout, else it is closed): only then are its first streams opened,
so that they never exceed the server's limit. Requests that wait for it
(``waiters``) take its room then, and again whenever a stream ends; before
the SETTINGS, at most 100 (the number RFC 9113 asks every peer to allow) may
wait on one connection. ``has_room`` says whether one more fits.

Ends. A GOAWAY lets the streams up to its last stream id finish; the others,
and streams the server refuses (REFUSED_STREAM), were never processed: the
exchange hears ``on_upstream_stale`` (sent again if it can be). The
connection takes no new streams after a GOAWAY or after
max_requests_per_connection streams, and closes when its last stream ends.
A stream reset by the server fails its exchange (502); a connection error,
or the connection lost, fails every stream on it. Each stream has its own
deadline (the response head's, then the read timeout between two frames);
past it the stream is reset (CANCEL) and the exchange hears 504. A
connection without streams is idle: it waits in the pool's ``idle`` list
for ``idle_timeout`` (the group's ConnectionLimit may close it to make room).
"""

import asyncio
from collections import deque

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    DataReceived, InformationalResponseReceived, RemoteSettingsChanged, ResponseReceived,
    StreamEnded, StreamReset, TrailersReceived, WindowUpdated,
)
from h2.exceptions import H2Error
from h2.settings import SettingCodes

from fastgate.observe.errorlog import log
from fastgate.upstream.connection import WRITE_HIGH_BYTES, WRITE_LOW_BYTES
from fastgate.wire.chunked import ChunkedFramer, FramingError, forwardable_trailers
from fastgate.wire.errors import HeadError
from fastgate.wire.h1 import HEAD_END
from fastgate.wire.h2_goaway import GoawayFilter
from fastgate.wire.h2_upstream import LAST_CHUNK, chunk, request_fields, response_head

_CONNECTION_WINDOW = 1 << 20
"""The connection's receive window: what the responses of all its streams may have in flight."""
_UNSETTLED_MAX_STREAMS = 100
"""Streams opened before the server's SETTINGS said how many it allows (RFC 9113 5.1.2: at least 100)."""
_STREAM_HIGH_BYTES = 256 * 1024
"""Request body bytes waiting for the server's window past which the stream's client is paused."""
_STREAM_LOW_BYTES = 64 * 1024
"""... and below which it reads again."""

_SENDING, _HEAD, _BODY, _DONE = range(4)
"""A stream's response state: the request head is not sent yet; waiting for the response head;
relaying its body; over."""


class H2NotSelected(ConnectionError):
    """The TLS server did not select h2 by ALPN: it cannot be spoken to as an HTTP/2 upstream."""


class H2UpstreamStream:
    """One request's exchange on a shared connection; what the exchange sees as its upstream."""

    __slots__ = (
        "conn", "stream_id", "exchange", "method", "state", "read_timeout_s", "head_deadline", "deadline",
        # the request
        "head_buffer", "remaining", "framer", "request_ended", "end_sent", "out", "out_bytes", "client_paused",
        "request_trailers",
        # the response
        "chunked", "trailers", "paused", "unacked", "heard",
    )

    def __init__(self, conn: "H2UpstreamConnection") -> None:
        self.conn = conn
        self.stream_id = 0
        """Its HTTP/2 stream id, once its HEADERS went out (0 before)."""
        self.exchange = None
        self.method = b""
        self.state = _SENDING
        self.read_timeout_s = conn.pool.group.read_timeout_s
        self.head_deadline = 0.0
        self.deadline = 0.0
        """The response head's deadline, then the read timeout's; the clock watches the stream."""
        self.head_buffer = b""
        """The start of a request head that has not ended yet."""
        self.remaining = 0
        """Body payload bytes still due (a body framed by Content-Length)."""
        self.framer: ChunkedFramer | None = None
        """De-chunks a chunked request body."""
        self.request_ended = False
        """The request is complete: END_STREAM goes with its last byte."""
        self.end_sent = False
        """END_STREAM went out."""
        self.request_trailers: list | None = None
        """The request's trailer fields (from its chunked body), sent after its last DATA."""
        self.out: deque = deque()
        """Request DATA waiting for window."""
        self.out_bytes = 0
        self.client_paused = False
        self.chunked = False
        """The response body is rendered chunked for the exchange."""
        self.trailers: list | None = None
        self.paused = False
        """The exchange paused reading: the stream's window is not given back."""
        self.unacked = 0
        self.heard = False
        """Something of the response arrived (a head, 1xx included)."""

    # -- what the exchange calls (the UpstreamConnection surface) ------------------
    @property
    def transport(self) -> "H2UpstreamStream":
        """The exchange writes the request and pauses reading through ``transport``, as on an
        HTTP/1.1 connection: here that is the stream itself."""
        return self

    def start(self, exchange, method: bytes, read_timeout_s: float, head_deadline: float) -> None:
        """Bind to ``exchange`` for one request with ``method``; the exchange writes the request next.
        Deadlines as UpstreamConnection.start."""
        self.exchange = exchange
        self.method = method
        self.read_timeout_s = read_timeout_s
        self.head_deadline = head_deadline
        clock = self.conn.pool.clock
        deadline = clock.now + read_timeout_s
        self.deadline = head_deadline if head_deadline and head_deadline < deadline else deadline
        clock.watched.add(self)

    def expect_head(self, head_deadline: float) -> None:
        """The request was completely sent: its response head is due by ``head_deadline``."""
        if self.state <= _HEAD and head_deadline:
            self.head_deadline = head_deadline
            if head_deadline < self.deadline:
                self.deadline = head_deadline

    def write(self, data: bytes) -> None:
        """Request bytes as the exchange renders them for HTTP/1.1: the head first, then the body."""
        if self.state == _DONE:
            return
        conn = self.conn
        if not self.stream_id and (conn.closed or conn.shut):
            # closed, or told GOAWAY, since the stream was given out: nothing reached the server
            conn.pool.loop.call_soon(self.refused)
            return
        try:
            if not self.stream_id:
                data = self._head(data)
                if data is None:
                    return
            if data:
                self._body(data)
        except (FramingError, ValueError) as exc:
            # failed on the next turn of the loop: the exchange is still busy writing
            conn.pool.loop.call_soon(self._fail, 502, f"request cannot go to an HTTP/2 upstream: {exc}")
            return
        except H2Error:  # the connection stopped taking streams (the server's limit fell): not sent
            if not self.stream_id:
                conn.pool.loop.call_soon(self.refused)
                return
            raise
        conn.flush(self)

    def writelines(self, pieces) -> None:
        for data in pieces:
            self.write(data)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        if self.paused:
            self.paused = False
            if self.unacked:
                self.conn.open_stream_window(self, self.unacked)
                self.unacked = 0

    def release(self) -> None:
        """The exchange is done after a complete response."""
        self._over(ErrorCodes.CANCEL)

    def close(self) -> None:
        self._over(ErrorCodes.CANCEL)

    def abort(self) -> None:
        self._over(ErrorCodes.CANCEL)

    def on_deadline(self) -> None:
        self._fail(504, "upstream timed out")

    # -- the request ---------------------------------------------------------------
    def _head(self, data: bytes) -> bytes | None:
        """Send HEADERS once the head is complete; the bytes after it (or None while it is not)."""
        if self.head_buffer:
            data = self.head_buffer + data
            self.head_buffer = b""
        end = data.find(HEAD_END)
        if end < 0:
            self.head_buffer = data
            return None
        end += 4
        conn = self.conn
        fields, framing = request_fields(data[:end], conn.scheme)
        if framing.chunked:
            self.framer = ChunkedFramer(keep_trailers=True)
        else:
            self.remaining = max(framing.content_length, 0)
        ended = not framing.has_body
        self.stream_id = conn.open_stream(self, fields, ended)
        self.request_ended = self.end_sent = ended
        self.state = _HEAD
        return data[end:]

    def _body(self, data: bytes) -> None:
        if self.request_ended:
            return  # bytes past the body's end: none are relayed
        framer = self.framer
        if framer is None:
            take = min(len(data), self.remaining)
            self.remaining -= take
            self._queue(data if take == len(data) else data[:take])
            if not self.remaining:
                self.request_ended = True
            return
        payload: list[bytes] = []
        framer.feed(data, 0, payload)
        for piece in payload:
            self._queue(piece)
        if framer.done:
            self.request_ended = True
            if framer.trailers:  # they go as HEADERS with END_STREAM after the last DATA
                self.request_trailers = forwardable_trailers(framer.trailers)

    def _queue(self, data: bytes) -> None:
        if not data:
            return
        self.out.append(data)
        self.out_bytes += len(data)
        if self.out_bytes > _STREAM_HIGH_BYTES and not self.client_paused and self.exchange is not None:
            self.client_paused = True
            self.exchange.pause_client_reading()

    def sent_some(self) -> None:
        """The connection sent queued DATA: let the client send more once the queue is short."""
        if self.client_paused and self.out_bytes <= _STREAM_LOW_BYTES and self.exchange is not None:
            self.client_paused = False
            self.exchange.resume_client_reading()

    # -- the response (called by the connection) ----------------------------------
    def informational(self, fields: list) -> None:
        self.heard = True
        try:
            head = response_head(fields, self.method)
        except HeadError as exc:
            self._fail(502, exc.reason)
            return
        self.exchange.on_informational(head)

    def response(self, fields: list) -> None:
        self.heard = True
        if self.state == _BODY:
            self._fail(502, "upstream sent a second response head")
            return
        try:
            head = response_head(fields, self.method)
        except HeadError as exc:
            self._fail(502, exc.reason)
            return
        self.state = _BODY
        self.chunked = head.chunked
        self.head_deadline = 0.0
        self.deadline = self.conn.pool.clock.now + self.read_timeout_s
        self.exchange.on_response_head(head)

    def data(self, data: bytes, flow: int) -> None:
        """A DATA frame; ``flow`` is what it counted against the windows."""
        conn = self.conn
        if self.paused:
            self.unacked += flow
            conn.open_connection_window(flow)
        else:
            conn.ack(self.stream_id, flow)
        if self.state != _BODY:
            self._fail(502, "upstream sent DATA before a response head")
            return
        self.deadline = conn.pool.clock.now + self.read_timeout_s
        if data:
            self.exchange.on_response_data(chunk(data) if self.chunked else data)

    def received_trailers(self, fields: list) -> None:
        self.trailers = [(name, value) for name, value in fields if name[:1] != b":"]

    def ended(self) -> None:
        """END_STREAM from the server: the response is complete."""
        if self.state != _BODY:
            self._fail(502, "upstream ended the stream without a response")
            return
        exchange = self.exchange
        self.state = _DONE
        self._unwatch()
        if self.chunked:
            if self.trailers:
                exchange.on_response_trailers(self.trailers)
            else:
                exchange.on_response_data(LAST_CHUNK)
        if self.exchange is not None:
            exchange.on_response_end(True)

    def reset(self, code: int) -> None:
        """RST_STREAM from the server."""
        if code == ErrorCodes.REFUSED_STREAM and not self.heard:
            self.refused()
        else:
            self._fail(502, "upstream reset the stream")

    def refused(self) -> None:
        """The server will not process this stream (REFUSED_STREAM, or past a GOAWAY's last id): the
        request never reached the application."""
        exchange = self.exchange
        if exchange is None:
            return
        self._done()
        exchange.on_upstream_stale()

    def connection_failed(self, reason: str) -> None:
        self._fail(502, reason)

    # -- ends ---------------------------------------------------------------------
    def _fail(self, status: int, reason: str) -> None:
        exchange = self.exchange
        self._over(ErrorCodes.CANCEL)
        if exchange is not None:
            exchange.on_upstream_failed(status, reason)

    def _over(self, code) -> None:
        """The exchange is done with the stream: reset it if it is still open on our side."""
        if self.state != _DONE or self.exchange is not None:
            self.state = _DONE
            self.exchange = None
            self.conn.stream_over(self, code)
            self._unwatch()

    def _done(self) -> None:
        """The stream is over on the server's side (refused): forget it without a reset."""
        self.state = _DONE
        self.exchange = None
        self._unwatch()
        self.conn.stream_over(self, None)

    def _unwatch(self) -> None:
        self.deadline = 0.0
        self.conn.pool.clock.watched.discard(self)


class H2UpstreamConnection(asyncio.Protocol):
    """An HTTP/2 connection to one server: h2's state, the streams, the windows."""

    __slots__ = (
        "pool", "transport", "h2", "scheme", "streams", "active", "requests", "waiters", "connecting",
        "settled", "goaway", "shut", "closed", "writing_paused", "deadline", "goaway_filter",
    )

    def __init__(self, pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.h2: H2Connection | None = None
        self.scheme = b"https" if pool.ssl is not None else b"http"
        self.streams: dict[int, H2UpstreamStream] = {}
        """Streams whose HEADERS went out, by id."""
        self.active = 0
        """Streams given out and not over (some may not have sent HEADERS yet)."""
        self.requests = 0
        """Streams given out in all (max_requests_per_connection)."""
        self.waiters: list[asyncio.Future] = []
        """Requests that wait for this connection to be made: each gets a stream then."""
        self.connecting: asyncio.Future | None = None
        """The connect in progress, or None once it ended."""
        self.settled = False
        """The server's SETTINGS arrived."""
        self.goaway = False
        """No new streams are given out: the server sent GOAWAY, or the connection served its requests."""
        self.shut = False
        """No stream may open any more, not even one given out already: the server sent GOAWAY, or we did."""
        self.closed = False
        self.writing_paused = False
        self.deadline = 0.0
        """While idle (no streams): when it is closed."""
        self.goaway_filter = GoawayFilter()
        """Takes the server's GOAWAY frames out of what h2 reads (wire/h2_goaway.py)."""

    # -- room ----------------------------------------------------------------------
    def max_streams(self) -> int:
        limit = self.pool.group.max_streams
        peer = self.h2.remote_settings.max_concurrent_streams if self.settled else _UNSETTLED_MAX_STREAMS
        return peer if peer < limit else limit

    def has_room(self) -> bool:
        """Whether one more stream may go on this connection (made or being made) now."""
        if self.goaway or self.closed:
            return False
        taken = self.active + len(self.waiters)
        if not self.settled:
            return taken < min(self.pool.group.max_streams, _UNSETTLED_MAX_STREAMS)
        return taken < self.max_streams()

    def _serve_waiters(self) -> None:
        """Requests that wait for this connection get its room, first come first served."""
        waiters = self.waiters
        while waiters and self.active < self.max_streams() and not self.goaway:
            future = waiters.pop(0)
            if not future.done():
                future.set_result((self.transport, self.new_stream()))

    def new_stream(self) -> H2UpstreamStream:
        """A stream for one request (the caller checked ``has_room``)."""
        self.active += 1
        self.requests += 1
        max_requests = self.pool.group.max_requests_per_conn
        if max_requests and self.requests >= max_requests:
            self.goaway = True  # retired: its streams finish, then it closes
        if self.deadline:
            self.deadline = 0.0
            self.pool.forget(self)
        return H2UpstreamStream(self)

    # -- asyncio callbacks ----------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(WRITE_HIGH_BYTES, WRITE_LOW_BYTES)
        pool = self.pool
        pool.opened += 1
        pool.clock.watched.add(self)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() != "h2":
            log.warning("upstream %s: server %s did not select h2 by ALPN (it chose %r): not an HTTP/2 upstream",
                        pool.group.name, pool.label, ssl_object.selected_alpn_protocol())
            self._fail_waiters(H2NotSelected("the server did not select h2 by ALPN"))
            self.goaway = True
            transport.abort()
            return
        conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        conn.local_settings.update({SettingCodes.ENABLE_PUSH: 0, SettingCodes.MAX_CONCURRENT_STREAMS: 0})
        conn.initiate_connection()
        conn.increment_flow_control_window(_CONNECTION_WINDOW - 65535)
        self.h2 = conn
        self.send()
        self.deadline = pool.clock.now + pool.group.connect_timeout_s  # for the server's SETTINGS

    def connect_done(self, future: asyncio.Future) -> None:
        """The connect ended: without a connection made, its slot is free and its waiters fail."""
        self.connecting = None
        if self.transport is not None:
            return
        self.closed = True
        self.pool.group.limit.closed()
        self.pool.drop(self)
        if future.cancelled():
            self._fail_waiters(ConnectionAbortedError("connect abandoned"))
        else:
            self._fail_waiters(future.exception())

    def waiter_gone(self, future: asyncio.Future) -> None:
        """A request gave up waiting for the connection: when none waits any more, stop connecting."""
        if future.cancelled() and future in self.waiters:
            self.waiters.remove(future)
            if not self.waiters and self.connecting is not None:
                self.connecting.cancel()

    def connection_lost(self, exc: Exception | None) -> None:
        pool = self.pool
        pool.group.limit.closed()
        self.closed = True
        pool.clock.watched.discard(self)
        pool.drop(self)
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            stream.connection_failed("upstream closed the connection")

    def pause_writing(self) -> None:
        self.writing_paused = True
        for stream in list(self.streams.values()):
            if stream.exchange is not None and not stream.request_ended:
                stream.client_paused = True
                stream.exchange.pause_client_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        for stream in list(self.streams.values()):
            if stream.client_paused and stream.out_bytes <= _STREAM_LOW_BYTES and stream.exchange is not None:
                stream.client_paused = False
                stream.exchange.resume_client_reading()
        self.flush_all()

    def data_received(self, data: bytes) -> None:
        if self.h2 is None:
            return  # refused at connection_made
        data, goaways = self.goaway_filter.feed(data)
        try:
            events = self.h2.receive_data(data) if data else []
        except H2Error as exc:
            self._connection_error(f"HTTP/2 protocol error from upstream: {exc}")
            return
        try:
            for event in events:
                self._event(event)
        except Exception:
            log.exception("internal error reading from HTTP/2 upstream %s", self.pool.label)
            self._connection_error("internal error")
            return
        for last_stream_id, _code in goaways:
            self._goaway(last_stream_id)
        self.send()

    def _event(self, event) -> None:
        stream = self.streams.get(getattr(event, "stream_id", 0))
        if isinstance(event, DataReceived):
            if stream is None:  # a stream we are done with: its bytes still count against the connection
                self.ack(event.stream_id, event.flow_controlled_length)
            else:
                self._stream_call(stream, stream.data, event.data, event.flow_controlled_length)
        elif stream is None:
            if isinstance(event, RemoteSettingsChanged):
                if not self.settled:
                    self.settled = True
                    self.deadline = 0.0
                    if not self.waiters:
                        self._idle()
                self.flush_all()
                self._serve_waiters()
                self.pool.offer_room(self)
            elif isinstance(event, WindowUpdated):
                self.flush_all()
        elif isinstance(event, ResponseReceived):
            self._stream_call(stream, stream.response, event.headers)
        elif isinstance(event, StreamEnded):
            self._stream_call(stream, stream.ended)
        elif isinstance(event, TrailersReceived):
            stream.received_trailers(event.headers)
        elif isinstance(event, WindowUpdated):
            self._flush(stream)
        elif isinstance(event, StreamReset):
            self._stream_call(stream, stream.reset, event.error_code)
        elif isinstance(event, InformationalResponseReceived):
            self._stream_call(stream, stream.informational, event.headers)

    def _stream_call(self, stream: H2UpstreamStream, method, *args) -> None:
        exchange = stream.exchange
        if exchange is None:
            return
        try:
            method(*args)
        except Exception:
            stream.abort()
            exchange.internal_error()

    def _goaway(self, last_stream_id: int) -> None:
        """GOAWAY: streams past ``last_stream_id`` were not processed; the rest may finish."""
        self.goaway = self.shut = True
        self.pool.forget(self)
        for stream_id in [i for i in self.streams if i > last_stream_id]:
            self.streams[stream_id].refused()
        if not self.active and not self.closed:
            self.close()

    def _connection_error(self, reason: str) -> None:
        self.send()
        self.goaway = True
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            stream.connection_failed(reason)
        self.transport.abort()

    def on_deadline(self) -> None:
        """Idle for the pool's idle timeout, or no SETTINGS from the server within the connect
        timeout: close."""
        if not self.settled:
            log.warning("upstream %s: server %s sent no HTTP/2 SETTINGS in time", self.pool.group.name,
                        self.pool.label)
            self._fail_waiters(TimeoutError("no HTTP/2 SETTINGS from the server"))
            self.close()
        elif not self.active:
            self.close()
        else:
            self.deadline = 0.0

    # -- what the streams and the pool call -------------------------------------------
    def open_stream(self, stream: H2UpstreamStream, fields: list, end: bool) -> int:
        conn = self.h2
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(stream_id, fields, end_stream=end)
        self.streams[stream_id] = stream
        return stream_id

    def stream_over(self, stream: H2UpstreamStream, code) -> None:
        """A stream given out is over for its exchange: reset it if still open (``code`` None: the
        server is done with it), forget it, and make its room available."""
        stream_id = stream.stream_id
        if self.streams.pop(stream_id, None) is not None and code is not None and not self.closed:
            h2_stream = self.h2.streams.get(stream_id)
            if h2_stream is not None and not h2_stream.closed:
                self.h2.reset_stream(stream_id, code)
                self.send()
        self.active -= 1
        if self.closed:
            return
        if self.goaway:
            if not self.active:
                self.transport.close()
            return
        self._serve_waiters()
        if not self.active:
            self._idle()
        self.pool.offer_room(self)

    def _idle(self) -> None:
        self.deadline = self.pool.clock.now + self.pool.group.idle_timeout_s
        self.pool.idle.append(self)

    def ack(self, stream_id: int, flow: int) -> None:
        if flow and not self.closed:
            self.h2.acknowledge_received_data(flow, stream_id)

    def open_connection_window(self, flow: int) -> None:
        """A paused stream's DATA: the connection's window is given back, not the stream's."""
        if flow and not self.closed:
            self.h2.increment_flow_control_window(flow)

    def open_stream_window(self, stream: H2UpstreamStream, flow: int) -> None:
        """A stream that was paused reads again: what it withheld is given back."""
        if self.closed or stream.stream_id not in self.streams:
            return
        h2_stream = self.h2.streams.get(stream.stream_id)
        if h2_stream is not None and h2_stream.open:
            self.h2.increment_flow_control_window(flow, stream.stream_id)
            self.send()

    def send(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.closed:
            self.transport.write(data)

    def flush(self, stream: H2UpstreamStream) -> None:
        if not self.closed:
            self._flush(stream)
            self.send()

    def flush_all(self) -> None:
        for stream in list(self.streams.values()):
            if stream.out or (stream.request_ended and not stream.end_sent):
                self._flush(stream)

    def _flush(self, stream: H2UpstreamStream) -> None:
        """Send the stream's queued DATA within the windows; END_STREAM with the last byte."""
        stream_id = stream.stream_id
        if not stream_id or self.writing_paused or stream_id not in self.streams:
            return
        try:
            self._send_queued(stream, stream_id)
        except H2Error as exc:  # h2 will not send on this stream any more
            self.pool.loop.call_soon(stream.connection_failed, f"cannot send to upstream: {exc}")

    def _send_queued(self, stream: H2UpstreamStream, stream_id: int) -> None:
        conn = self.h2
        out = stream.out
        sent = False
        while out:
            room = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
            if room <= 0:
                break
            piece = out[0]
            if len(piece) <= room:
                out.popleft()
            else:
                out[0] = piece[room:]
                piece = piece[:room]
            stream.out_bytes -= len(piece)
            end = stream.request_ended and not out and not stream.request_trailers
            conn.send_data(stream_id, piece, end_stream=end)
            stream.end_sent = end
            sent = True
        if not out and stream.request_ended and not stream.end_sent:
            if stream.request_trailers:
                conn.send_headers(stream_id, stream.request_trailers, end_stream=True)
            else:
                conn.end_stream(stream_id)
            stream.end_sent = True
        if sent:
            stream.sent_some()

    def close(self) -> None:
        """Close the connection (idle, or its slot is wanted): GOAWAY, then the socket."""
        if self.closed:
            return
        self.goaway = self.shut = True
        self.pool.forget(self)
        if self.h2 is not None:
            self.h2.close_connection()
            self.send()
        if self.transport is not None:
            self.transport.close()

    def _fail_waiters(self, exc: BaseException) -> None:
        waiters = self.waiters
        self.waiters = []
        for future in waiters:
            if not future.done():
                future.set_exception(exc)
