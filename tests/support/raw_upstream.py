"""A recording HTTP/1.1 origin server for adversarial tests: every byte the gateway sends is kept.

Theory of operation
-------------------
``RawUpstream`` listens on 127.0.0.1 (port from the OS) and runs its own
event loop in a thread, like tests/support/upstream.py. For every accepted
TCP connection it keeps the exact bytes received, in order, and parses them
with a ``StrictRequestParser``: each head is read by h11 (server side) and
then checked again by RFC 9112's grammar with no leniency (h11 accepts bare
LF line ends, obs-fold, repeated equal Content-Length fields); bodies are
framed here, chunked ones by ``parse_chunked`` (RFC 9112 7.1 exactly, no
framing, routing or credential fields in trailers).

Each complete request is recorded as a ``ParsedRequest`` (method, target,
header fields as sent, de-framed body, raw bytes) and answered at once with
a small fixed ``200`` (Content-Length framed, keep-alive unless the request
closes), so a gateway can reuse and pipeline on the connection. Bytes the
parser refuses are recorded as a protocol error (``errors``) and the
connection is closed; bytes that are not (yet) a complete request are
visible through ``leftovers()``.

A test takes a ``mark()`` before it sends and afterwards looks at what
arrived since (``requests_since``, ``errors_since``, ``bytes_since``);
``wait_quiet()`` waits until nothing has arrived for a while, for a test
that must show that *nothing* more will come.

``answers`` may map a substring of a request target to raw response bytes
that are written instead of the fixed answer (the connection is closed
after them), e.g. an unsolicited ``101 Switching Protocols``.

``StrictRequestParser`` is sans-IO, so tests also use it (``parse_strict``)
as the oracle for what a client's bytes mean.
"""

import asyncio
import itertools
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable

import h11

from tests.support.server_thread import ServerThread

_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_REQUEST_LINE = re.compile(rb"([" + _TCHAR + rb"]+) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
_FIELD_VCHAR = rb"\x21-\x7e\x80-\xff"
_FIELD_LINE = re.compile(
    rb"([" + _TCHAR + rb"]+):[ \t]*((?:[" + _FIELD_VCHAR + rb"](?:[ \t" + _FIELD_VCHAR + rb"]*["
    + _FIELD_VCHAR + rb"])?)?)[ \t]*"
)
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e]|\\[\t \x21-\x7e])*"'
_CHUNK_EXT = rb"(?:[ \t]*;[ \t]*[" + _TCHAR + rb"]+(?:[ \t]*=[ \t]*(?:[" + _TCHAR + rb"]+|" + _QUOTED + rb"))?)*"
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,15})(" + _CHUNK_EXT + rb")")
_MAX_LINE = 8192

FORBIDDEN_TRAILERS = frozenset((
    b"content-length", b"transfer-encoding", b"host", b"connection", b"trailer", b"te", b"upgrade",
    b"expect", b"authorization", b"cookie", b"content-type", b"content-encoding", b"content-range",
))
"""Fields that must never travel in a trailer section (and x-forwarded-*): framing, routing, auth."""

FIXED_BODY = b"ok"
"""The body of the fixed answer to every request."""


class StrictError(Exception):
    """Bytes that are not a strictly well-formed HTTP/1.1 request stream."""


def check_head(head: bytes) -> tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]]]:
    """Parse a complete request head (ending in CRLF CRLF) by RFC 9112's grammar, with no leniency.

    Returns (method, target, version, fields as sent); raises StrictError.
    """
    if not head.endswith(b"\r\n\r\n"):
        raise StrictError(f"head does not end in CRLF CRLF: {head[-20:]!r}")
    block = head[:-4]
    without_crlf = block.replace(b"\r\n", b"")
    if b"\n" in without_crlf:
        raise StrictError(f"bare LF in head: {head[:200]!r}")
    if b"\r" in without_crlf:
        raise StrictError(f"bare CR in head: {head[:200]!r}")
    lines = block.split(b"\r\n")
    m = _REQUEST_LINE.fullmatch(lines[0])
    if m is None:
        raise StrictError(f"bad request line: {lines[0][:200]!r}")
    fields = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise StrictError(f"obs-fold: {line[:200]!r}")
        f = _FIELD_LINE.fullmatch(line)
        if f is None:
            raise StrictError(f"bad field line: {line[:200]!r}")
        fields.append((f.group(1), f.group(2)))
    return m.group(1), m.group(2), m.group(3) + b"." + m.group(4), fields


