"""A raw-socket HTTP/1.1 client: the test writes exact bytes, h11 reads the answers strictly.

Sending is raw, so tests can send malformed, pipelined or partial requests.
Responses are parsed by an h11 client connection, which rejects anything an
HTTP/1.1 client must not accept (bad framing, a body after HEAD or 204, ...).
h11 is told what request each response answers by a request that is
"sent" to it but never written to the socket.
"""

import json
import socket
from dataclasses import dataclass, field

import h11


@dataclass
class Response:
    status: int
    reason: str
    http_version: str
    headers: list[tuple[str, str]]
    body: bytes
    informational: list[tuple[int, list[tuple[str, str]]]] = field(default_factory=list)

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def json(self) -> object:
        return json.loads(self.body)


def _decode(headers: object) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers.raw_items()]  # type: ignore[attr-defined]


class RawConnection:
    """One client TCP connection to 127.0.0.1:``port``."""

    def __init__(self, port: int, timeout_s: float = 15.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=1 << 20)

    def __enter__(self) -> "RawConnection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv(self) -> bytes:
        return self.sock.recv(256 * 1024)

    def read_response(self, method: str = "GET") -> Response:
        """Read the next complete response (with any 1xx before it) to a ``method`` request."""
        response = self.read_head(method)
        response.body = self.read_body()
        return response

    def read_head(self, method: str = "GET") -> Response:
        """Read the next final response head (with any 1xx before it); its body is left to ``read_body``."""
        conn = self._h11
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        if conn.our_state is h11.IDLE:
            conn.send(h11.Request(method=method, target="/", headers=[("Host", "client")]))
            conn.send(h11.EndOfMessage())
        informational: list[tuple[int, list[tuple[str, str]]]] = []
        while True:
            event = self._next_event()
            if isinstance(event, h11.InformationalResponse):
                informational.append((event.status_code, _decode(event.headers)))
            elif isinstance(event, h11.Response):
                return Response(status=event.status_code, reason=event.reason.decode("latin-1"),
                                http_version=event.http_version.decode(), headers=_decode(event.headers),
                                body=b"", informational=informational)
            else:
                raise AssertionError(f"expected a response head, got {event!r}")

    def read_body(self) -> bytes:
        """Read the body of the response whose head ``read_head`` returned."""
        body: list[bytes] = []
        while True:
            event = self._next_event()
            if isinstance(event, h11.Data):
                body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(body)
            else:
                raise AssertionError(f"expected response body, got {event!r}")

    def _next_event(self) -> object:
        conn = self._h11
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(self._recv())
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the gateway closed the connection instead of answering")
            else:
                return event

    def read_interim(self) -> Response:
        """Read exactly one response head that must be an interim (1xx) one, e.g. 100 Continue.

        Returns it as a Response with an empty body; the final response is read
        later with ``read_response``.
        """
        conn = self._h11
        if conn.our_state is h11.IDLE:
            conn.send(h11.Request(method="POST", target="/", headers=[("Host", "client"),
                                                                       ("Transfer-Encoding", "chunked")]))
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(self._recv())
                continue
            if isinstance(event, h11.InformationalResponse):
                return Response(event.status_code, event.reason.decode("latin-1"),
                                event.http_version.decode(), _decode(event.headers), b"")
            raise AssertionError(f"expected an interim response, got {event!r}")

    def finish_request_for_parser(self) -> None:
        """After ``read_interim``: tell the parser the request was sent, so the final response can be read."""
        if self._h11.our_state is h11.SEND_BODY:
            self._h11.send(h11.EndOfMessage())

    def read_head_bytes(self) -> bytes:
        """Raw bytes up to and including the first blank line (the first response head)."""
        data = b""
        while b"\r\n\r\n" not in data:
            more = self._recv()
            if not more:
                break
            data += more
        return data

    def wait_closed(self) -> bytes:
        """Read until the gateway closes the connection (FIN or RST); return what arrived meanwhile.

        Fails (socket timeout) if the connection stays open.
        """
        leftover = self._h11.trailing_data[0]
        chunks = [bytes(leftover)]
        while True:
            try:
                data = self._recv()
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


def request_bytes(method: str, target: str, host: str | None = "gw.test", headers: list[tuple[str, str]] = (),
                  body: bytes = b"", version: str = "HTTP/1.1") -> bytes:
    """Bytes of a well-formed request; a body gets a Content-Length unless headers frame it."""
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines.extend(f"{k}: {v}" for k, v in headers)
    framed = any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers)
    if body and not framed:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
