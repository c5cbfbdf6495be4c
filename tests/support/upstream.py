"""A real HTTP/1.1 origin server for the tests, on 127.0.0.1, run on its own event loop in a thread.

Theory of operation
-------------------
Every accepted TCP connection is counted, so tests can see whether the
gateway reuses upstream connections. Requests are parsed strictly with h11
(a request the gateway forwards badly is recorded in ``protocol_errors``
and its connection closed), and each complete request is recorded as a
``Received``. Responses are
written as raw bytes, so the framing is exactly what the test asks for.

What the server answers is chosen by the request's query string, so any path
(including rewritten ones) can carry it:

- default: a JSON echo of the request (method, target, headers as received,
  body length, SHA-256 and, when small, the body);
- ``bytes=N``: N bytes of ``pattern`` instead of the echo;
- ``json=TEXT``: TEXT (as given, not checked) as an application/json body instead of the echo;
- ``frame=cl|chunked|close``: Content-Length (default), chunked, or a body
  delimited by closing the connection; ``chunk=N`` sizes the chunks;
- ``status=N``; ``hdr=Name:value`` (repeatable) adds a response header;
- ``info=N`` (repeatable) sends a 1xx interim response N first;
- ``delay=S`` waits S seconds before answering; ``drip=S`` sends the response
  head one line every 0.2 s for S seconds (never silent for long, complete only after S seconds);
- ``hold=1`` does not read the request body until ``release()`` is called;
- ``fail=reset`` (RST after reading the request), ``fail=close`` (close
  without answering), ``fail=stale`` (close without answering, unless the
  request is the first on its connection: a keep-alive race),
  ``fail=garbage`` (a non-HTTP answer), ``fail=headonly`` (a response head promising a
  body, then close), ``fail=midbody`` (head and half the
  body, then RST);
- ``idle_close=1`` closes the connection shortly after the response, without
  having announced it (a keep-alive connection that goes stale).

A test can also change what one path answers while the server runs, e.g. a
health check path whose query is fixed by the gateway's config:
``answer("/healthz", "status=503")`` answers requests for that path as if
their query said so, and ``answer("/healthz", None)`` undoes it.
"""

import asyncio
import hashlib
import itertools
import json
import socket
import struct
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Iterator
from urllib.parse import parse_qs

import h11

from tests.support.server_thread import ServerThread

BLOCK = bytes(range(256)) * 4096
"""1 MiB of a fixed pattern; bodies of any size repeat it."""
_ECHO_BODY_LIMIT = 64 * 1024
_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"))
"""Methods the tests send. Anything else means the gateway framed a request wrongly
(e.g. stray body bytes before the next request line): answered 400 and recorded."""


def pattern(size: int, piece: int = len(BLOCK)) -> Iterator[memoryview]:
    """``size`` bytes of the test pattern, in pieces of at most ``piece`` bytes."""
    view = memoryview(BLOCK)
    offset = 0
    while offset < size:
        start = offset % len(BLOCK)
        n = min(piece, size - offset, len(BLOCK) - start)
        yield view[start : start + n]
        offset += n


@lru_cache(maxsize=None)
def pattern_sha256(size: int) -> str:
    """SHA-256 of ``size`` bytes of the test pattern."""
    digest = hashlib.sha256()
    for piece in pattern(size):
        digest.update(piece)
    return digest.hexdigest()


@dataclass
class Received:
    """One complete request as the upstream received it."""

    conn_id: int
    index_on_conn: int
    method: str
    target: str
    http_version: str
    headers: list[tuple[str, str]]
    """Header fields in order, names in the case they were sent."""
    body_len: int
    body_sha256: str
    body: bytes
    """The body, when at most 64 KiB (else empty)."""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def as_json(self) -> dict:
        return {
            "conn_id": self.conn_id,
            "index_on_conn": self.index_on_conn,
            "method": self.method,
            "target": self.target,
            "http_version": self.http_version,
            "headers": self.headers,
            "body_len": self.body_len,
            "body_sha256": self.body_sha256,
            "body": self.body.decode("latin-1") if self.body_len <= _ECHO_BODY_LIMIT else None,
        }


@dataclass
class _Stats:
    accepted: int = 0
    closed: int = 0
    incomplete: int = 0
    """Connections that ended in the middle of a request."""
    write_aborts: int = 0
    """Responses the peer stopped taking (reset or closed while being written)."""
    bytes_sent: int = 0
    idle_closed: int = 0
    requests: list[Received] = field(default_factory=list)
    protocol_errors: list[str] = field(default_factory=list)