def framing_of(version: bytes, fields: list[tuple[bytes, bytes]]) -> str:
    """"none", "content-length" or "chunked"; raises StrictError when the framing is ambiguous."""
    hosts = [v for k, v in fields if k.lower() == b"host"]
    te = [v for k, v in fields if k.lower() == b"transfer-encoding"]
    cl = [v for k, v in fields if k.lower() == b"content-length"]
    if len(hosts) > 1 or (version == b"1.1" and not hosts):
        raise StrictError(f"{len(hosts)} Host fields")
    if te:
        if version != b"1.1":
            raise StrictError("Transfer-Encoding in an HTTP/1.0 request")
        if len(te) > 1 or te[0].lower() != b"chunked":
            raise StrictError(f"Transfer-Encoding other than one 'chunked': {te!r}")
        if cl:
            raise StrictError("Transfer-Encoding with Content-Length")
        return "chunked"
    if cl:
        if len(cl) > 1 or not cl[0].isdigit() or len(cl[0].lstrip(b"0")) > 18:
            raise StrictError(f"bad Content-Length: {cl!r}")
        return "content-length"
    return "none"


def _line(data: bytes, pos: int) -> int | None:
    """End of the CRLF-terminated line starting at ``pos`` (offset of its CR), None if incomplete."""
    end = data.find(b"\r\n", pos)
    piece = data[pos:end] if end >= 0 else data[pos:]
    if b"\n" in piece or b"\r" in (piece if end >= 0 else piece[:-1]):
        raise StrictError(f"bare CR or LF in chunked framing: {piece[:80]!r}")
    if len(piece) > _MAX_LINE:
        raise StrictError("chunked framing line too long")
    return None if end < 0 else end


def parse_chunked(data: bytes, pos: int = 0, forbidden_trailers: frozenset = FORBIDDEN_TRAILERS,
                  ) -> tuple[bytes, list[tuple[bytes, bytes]], int] | None:
    """Decode a chunked body starting at ``pos`` by RFC 9112 7.1, strictly.

    Returns (body, trailer fields, offset after the body), or None when ``data``
    ends before the body does; raises StrictError on anything malformed.
    """
    body = bytearray()
    while True:
        end = _line(data, pos)
        if end is None:
            return None
        m = _CHUNK_LINE.fullmatch(data, pos, end)
        if m is None:
            raise StrictError(f"bad chunk line: {data[pos:end][:80]!r}")
        size = int(m.group(1), 16)
        pos = end + 2
        if size == 0:
            break
        if len(data) < pos + size + 2:
            if len(data) > pos + size and data[pos + size : pos + size + 1] != b"\r":
                raise StrictError("chunk data not followed by CRLF")
            return None
        body += data[pos : pos + size]
        if data[pos + size : pos + size + 2] != b"\r\n":
            raise StrictError(f"chunk data not followed by CRLF: {data[pos + size : pos + size + 10]!r}")
        pos += size + 2
    trailers = []
    while True:
        end = _line(data, pos)
        if end is None:
            return None
        line = data[pos:end]
        pos = end + 2
        if not line:
            return bytes(body), trailers, pos
        if line[:1] in (b" ", b"\t"):
            raise StrictError(f"obs-fold in trailer: {line[:80]!r}")
        f = _FIELD_LINE.fullmatch(line)
        if f is None:
            raise StrictError(f"bad trailer line: {line[:80]!r}")
        name = f.group(1).lower()
        if name in forbidden_trailers or name.startswith(b"x-forwarded-"):
            raise StrictError(f"trailer names a forbidden field: {name!r}")
        trailers.append((f.group(1), f.group(2)))


