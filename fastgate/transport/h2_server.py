"""A client's HTTP/2 connection: the downstream adapter of the proxy core for HTTP/2.

Theory of operation
-------------------
``H2ServerConnection`` is an asyncio Protocol over the sans-IO ``h2`` library
(server side; h2's own header checks are off: the stream's are stricter).
It multiplexes: every request stream gets an ``H2Stream`` (h2_stream.py:
the request's fields and body, the response's head, DATA and trailers,
WebSocket), which offers its own ProxySession (proxy/session.py) the same
downstream surface ClientConnection (h1_server.py) offers, so the
request's life (route, limits, answer or forward, retries, log) is the
session's, exactly as for HTTP/1.1. The connection owns the bytes, the
flow-control windows, the stream table and the timeouts.

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

from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated, DataReceived, PingAckReceived, RemoteSettingsChanged, RequestReceived, StreamEnded,
    StreamReset, TrailersReceived, WindowUpdated,
)
from h2.exceptions import DenialOfServiceError, ProtocolError
from hyperframe.frame import GoAwayFrame

from fastgate.observe.errorlog import log
from fastgate.transport.context import WorkerContext
from fastgate.transport.h2_flow import WAIT_NOTHING as _NOTHING, ResponseFlow
from fastgate.transport.h2_stream import H2Stream
from fastgate.wire.h2_fields import StreamError, render_request
from fastgate.wire.h2_guard import HEADER_LIST, PROTOCOL_ERROR

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
