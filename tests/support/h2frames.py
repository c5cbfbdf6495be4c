"""An HTTP/2 client of hand-built frames (hyperframe and hpack), for what no polite client sends.

It keeps no stream state of its own, so any frame can be sent in any order, and reads the server's
frames as they come: GOAWAY, RST_STREAM, response HEADERS (decoded) and DATA.
"""

import socket
import time

from hpack import Decoder, Encoder
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, PingFrame, RstStreamFrame, SettingsFrame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ENHANCE_YOUR_CALM, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED, REFUSED_STREAM = 0xB, 0x1, 0x3, 0x5, 0x7


def request_headers(path: str, method: str = "GET", extra: tuple = ()) -> list[tuple[bytes, bytes]]:
    return [(b":method", method.encode()), (b":scheme", b"http"), (b":authority", b"127.0.0.1"),
            (b":path", path.encode()), *extra]


class RawH2:
    """One connection: ``send`` bytes (frames), ``read`` until a condition or the end of the connection."""

    def __init__(self, port: int, settings: dict | None = None, rcvbuf: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.decoder.max_header_list_size = 1 << 20
        self.buffer = bytearray()
        self.frames: list[Frame] = []
        self.closed = False
        self.statuses: dict[int, int] = {}
        """Stream id -> :status of its response."""
        self.data: dict[int, int] = {}
        """Stream id -> DATA payload bytes received."""
        self.ended: set[int] = set()
        self.answer_pings = True
        """Acknowledge the server's PINGs as they come."""
        self.sock.sendall(PREFACE + SettingsFrame(0, settings or {}).serialize())

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RawH2":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- frames to send --------------------------------------------------------------
    def headers(self, stream_id: int, headers: list, end_stream: bool = True) -> bytes:
        frame = HeadersFrame(stream_id, self.encoder.encode(headers))
        frame.flags.add("END_HEADERS")
        if end_stream:
            frame.flags.add("END_STREAM")
        return frame.serialize()

    def request(self, stream_id: int, path: str, end_stream: bool = True, extra: tuple = ()) -> bytes:
        return self.headers(stream_id, request_headers(path, extra=extra), end_stream)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    # -- what comes back ---------------------------------------------------------------
    def read(self, until=lambda client: False, timeout_s: float = 20.0) -> None:
        """Read frames until ``until(self)`` holds or the server closed the connection."""
        deadline = time.monotonic() + timeout_s
        while not self.closed and not until(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"no such frames within {timeout_s}s: {self.frames[-20:]}")
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                break
            self.buffer += data
            self._parse()

    def _parse(self) -> None:
        while len(self.buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
            if len(self.buffer) < 9 + length:
                return
            frame.parse_body(memoryview(self.buffer[9:9 + length]))
            del self.buffer[:9 + length]
            self.frames.append(frame)
            if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                self.sock.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
            elif isinstance(frame, PingFrame) and "ACK" not in frame.flags and self.answer_pings:
                self.sock.sendall(PingFrame(0, frame.opaque_data, flags=["ACK"]).serialize())
            elif isinstance(frame, HeadersFrame):
                fields = dict(self.decoder.decode(frame.data, raw=True))
                if b":status" in fields and int(fields[b":status"]) >= 200:
                    self.statuses[frame.stream_id] = int(fields[b":status"])
            elif frame.type == 0x0:
                self.data[frame.stream_id] = self.data.get(frame.stream_id, 0) + len(frame.data)
            if "END_STREAM" in frame.flags:
                self.ended.add(frame.stream_id)

    def goaway(self) -> GoAwayFrame | None:
        found = self.goaways()
        return found[-1] if found else None

    def goaways(self) -> list[GoAwayFrame]:
        return [f for f in self.frames if isinstance(f, GoAwayFrame)]

    def resets(self) -> dict[int, int]:
        """Stream id -> error code of the RST_STREAM frames received."""
        return {f.stream_id: f.error_code for f in self.frames if isinstance(f, RstStreamFrame)}

    def settings(self) -> dict[int, int]:
        """The server's SETTINGS (not acknowledgements)."""
        found: dict[int, int] = {}
        for f in self.frames:
            if isinstance(f, SettingsFrame) and "ACK" not in f.flags:
                found.update(f.settings)
        return found

    def read_to_goaway(self, timeout_s: float = 20.0) -> GoAwayFrame:
        """Read until the server closed the connection; its GOAWAY."""
        self.read(timeout_s=timeout_s)
        goaway = self.goaway()
        assert goaway is not None, f"the connection ended without GOAWAY: {self.frames[-20:]}"
        return goaway