@dataclass
class ParsedRequest:
    """One complete request, as strictly parsed."""

    conn_id: int
    index: int
    """Position on its connection (0 for the first)."""
    method: str
    target: str
    http_version: str
    headers: list[tuple[bytes, bytes]]
    """Header fields in order, exactly as sent (name case kept, value without surrounding whitespace)."""
    body: bytes
    """The body without its framing (de-chunked)."""
    framing: str
    """"none", "content-length" or "chunked"."""
    trailers: list[tuple[bytes, bytes]]
    raw: bytes
    """The message's bytes as received: head and framed body."""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def header_all(self, name: str) -> list[bytes]:
        lowered = name.lower().encode()
        return [v for k, v in self.headers if k.lower() == lowered]

    def header(self, name: str) -> bytes | None:
        values = self.header_all(name)
        return values[0] if values else None

    def summary(self) -> str:
        return f"{self.method} {self.target} HTTP/{self.http_version} ({self.framing}, {len(self.body)} bytes)"


class StrictRequestParser:
    """Sans-IO: a request byte stream in, complete requests (and the fixed answers to them) out.

    Each head is read by a fresh h11 server connection (which checks the
    request line, field syntax, Host and Content-Length its way) and then by
    ``check_head`` and ``framing_of``; bodies are framed here, chunked ones by
    ``parse_chunked`` (h11's chunk parser is lenient in some places and
    stricter than RFC 9112 in others). After a protocol error (``error``) or
    a request that ends the connection (``closing``), nothing more is parsed:
    later bytes stay in ``leftover``.
    """

    def __init__(self, conn_id: int = 0, forbidden_trailers: frozenset = FORBIDDEN_TRAILERS) -> None:
        self.conn_id = conn_id
        self.forbidden_trailers = forbidden_trailers
        self.raw = bytearray()
        self.done = 0
        """Offset just after the last complete request."""
        self.requests: list[ParsedRequest] = []
        self.error: str | None = None
        self.closing = False
        self._head: tuple[bytes, bytes, bytes, list, str, int] | None = None
        """(method, target, version, fields, framing, offset of the body) of the request being read."""

    @property
    def leftover(self) -> bytes:
        """Received bytes that are not part of a complete request."""
        return bytes(self.raw[self.done :])

    def feed(self, data: bytes) -> list[tuple[ParsedRequest, bytes]]:
        """Take more bytes; return the requests they completed, each with the bytes of its answer."""
        self.raw += data
        out: list[tuple[ParsedRequest, bytes]] = []
        if self.error is not None or self.closing or not data:
            return out
        try:
            while not self.closing and self.done < len(self.raw):
                if self._head is None and not self._read_head():
                    break
                done = self._read_body()
                if done is None:
                    break
                out.append(done)
        except (h11.RemoteProtocolError, StrictError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        return out

    def _read_head(self) -> bool:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
        conn.receive_data(bytes(self.raw[self.done :]))
        event = conn.next_event()
        if event is h11.NEED_DATA:
            return False
        assert isinstance(event, h11.Request), event
        head_end = len(self.raw) - len(conn.trailing_data[0])
        method, target, version, fields = check_head(bytes(self.raw[self.done : head_end]))
        self._head = (method, target, version, fields, framing_of(version, fields), head_end)
        return True

    def _read_body(self) -> tuple[ParsedRequest, bytes] | None:
        assert self._head is not None
        method, target, version, fields, framing, start = self._head
        trailers: list[tuple[bytes, bytes]] = []
        if framing == "chunked":
            parsed = parse_chunked(bytes(self.raw[start:]), 0, self.forbidden_trailers)
            if parsed is None:
                return None
            body, trailers, used = parsed
            end = start + used
        elif framing == "content-length":
            end = start + int(next(v for k, v in fields if k.lower() == b"content-length"))
            if len(self.raw) < end:
                return None
            body = bytes(self.raw[start:end])
        else:
            body, end = b"", start
        request = ParsedRequest(
            conn_id=self.conn_id, index=len(self.requests), method=method.decode("latin-1"),
            target=target.decode("latin-1"), http_version=version.decode(), headers=fields, body=body,
            framing=framing, trailers=trailers, raw=bytes(self.raw[self.done : end]),
        )
        self.requests.append(request)
        self.done = end
        self._head = None
        tokens = {t.strip().lower() for k, v in fields if k.lower() == b"connection" for t in v.split(b",")}
        self.closing = b"close" in tokens or (version == b"1.0" and b"keep-alive" not in tokens)
        return request, self._answer(request)

    def _answer(self, request: ParsedRequest) -> bytes:
        status = b"405 Method Not Allowed" if request.method == "CONNECT" else b"200 OK"
        head = (b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\nX-Raw-Upstream-Conn: %d\r\n"
                % (len(FIXED_BODY), self.conn_id))
        if self.closing:
            head += b"Connection: close\r\n"
        return head + b"\r\n" + (FIXED_BODY if request.method != "HEAD" else b"")


def parse_strict(data: bytes, forbidden_trailers: frozenset = FORBIDDEN_TRAILERS,
                 ) -> tuple[list[ParsedRequest], str | None]:
    """The requests a strict server accepts from a client's ``data``, and why it stopped (None: it did not).

    Requests after the first malformed one, after an incomplete one, or after
    one that closes the connection are not accepted. Empty lines (CRLF) before
    a request line are ignored (RFC 9112 2.2); a bare CR or LF there is not.
    """
    requests: list[ParsedRequest] = []
    pos = 0
    while True:
        while data.startswith(b"\r\n", pos):
            pos += 2
        parser = StrictRequestParser(forbidden_trailers=forbidden_trailers)
        parser.feed(data[pos:])
        requests += parser.requests
        pos += parser.done
        if parser.error is not None:
            if data.startswith(b"\r\n", pos):
                continue  # the next request line follows empty lines: start again there
            return requests, parser.error
        if parser.leftover:
            return requests, "closed" if parser.closing else f"incomplete: {parser.leftover[:60]!r}"
        return requests, None


@dataclass
class ConnView:
    """A snapshot of one upstream connection."""

    conn_id: int
    raw: bytes
    requests: list[ParsedRequest]
    error: str | None
    closed: bool
    leftover: bytes


@dataclass
class Mark:
    """What had arrived when ``RawUpstream.mark()`` was called."""

    requests: int
    errors: int
    connections: int
    bytes_per_conn: dict[int, int]
    total_bytes: int


@dataclass
class _Conn:
    conn_id: int
    parser: StrictRequestParser
    transport: asyncio.Transport
    closed: bool = False


class _Protocol(asyncio.Protocol):
    def __init__(self, server: "RawUpstream") -> None:
        self.server = server
        self.conn: _Conn | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.conn = self.server._opened(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        assert self.conn is not None
        self.server._received(self.conn, data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.server._lost(self.conn)


class RawUpstream(ServerThread):
    """The server; ``with RawUpstream() as up:`` starts and stops it."""

    def __init__(self, answers: dict[str, bytes] | None = None,
                 forbidden_trailers: frozenset = FORBIDDEN_TRAILERS) -> None:
        super().__init__()
        self.answers = dict(answers or {})
        self.forbidden_trailers = forbidden_trailers
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._conns: list[_Conn] = []
        self._requests: list[ParsedRequest] = []
        self._errors: list[tuple[int, str]] = []
        self._total = 0
        self._last_activity = time.monotonic()

    # -- life cycle (tests/support/server_thread.py) --------------------------------

    thread_name = "raw-upstream"

    async def _listen(self) -> asyncio.AbstractServer:
        return await asyncio.get_running_loop().create_server(lambda: _Protocol(self), "127.0.0.1", 0, backlog=512)

    def _shut(self, loop: asyncio.AbstractEventLoop) -> None:
        for conn in list(self._conns):
            conn.transport.abort()
        loop.run_until_complete(asyncio.sleep(0))

    # -- serving (on the server's thread) ------------------------------------

    def _touch(self) -> None:
        self._last_activity = time.monotonic()
        self._cond.notify_all()

    def _opened(self, transport: asyncio.Transport) -> _Conn:
        with self._cond:
            conn = _Conn(next(self._ids), None, transport)  # type: ignore[arg-type]
            conn.parser = StrictRequestParser(conn.conn_id, self.forbidden_trailers)
            self._conns.append(conn)
            self._touch()
        return conn

    def _received(self, conn: _Conn, data: bytes) -> None:
        with self._cond:
            self._total += len(data)
            done = conn.parser.feed(data)
            self._requests.extend(request for request, _ in done)
            if conn.parser.error is not None and not any(c == conn.conn_id for c, _ in self._errors):
                self._errors.append((conn.conn_id, conn.parser.error))
            self._touch()
        transport = conn.transport
        for request, answer in done:
            special = next((raw for key, raw in self.answers.items() if key in request.target), None)
            if special is not None:
                transport.write(special)
                transport.close()
                return
            transport.write(answer)
        if conn.parser.error is not None or conn.parser.closing:
            transport.close()

    def _lost(self, conn: _Conn) -> None:
        with self._cond:
            conn.closed = True
            self._touch()

    # -- what tests use ---------------------------------------------------

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def config(self, name: str = "up", **fields: object) -> dict:
        """An ``[[upstreams]]`` entry for this server."""
        return {"name": name, "servers": [self.address], **fields}

    def mark(self) -> Mark:
        with self._cond:
            return Mark(len(self._requests), len(self._errors), len(self._conns),
                        {c.conn_id: len(c.parser.raw) for c in self._conns}, self._total)

    @property
    def requests(self) -> list[ParsedRequest]:
        with self._cond:
            return list(self._requests)

    @property
    def errors(self) -> list[tuple[int, str]]:
        """(connection id, why) of every connection whose bytes did not parse strictly."""
        with self._cond:
            return list(self._errors)

    @property
    def total_bytes(self) -> int:
        with self._cond:
            return self._total

    def requests_since(self, mark: Mark) -> list[ParsedRequest]:
        with self._cond:
            return self._requests[mark.requests :]

    def errors_since(self, mark: Mark) -> list[tuple[int, str]]:
        with self._cond:
            return self._errors[mark.errors :]

    def bytes_since(self, mark: Mark) -> dict[int, bytes]:
        """Per connection id, the bytes received after ``mark`` (connections that got none are left out)."""
        with self._cond:
            out = {}
            for c in self._conns:
                start = mark.bytes_per_conn.get(c.conn_id, 0)
                if len(c.parser.raw) > start:
                    out[c.conn_id] = bytes(c.parser.raw[start:])
            return out

    def connections(self) -> list[ConnView]:
        with self._cond:
            return [ConnView(c.conn_id, bytes(c.parser.raw), list(c.parser.requests), c.parser.error,
                             c.closed, c.parser.leftover) for c in self._conns]

    def leftovers(self) -> dict[int, bytes]:
        """Per connection id, bytes received that are not part of a complete request (errors excluded)."""
        with self._cond:
            return {c.conn_id: c.parser.leftover for c in self._conns
                    if c.parser.leftover and c.parser.error is None}

    def requests_with(self, marker: str) -> list[ParsedRequest]:
        with self._cond:
            return [r for r in self._requests if marker in r.target]

    def raw_contains(self, needle: bytes) -> list[int]:
        """Ids of the connections whose received bytes contain ``needle``."""
        with self._cond:
            return [c.conn_id for c in self._conns if needle in c.parser.raw]

    def wait_for(self, predicate: Callable[["RawUpstream"], object], message: str,
                 timeout_s: float = 15.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self), timeout_s):
                raise AssertionError(f"timed out after {timeout_s}s waiting until {message}; {self._summary()}")

    def wait_quiet(self, quiet_s: float = 0.3, timeout_s: float = 15.0) -> None:
        """Wait until no connection, byte or close has arrived for ``quiet_s`` seconds."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                now = time.monotonic()
                idle = now - self._last_activity
                if idle >= quiet_s:
                    return
                if now > deadline:
                    raise AssertionError(f"the upstream never went quiet for {quiet_s}s; {self._summary()}")
                self._cond.wait(quiet_s - idle)

    def summary(self) -> str:
        with self._cond:
            return self._summary()

    def _summary(self) -> str:
        return (f"connections={len(self._conns)} requests={len(self._requests)} bytes={self._total} "
                f"errors={self._errors}")
