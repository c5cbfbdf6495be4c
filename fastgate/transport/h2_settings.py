"""The ``[http2]`` limits of a worker, and the h2 connection state that announces and enforces them."""

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.settings import SettingCodes, Settings

from fastgate.config.schema import Http, Http2
from fastgate.wire.h2_guard import FrameGuard
from fastgate.wire.hpack_decode import FastDecoder
from fastgate.wire.hpack_encode import StaticEncoder


class H2Limits:
    """The ``[http2]`` table as plain numbers, made once per worker (WorkerContext.http2)."""

    __slots__ = (
        "max_concurrent_streams", "max_frame_bytes", "max_header_list_bytes", "header_table_bytes",
        "initial_window_bytes", "connection_window_bytes", "response_buffer_bytes", "max_resets", "reset_window_s",
        "max_overhead_frames", "overhead_window_s",
    )

    def __init__(self, http2: Http2, http: Http) -> None:
        self.max_concurrent_streams = http2.max_concurrent_streams
        self.max_frame_bytes = int(http2.max_frame_size)
        self.max_header_list_bytes = int(http2.max_header_list_size if http2.max_header_list_size is not None
                                         else http.max_header_size)
        self.header_table_bytes = int(http2.header_table_size)
        self.initial_window_bytes = int(http2.initial_window_size)
        self.connection_window_bytes = int(http2.connection_window_size)
        self.response_buffer_bytes = int(http2.response_buffer_size)
        self.max_resets = http2.max_resets
        self.reset_window_s = float(http2.reset_window)
        self.max_overhead_frames = http2.max_overhead_frames
        self.overhead_window_s = float(http2.overhead_window)

    def server_connection(self) -> H2Connection:
        """A server-side h2 connection whose first SETTINGS (in ``data_to_send``) announce these limits.

        h2 applies what it announced only once the client acknowledges it, and answers a stream past
        MAX_CONCURRENT_STREAMS with a connection error. Here the sizes hold from the first byte, and
        h2 tolerates twice the announced streams: the connection itself refuses a stream past the
        limit with REFUSED_STREAM (RFC 9113 5.1.2), so that a client over it loses that stream, not
        all of them (h2 counts the streams of a whole read before the connection sees one of them,
        so its own count runs ahead of the connection's; a burst of twice the limit is still its
        connection error).

        h2 neither checks nor normalises header fields either way: the connection checks a request's
        fields itself, more strictly (wire/h2_fields.py ``render_request``, and ``trailer_refused``
        for its trailers), and makes its responses' fields in the form HTTP/2 wants
        (``response_headers``, chunked.py ``forwardable_trailers``); h2's generator pipelines did the
        same work again at a fifth of a request's cost. Responses are HPACK-coded without a dynamic
        table (wire/hpack_encode.py), requests decoded by wire/hpack_decode.py.
        """
        conn = H2Connection(H2Configuration(
            client_side=False, header_encoding=None, validate_inbound_headers=False, normalize_inbound_headers=False,
            validate_outbound_headers=False, normalize_outbound_headers=False))
        conn.encoder = StaticEncoder()
        conn.decoder = FastDecoder()
        announced = {
            SettingCodes.MAX_CONCURRENT_STREAMS: self.max_concurrent_streams,
            SettingCodes.MAX_FRAME_SIZE: self.max_frame_bytes,
            SettingCodes.MAX_HEADER_LIST_SIZE: self.max_header_list_bytes,
            SettingCodes.HEADER_TABLE_SIZE: self.header_table_bytes,
            SettingCodes.INITIAL_WINDOW_SIZE: self.initial_window_bytes,
            SettingCodes.ENABLE_PUSH: 0,
            SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,  # WebSocket over HTTP/2 (RFC 8441)
        }
        conn.local_settings = Settings(client=False, initial_values=announced)
        conn.initiate_connection()
        conn.local_settings = Settings(client=False, initial_values={
            **announced, SettingCodes.MAX_CONCURRENT_STREAMS: 2 * self.max_concurrent_streams})
        conn.max_inbound_frame_size = self.max_frame_bytes
        conn.decoder.max_header_list_size = self.max_header_list_bytes
        conn.decoder.max_allowed_table_size = self.header_table_bytes
        conn.increment_flow_control_window(self.connection_window_bytes - 65535)
        return conn

    def frame_guard(self, now: float) -> FrameGuard:
        return FrameGuard(self.max_header_list_bytes, self.max_overhead_frames, self.overhead_window_s,
                          self.max_resets, self.reset_window_s, now)
