"""A WebSocket client over HTTP/2 (RFC 8441 extended CONNECT), for tests: curl, nghttp and the
``websockets`` library cannot open one.

The h2 library is the HTTP/2 side (client, over a plain socket or TLS with ALPN h2), and wsproto's
frame-level ``Connection`` (the h11 authors') builds and parses the WebSocket frames each stream's
DATA carries. One thread, blocking socket: every wait reads the socket and handles what came, so a
large send gets its window while the echo of it is read. A stream may withhold its WINDOW_UPDATEs
(``acking = False``) to play a client that does not read.
"""

import socket
import ssl
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, Pong, TextMessage


class WsStream:
    """One WebSocket on a stream: what came back, as wsproto events, and how the stream ended."""

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.ws = Connection(ConnectionType.CLIENT)
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.body = b""
        """What a refused stream's response carried."""
        self.events: list = []
        """wsproto events received (messages assembled whole), in order."""
        self.ended = False
        """END_STREAM came."""
        self.reset: int | None = None
        """The RST_STREAM error code, if the stream was reset."""
        self.acking = True
        self.unacked = 0
        """Received DATA not acknowledged (while ``acking`` is off)."""
        self.received_bytes = 0
        self._parts: list = []

    def messages(self) -> list:
        """The data messages received so far (str or bytes)."""
        return [e.data for e in self.events if isinstance(e, Message)]

    def _feed(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, Message):
                self._parts.append(event.data)
                if event.message_finished:
                    whole = ("" if isinstance(event, TextMessage) else b"").join(self._parts)
                    self._parts = []
                    self.events.append(TextMessage(whole) if isinstance(event, TextMessage) else BytesMessage(whole))
            else:
                self.events.append(event)


