"""The response side of an HTTP/2 client connection: DATA within the windows, and back-pressure.

Theory of operation
-------------------
A stream's response bytes wait in its ``out`` queue (H2Stream, h2_stream.py) until the client's
windows (the stream's and the connection's) and its max frame size let them go, and while the
socket takes them (``writing_paused`` stops the sending loop). ``_flush`` sends what fits, with
END_STREAM on the last byte when the response has ended; a stream whose window stays closed is
watched for send_timeout.

Two bounds keep a client that does not read from growing the worker's memory: a stream whose
queue passes ``_STREAM_HIGH_BYTES``, and any stream still holding bytes after a flush while the
connection holds more than ``[http2] response_buffer_size`` over all its streams, pauses its
upstream (the session stops reading it). A stream whose bytes go straight out is never paused for
what other streams hold: streams stay independent, a client that stalls some of its streams
still gets the others. A paused stream resumes once its own queue is empty, or below
``_STREAM_LOW_BYTES`` with the connection's below half its bound. Response DATA frames sent pay
back overhead frames of the client (wire/h2_guard.py ``sent``).
"""

from h2.exceptions import ProtocolError

from fastgate.observe.errorlog import log

_STREAM_HIGH_BYTES = 256 * 1024
"""Response bytes waiting in one stream (its window closed, or the socket full) past which its upstream pauses."""
_STREAM_LOW_BYTES = 64 * 1024
"""... and below which it may resume."""
_WRITE_BATCH_BYTES = 64 * 1024
"""DATA handed to the transport at a time, so a full socket (pause_writing) stops the sending loop."""
WAIT_NOTHING, WAIT_BODY_BYTES, WAIT_WINDOW, WAIT_TUNNEL_IDLE = range(4)
"""What a stream waits for on the clock: nothing, its request body (body_timeout), room for its response
(send_timeout), bytes through its WebSocket tunnel (the upstream's read timeout)."""


class ResponseFlow:
    """The sending half of H2ServerConnection (a mixin: the connection holds the state named here)."""

    __slots__ = ()

    def queued(self, stream, size: int) -> None:
        """``size`` response bytes joined the stream's queue: pause its upstream if it holds too much."""
        stream.out_bytes += size
        self.held_bytes += size
        if stream.out_bytes > _STREAM_HIGH_BYTES and not stream.upstream_paused:
            self._pause(stream)

    def _pause(self, stream) -> None:
        stream.upstream_paused = True
        self.paused_streams.add(stream)
        stream.session.pause_upstream()

    def flush_all(self) -> None:
        for stream in list(self.streams.values()):
            if self.writing_paused or self.closed:
                return
            if stream.out or stream.corked is not None or stream.end_queued:
                self._flush(stream)
        self.send_soon()
        self._resume_upstreams()

    def flush_stream(self, stream) -> None:
        if not self.closed:
            self._flush(stream)
            self.send_soon()
            if (stream.out_bytes and not stream.upstream_paused
                    and self.held_bytes > self.ctx.http2.response_buffer_bytes):
                self._pause(stream)

    def _resume_upstreams(self) -> None:
        """Let the paused upstreams go on once the client took enough of what waited for it."""
        if not self.paused_streams or self.writing_paused or self.closed:
            return
        below = self.held_bytes <= self.ctx.http2.response_buffer_bytes // 2
        for stream in list(self.paused_streams):
            if not stream.out_bytes or (below and stream.out_bytes <= _STREAM_LOW_BYTES):
                self.paused_streams.discard(stream)
                stream.upstream_paused = False
                stream.session.resume_upstream()

    def _flush(self, stream) -> None:
        """Send what the stream has, within the windows; END_STREAM with its last byte."""
        if stream.finished or self.writing_paused:
            return
        conn = self.h2
        stream_id = stream.stream_id
        out = stream.out
        progress = frames = 0
        try:
            if stream.corked is not None:
                if not out and not stream.end_queued:
                    return
                headers = stream.corked
                stream.corked = None
                end = stream.end_queued and not out and not stream.trailers
                conn.send_headers(stream_id, headers, end_stream=end)
                stream.head_sent = True
                if end:
                    stream.finished = True
            written = 0
            while out:
                if written >= _WRITE_BATCH_BYTES:  # hand it to the socket: a full one pauses us
                    written = 0
                    self.send()
                    if self.writing_paused:
                        break
                room = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
                if room <= 0:
                    break
                chunk = out[0]
                if len(chunk) <= room:
                    out.popleft()
                else:
                    out[0] = chunk[room:]
                    chunk = chunk[:room]
                stream.out_bytes -= len(chunk)
                written += len(chunk)
                progress += len(chunk)
                frames += 1
                end = stream.end_queued and not out and not stream.trailers
                conn.send_data(stream_id, chunk, end_stream=end)
                if end:
                    stream.finished = True
            if not out and stream.end_queued and not stream.finished and stream.head_sent:
                if stream.trailers:
                    conn.send_headers(stream_id, stream.trailers, end_stream=True)
                else:
                    conn.end_stream(stream_id)
                stream.finished = True
        except ProtocolError:
            log.warning("HTTP/2 stream %d of %s cut: its response was refused", stream_id, self.client_text)
            stream.abort()
            return
        finally:
            if progress:
                self.held_bytes -= progress
                self.guard.sent(frames, progress)
        if out and not self.writing_paused:  # the stream's window is closed: the client has send_timeout to open it
            if stream.waiting != WAIT_WINDOW or progress:
                if stream.waiting == WAIT_BODY_BYTES:
                    stream._unwatch(WAIT_BODY_BYTES)
                stream._watch(WAIT_WINDOW, self.ctx.send_timeout_s)
        elif stream.waiting == WAIT_WINDOW:
            stream._unwatch(WAIT_WINDOW)
        if progress:
            self._resume_upstreams()
        if stream.finished and stream.done:
            self.stream_over(stream)