class Upstream(ServerThread):
    """The server; ``with Upstream() as up:`` starts and stops it. With ``ssl_context`` it speaks
    HTTPS (the context's settings decide, e.g. whether a client certificate is required)."""

    thread_name = "upstream"

    def __init__(self, ssl_context=None, host: str = "127.0.0.1", port: int = 0) -> None:
        """``host`` may be another loopback address (127.0.0.2...) and ``port`` a fixed one, so that
        servers differ by address only (as DNS A records do)."""
        super().__init__()
        self.host = host
        self.wanted_port = port
        self.ssl_context = ssl_context
        self.stats = _Stats()
        self._cond = threading.Condition()
        self._conn_ids = itertools.count(1)
        self._release: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._answers: dict[str, dict[str, list[str]]] = {}
        """Query parameters imposed on requests for a path (``answer``)."""

    # -- life cycle (tests/support/server_thread.py) --------------------------------

    async def _listen(self) -> asyncio.AbstractServer:
        self._release = asyncio.Event()
        return await asyncio.start_server(self._serve, self.host, self.wanted_port, backlog=1024, ssl=self.ssl_context)

    def _shut(self, loop: asyncio.AbstractEventLoop) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

    # -- what tests use ---------------------------------------------------

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def config(self, name: str = "up", **fields: object) -> dict:
        """An ``[[upstreams]]`` entry for this server."""
        return {"name": name, "servers": [self.address], **fields}

    def answer(self, path: str, query: str | None) -> None:
        """Answer requests for ``path`` as if their query were ``query`` too (it wins); None: undo."""
        with self._cond:
            if query is None:
                self._answers.pop(path, None)
            else:
                self._answers[path] = parse_qs(query, keep_blank_values=True)

    def release(self) -> None:
        """Let requests sent with ``hold=1`` read their bodies."""
        assert self._loop is not None and self._release is not None
        self._loop.call_soon_threadsafe(self._release.set)

    def read(self, fn: Callable[[_Stats], object]) -> object:
        with self._cond:
            return fn(self.stats)

    def wait_for(self, predicate: Callable[[_Stats], object], message: str,
                 timeout_s: float = 20.0) -> object:
        """Wait until ``predicate(stats)`` is truthy (the server notifies on every change)."""
        with self._cond:
            result = self._cond.wait_for(lambda: predicate(self.stats), timeout_s)
        if not result:
            raise AssertionError(f"timed out after {timeout_s}s waiting until {message}; "
                                 f"upstream stats: {self.summary()}")
        return result

    def requests_with(self, marker: str) -> list[Received]:
        """Recorded requests whose target contains ``marker``."""
        with self._cond:
            return [r for r in self.stats.requests if marker in r.target]

    def wait_request(self, marker: str, timeout_s: float = 20.0) -> Received:
        self.wait_for(lambda s: any(marker in r.target for r in s.requests),
                      f"a request with {marker!r} reached the upstream", timeout_s)
        return self.requests_with(marker)[-1]

    def summary(self) -> str:
        s = self.stats
        return (f"accepted={s.accepted} closed={s.closed} requests={len(s.requests)} "
                f"incomplete={s.incomplete} write_aborts={s.write_aborts} "
                f"protocol_errors={s.protocol_errors}")

    def _update(self, fn: Callable[[_Stats], None]) -> None:
        with self._cond:
            fn(self.stats)
            self._cond.notify_all()

    # -- serving ----------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn_id = next(self._conn_ids)
        self._writers.add(writer)
        self._update(lambda s: setattr(s, "accepted", s.accepted + 1))
        leftover = b""
        try:
            for index in itertools.count():
                got = await self._read_request(reader, leftover, conn_id, index)
                if got is None:
                    break
                request, leftover, keep_alive = got
                if not await self._respond(request, writer, keep_alive):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # the server is stopping; ending quietly keeps asyncio from logging it
        finally:
            self._writers.discard(writer)
            writer.close()
            self._update(lambda s: setattr(s, "closed", s.closed + 1))

    async def _read_request(self, reader: asyncio.StreamReader, leftover: bytes, conn_id: int,
                            index: int) -> tuple[Received, bytes, bool] | None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
        if leftover:
            conn.receive_data(leftover)
        head: h11.Request | None = None
        digest = hashlib.sha256()
        body_len = 0
        body_parts: list[bytes] = []
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(256 * 1024))
                elif isinstance(event, h11.Request):
                    head = event
                    if b"hold=1" in head.target:
                        assert self._release is not None
                        await self._release.wait()
                elif isinstance(event, h11.Data):
                    digest.update(event.data)
                    body_len += len(event.data)
                    if body_len <= _ECHO_BODY_LIMIT:
                        body_parts.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    return None
        except h11.RemoteProtocolError as exc:
            if head is None and not conn.trailing_data[0] and conn.trailing_data[1]:
                return None  # closed between requests
            if "without sending complete" in str(exc) or conn.trailing_data[1]:
                self._update(lambda s: setattr(s, "incomplete", s.incomplete + 1))
            else:
                error = repr(exc)
                self._update(lambda s: s.protocol_errors.append(error))
            return None
        assert head is not None
        request = Received(
            conn_id=conn_id,
            index_on_conn=index,
            method=head.method.decode(),
            target=head.target.decode("latin-1"),
            http_version=head.http_version.decode(),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers.raw_items()],
            body_len=body_len,
            body_sha256=digest.hexdigest(),
            body=b"".join(body_parts) if body_len <= _ECHO_BODY_LIMIT else b"",
        )
        if request.method not in _METHODS:
            self._update(lambda s: s.protocol_errors.append(f"unexpected method {request.method!r}"))
            return None
        self._update(lambda s: s.requests.append(request))
        connection = b",".join(v for k, v in head.headers if k == b"connection").lower()
        keep_alive = head.http_version == b"1.1" and b"close" not in connection
        return request, conn.trailing_data[0], keep_alive

    async def _respond(self, request: Received, writer: asyncio.StreamWriter, keep_alive: bool) -> bool:
        query = parse_qs(request.target.split("?", 1)[1], keep_blank_values=True) if "?" in request.target else {}
        with self._cond:
            query.update(self._answers.get(request.path, {}))

        def one(name: str, default: str) -> str:
            return query.get(name, [default])[-1]

        if delay := float(one("delay", "0")):
            await asyncio.sleep(delay)
        fail = one("fail", "")
        if fail == "reset":
            _reset(writer)
            return False
        if fail == "close" or (fail == "stale" and request.index_on_conn > 0):
            writer.close()
            return False
        if fail == "headonly":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            await writer.drain()
            writer.close()
            return False
        if fail == "garbage":
            writer.write(b"THIS IS NOT HTTP AT ALL\r\n\r\n")
            await writer.drain()
            writer.close()
            return False

        for code in query.get("info", []):
            writer.write(f"HTTP/1.1 {int(code)} Interim\r\nLink: </style.css>; rel=preload\r\n\r\n".encode())

        status = int(one("status", "200"))
        frame = one("frame", "cl")
        headers: list[tuple[str, str]] = [("X-Upstream-Conn", str(request.conn_id))]
        for item in query.get("hdr", []):
            name, _, value = item.partition(":")
            headers.append((name.strip(), value.strip()))
        if "bytes" in query:
            size = int(one("bytes", "0"))
            body: bytes | None = None
            headers.append(("Content-Type", "application/octet-stream"))
        elif "json" in query:
            body = one("json", "").encode()
            size = len(body)
            headers.append(("Content-Type", "application/json"))
        else:
            body = json.dumps(request.as_json()).encode()
            size = len(body)
            headers.append(("Content-Type", "application/json"))
        bodyless = request.method == "HEAD" or status in (204, 304)
        if frame == "cl":
            if status != 204:
                headers.append(("Content-Length", str(size)))
        elif frame == "chunked":
            headers.append(("Transfer-Encoding", "chunked"))
        else:
            keep_alive = False
        if not keep_alive:
            headers.append(("Connection", "close"))
        if drip := float(one("drip", "0")):
            # the head arrives slowly but steadily: one header line every 0.2 s for ``drip`` seconds
            writer.write(f"HTTP/1.1 {status} Test\r\n".encode())
            for i in range(int(drip / 0.2)):
                writer.write(f"X-Drip-{i}: .\r\n".encode())
                await writer.drain()
                await asyncio.sleep(0.2)
            status_line = ""
        else:
            status_line = f"HTTP/1.1 {status} Test\r\n"
        head = status_line + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        writer.write(head.encode("latin-1"))
        if not bodyless:
            pieces = iter([memoryview(body)]) if body is not None else pattern(size, int(one("chunk", "65536")))
            if fail == "midbody":
                await self._write_body(writer, _half(pieces, size), frame == "chunked", finish=False)
                await writer.drain()
                _reset(writer)
                return False
            if not await self._write_body(writer, pieces, frame == "chunked", finish=True):
                return False
        await writer.drain()
        if one("idle_close", ""):
            await asyncio.sleep(0.05)
            writer.close()
            self._update(lambda s: setattr(s, "idle_closed", s.idle_closed + 1))
            return False
        if not keep_alive:
            writer.close()
        return keep_alive

    async def _write_body(self, writer: asyncio.StreamWriter, pieces: Iterator[memoryview], chunked: bool,
                          finish: bool) -> bool:
        try:
            for piece in pieces:
                if chunked:
                    writer.write(b"%x\r\n" % len(piece))
                    writer.write(piece)
                    writer.write(b"\r\n")
                else:
                    writer.write(piece)
                await writer.drain()
                n = len(piece)
                self._update(lambda s: setattr(s, "bytes_sent", s.bytes_sent + n))
            if chunked and finish:
                writer.write(b"0\r\n\r\n")
            return True
        except ConnectionError:
            self._update(lambda s: setattr(s, "write_aborts", s.write_aborts + 1))
            return False


def _half(pieces: Iterator[memoryview], size: int) -> Iterator[memoryview]:
    budget = size // 2
    for piece in pieces:
        if budget <= 0:
            return
        yield piece[:budget]
        budget -= len(piece)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close the connection with a TCP RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