class H2WebSocketClient:
    def __init__(self, port: int, tls: ssl.SSLContext | None = None, server_name: str = "127.0.0.1",
                 timeout_s: float = 20.0) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=server_name)
            assert sock.selected_alpn_protocol() == "h2"
        self.sock = sock
        self.scheme = b"https" if tls is not None else b"http"
        self.authority = server_name.encode()
        self.timeout_s = timeout_s
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.h2.initiate_connection()
        self.streams: dict[int, WsStream] = {}
        self.responses: dict[int, dict] = {}
        """Ordinary requests sent beside the WebSockets: stream id -> {"status", "body", "ended"}."""
        self.settings_seen = False
        self.closed = False
        self._flush()
        self.wait(lambda: self.settings_seen, "the server's SETTINGS")

    def close(self) -> None:
        try:
            self.h2.close_connection()
            self._flush()
        except Exception:
            pass
        self.sock.close()

    def __enter__(self) -> "H2WebSocketClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connect_protocol_enabled(self) -> bool:
        return self.h2.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL, 0) == 1

    # -- opening -----------------------------------------------------------------------------
    def connect(self, path: str, extra: tuple = (), protocol: bytes = b"websocket", method: bytes = b"CONNECT",
                wait: bool = True) -> WsStream:
        """Send an extended CONNECT for ``path``; wait for its response head (or its end)."""
        stream_id = self.h2.get_next_available_stream_id()
        stream = self.streams[stream_id] = WsStream(stream_id)
        headers = [(b":method", method), (b":protocol", protocol), (b":scheme", self.scheme),
                   (b":path", path.encode()), (b":authority", self.authority),
                   (b"sec-websocket-version", b"13"), *extra]
        self.h2.send_headers(stream_id, headers)
        self._flush()
        if wait:
            self.wait(lambda: stream.status or stream.ended or stream.reset is not None, f"a response to {path}")
        return stream

    def get(self, path: str) -> int:
        """Send an ordinary GET beside the WebSockets; its answer collects in ``responses``."""
        stream_id = self.h2.get_next_available_stream_id()
        self.responses[stream_id] = {"status": 0, "body": b"", "ended": False}
        self.h2.send_headers(stream_id, [(b":method", b"GET"), (b":scheme", self.scheme), (b":path", path.encode()),
                                         (b":authority", self.authority)], end_stream=True)
        self._flush()
        return stream_id

    # -- sending ---------------------------------------------------------------------------
    def send(self, stream: WsStream, event, end_stream: bool = False) -> None:
        """Send a wsproto event (Message, Ping, CloseConnection...) on the stream, within its windows."""
        self.send_bytes(stream, stream.ws.send(event), end_stream)

    def send_bytes(self, stream: WsStream, data: bytes, end_stream: bool = False) -> None:
        view = memoryview(data)
        while view:
            room = min(self.h2.local_flow_control_window(stream.stream_id), self.h2.max_outbound_frame_size)
            if room <= 0:
                self._read_once()
                continue
            self.h2.send_data(stream.stream_id, bytes(view[:room]))
            view = view[room:]
            self._flush()
        if end_stream:
            self.h2.end_stream(stream.stream_id)
            self._flush()

    def try_send_bytes(self, stream: WsStream, data: bytes) -> int:
        """Send what the windows allow now, without waiting; return how much went."""
        room = min(self.h2.local_flow_control_window(stream.stream_id), len(data))
        sent = 0
        while sent < room:
            size = min(room - sent, self.h2.max_outbound_frame_size)
            self.h2.send_data(stream.stream_id, data[sent:sent + size])
            sent += size
        self._flush()
        return sent

    def reset(self, stream: WsStream) -> None:
        self.h2.reset_stream(stream.stream_id, 8)  # CANCEL
        self._flush()

    def ack(self, stream: WsStream) -> None:
        """Acknowledge what was held back and go on acknowledging."""
        stream.acking = True
        if stream.unacked:
            self.h2.increment_flow_control_window(stream.unacked, stream.stream_id)
            stream.unacked = 0
            self._flush()

    # -- receiving -------------------------------------------------------------------------
    def wait(self, predicate, what: str, timeout_s: float | None = None) -> None:
        """Read and handle frames until ``predicate()``; fail after the timeout (a hang guard)."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            if self.closed:
                raise AssertionError(f"the connection closed while waiting for {what}")
            self._read_once()

    def wait_messages(self, stream: WsStream, count: int) -> list:
        self.wait(lambda: len(stream.messages()) >= count, f"{count} messages on stream {stream.stream_id}")
        return stream.messages()

    def window_opens(self, stream: WsStream, quiet_s: float) -> bool:
        """Handle what comes until the stream's send window opens (True), or for ``quiet_s`` without
        it opening (False: the server stopped taking)."""
        end = time.monotonic() + quiet_s
        while self.h2.local_flow_control_window(stream.stream_id) <= 0:
            left = end - time.monotonic()
            if left <= 0 or self.closed:
                return False
            self.sock.settimeout(left)
            try:
                self._read_once()
            except (socket.timeout, TimeoutError):
                pass
            finally:
                self.sock.settimeout(self.timeout_s)
        return True

    def _read_once(self) -> None:
        data = self.sock.recv(256 * 1024)
        if not data:
            self.closed = True
            return
        for event in self.h2.receive_data(data):
            self._event(event)
        self._flush()

    def _event(self, event) -> None:
        if isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings_seen = True
            return
        stream_id = getattr(event, "stream_id", None)
        stream = self.streams.get(stream_id)
        response = self.responses.get(stream_id)
        if isinstance(event, h2.events.ResponseReceived):
            headers = dict(event.headers)
            status = int(headers.pop(b":status"))
            if stream is not None:
                stream.status, stream.headers = status, headers
            elif response is not None:
                response["status"] = status
        elif isinstance(event, h2.events.DataReceived):
            if stream is not None:
                stream.received_bytes += len(event.data)
                if stream.status == 200:
                    if event.data:
                        stream._feed(event.data)
                else:
                    stream.body += event.data
                if stream.acking:
                    self.h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
                else:  # the connection's window is given back, never the stream's
                    self.h2.increment_flow_control_window(event.flow_controlled_length)
                    stream.unacked += event.flow_controlled_length
            else:
                if response is not None:
                    response["body"] += event.data
                self.h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            if stream is not None:
                stream.ended = True
            elif response is not None:
                response["ended"] = True
        elif isinstance(event, h2.events.StreamReset):
            if stream is not None:
                stream.reset = event.error_code
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.closed = True

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)


__all__ = ["H2WebSocketClient", "WsStream", "BytesMessage", "CloseConnection", "Message", "Ping", "Pong",
           "TextMessage"]
