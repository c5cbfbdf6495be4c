"""A small RESP2 client for one Redis server: pipelined commands on an asyncio Protocol.

Theory of operation
-------------------
Its users batch their work (the rate limiter sends one EVALSHA per batch of
checks), so the client only has to be cheap per round trip:
``execute(payload, replies)`` writes commands already encoded (``encode``,
or pieces the caller built once) in one ``transport.write`` and returns a
Future of their replies, which Redis sends in order. No coroutine and no
task run per call: the caller awaits the Future, or adds a done callback
to it (the rate limiter does, so a round trip costs one Future and one
callback). The connection keeps a FIFO of calls: the replies parsed from
the socket fill the oldest call, and a call whose replies are all in
resolves its Future. A caller who gives up (its deadline passed) cancels
the Future: a call not written yet (still waiting for the connection) is
then never written, and a written one stays in the FIFO, so its late
replies are recognised and dropped; replies never shift.

Replies are parsed incrementally from the bytes received so far: integers,
simple strings, errors, bulk strings, nil and arrays of them. An array of
integers, which is what the rate limiter's script returns, is parsed with
a few C-level bytes operations whatever its length (``_int_array``); other
replies go through the general parser, one value at a time. An error reply
is a ``ReplyError`` value in the results, not an exception: it answers that
command only, the connection is fine.

Connecting: the first ``execute`` (or the first after a failure) starts
opening a connection (TCP or Unix socket, TLS if configured; AUTH and
SELECT when needed) in a task bounded by ``connect_timeout_s``; the calls
made meanwhile queue behind it and are written in order once it is made,
or fail with its error. When the connection fails, every call waiting on
it fails with ``ConnectionError`` and the next ``execute`` connects again.
Nothing is ever resent by the client: a command that may have reached
Redis is the caller's to judge.
"""

import asyncio
import ssl
from collections import deque
from collections.abc import Sequence
from urllib.parse import parse_qs, unquote, urlsplit

Reply = "int | bytes | None | ReplyError | list[Reply]"


class ReplyError(Exception):
    """An error reply from Redis ("-ERR ...", "-NOSCRIPT ...", "-WRONGPASS ...")."""

    @property
    def noscript(self) -> bool:
        """The script is not in Redis's script cache (EVALSHA): load it and send the command again."""
        return str(self).startswith("NOSCRIPT")


class ServerAddress:
    """Where and how to connect, from a redis://, rediss:// or unix:// URL and the credentials."""

    def __init__(self, url: str, username: str = "", password: str = "", tls: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        self.unix_path = parts.path if parts.scheme == "unix" else ""
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.username = unquote(parts.username) if parts.username else username
        """Credentials in the URL take precedence over the separate settings."""
        self.password = unquote(parts.password) if parts.password else password
        db = parts.path.strip("/") if parts.scheme != "unix" else ""
        self.db = int(db or parse_qs(parts.query).get("db", ["0"])[0])
        self.tls = tls


def encode(command: Sequence[bytes]) -> bytes:
    """One command as a RESP array of bulk strings."""
    return b"*%d\r\n" % len(command) + b"".join([b"$%d\r\n%b\r\n" % (len(arg), arg) for arg in command])


class _Call:
    """Commands written together: how many replies they get, those received so far, and their Future."""

    __slots__ = ("future", "expected", "replies")

    def __init__(self, future: asyncio.Future, expected: int) -> None:
        self.future = future
        self.expected = expected
        self.replies: list[Reply] = []


class RespConnection(asyncio.Protocol):
    """One connection: writes commands, resolves the calls' Futures in order."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = b""
        self._waiting: deque[_Call] = deque()
        self._lost: Exception | None = None

    @property
    def usable(self) -> bool:
        return self._lost is None and self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, payload: bytes, replies: int, future: asyncio.Future) -> None:
        """Write ``payload`` (``replies`` encoded commands); ``future`` gets their replies, in order,
        or the connection's failure."""
        if self._lost is not None:
            future.set_exception(self._lost)
            return
        self._waiting.append(_Call(future, replies))
        self.transport.write(payload)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        pos = 0
        waiting = self._waiting
        try:
            while pos < len(buffer):
                parsed = parse_reply(buffer, pos)
                if parsed is None:
                    break
                reply, pos = parsed
                if not waiting:
                    raise ProtocolError("a reply nobody asked for")
                call = waiting[0]
                replies = call.replies
                replies.append(reply)
                if len(replies) == call.expected:
                    waiting.popleft()
                    if not call.future.done():  # else its caller stopped waiting (deadline)
                        call.future.set_result(replies)
        except (ProtocolError, ValueError) as exc:
            self._buffer = b""
            self._fail(ConnectionError(f"bad reply from Redis: {exc}"))
            self.transport.abort()
            return
        self._buffer = buffer[pos:]

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"connection to Redis lost: {exc}" if exc else "connection to Redis closed"))

    def _fail(self, exc: Exception) -> None:
        if self._lost is None:
            self._lost = exc
        waiting, self._waiting = self._waiting, deque()
        for call in waiting:
            if not call.future.done():
                call.future.set_exception(exc)


class ProtocolError(Exception):
    """Bytes from the server that are not RESP2."""


class RespClient:
    """Pipelined commands to one Redis server over one shared, lazily made connection."""

    def __init__(self, address: ServerAddress, connect_timeout_s: float, loop: asyncio.AbstractEventLoop) -> None:
        self._address = address
        self._connect_timeout_s = connect_timeout_s
        self._loop = loop
        self._connection: RespConnection | None = None
        self._connecting: asyncio.Task | None = None
        self._queued: list[tuple[bytes, int, asyncio.Future]] = []
        """Calls made while connecting, written in order once connected."""

    def execute(self, payload: bytes, replies: int) -> asyncio.Future:
        """Send ``replies`` encoded commands in one write. The Future gets their replies, in order
        (``ReplyError`` values for error replies), or ConnectionError/OSError when the connection
        fails, TimeoutError when connecting takes longer than connect_timeout_s. Cancel it to give
        up: if the commands were not written yet they never are; if they were, the replies are dropped."""
        future = self._loop.create_future()
        connection = self._connection
        if connection is not None and connection.usable:
            connection.send(payload, replies, future)
        else:
            self._queued.append((payload, replies, future))
            if self._connecting is None:
                self._connecting = self._loop.create_task(self._connect())
                self._connecting.add_done_callback(self._connect_done)
        return future

    def disconnect(self) -> None:
        """Close the connection: callers waiting on it get ConnectionError; the next call reconnects."""
        connection, self._connection = self._connection, None
        if connection is not None and connection.transport is not None:
            connection.transport.abort()

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
        self.disconnect()

    def _connect_done(self, task: asyncio.Task) -> None:
        """Write the calls queued while connecting (those still wanted), or fail them."""
        self._connecting = None
        queued, self._queued = self._queued, []
        failure = ConnectionError("closed while connecting to Redis") if task.cancelled() else task.exception()
        if failure is None:
            self._connection = connection = task.result()
        for payload, replies, future in queued:
            if future.done():  # its caller gave up while the connection was being made
                continue
            if failure is None:
                connection.send(payload, replies, future)
            else:
                future.set_exception(failure)

    async def _connect(self) -> RespConnection:
        address = self._address
        loop = self._loop
        async with asyncio.timeout(self._connect_timeout_s):
            if address.unix_path:
                _, connection = await loop.create_unix_connection(RespConnection, address.unix_path,
                                                                  ssl=address.tls)
            else:
                _, connection = await loop.create_connection(
                    RespConnection, address.host, address.port, ssl=address.tls,
                    server_hostname=address.host if address.tls else None)
            try:
                handshake = []
                if address.password:
                    handshake.append([b"AUTH", address.username.encode(), address.password.encode()]
                                     if address.username else [b"AUTH", address.password.encode()])
                if address.db:
                    handshake.append([b"SELECT", b"%d" % address.db])
                if handshake:
                    future = loop.create_future()
                    connection.send(b"".join([encode(c) for c in handshake]), len(handshake), future)
                    for reply in await future:
                        if isinstance(reply, ReplyError):
                            raise reply
            except BaseException:
                connection.transport.abort()
                raise
        return connection


def parse_reply(buffer: bytes, pos: int) -> tuple[Reply, int] | None:
    """The reply starting at ``pos`` and the position after it, or None when it is not complete yet."""
    end = buffer.find(b"\r\n", pos)
    if end < 0:
        return None
    kind = buffer[pos]
    if kind == 58:  # ":" integer
        return int(buffer[pos + 1 : end]), end + 2
    if kind == 42:  # "*" array
        count = int(buffer[pos + 1 : end])
        if count < 0:
            return None, end + 2
        fast = _int_array(buffer, end + 2, count)
        if fast is not _NOT_INTEGERS:
            return fast
        items = []
        pos = end + 2
        for _ in range(count):
            parsed = parse_reply(buffer, pos)
            if parsed is None:
                return None
            item, pos = parsed
            items.append(item)
        return items, pos
    if kind == 36:  # "$" bulk string
        length = int(buffer[pos + 1 : end])
        if length < 0:
            return None, end + 2
        stop = end + 2 + length
        if len(buffer) < stop + 2:
            return None
        return buffer[end + 2 : stop], stop + 2
    if kind == 43:  # "+" simple string
        return buffer[pos + 1 : end], end + 2
    if kind == 45:  # "-" error
        return ReplyError(buffer[pos + 1 : end].decode("utf-8", "replace")), end + 2
    raise ProtocolError(f"unknown reply type {chr(kind)!r}")


_NOT_INTEGERS = object()


def _int_array(buffer: bytes, pos: int, count: int) -> tuple[list[int], int] | object:
    """An array body of ``count`` integers at ``pos``, parsed without a Python loop: (values, end),
    or _NOT_INTEGERS when it holds anything else or is not complete yet (the general parser then
    decides, and knows an incomplete array). The bytes after the first ":" are split at the next
    ``count - 1`` colons, so each part holds one value; the last part is cut at its CRLF. int()
    takes a number with the CRLF around it and refuses anything else, so another element's type
    marker ("+", "-", "$", "*", which follows a CRLF) lands inside a part and makes int() refuse it."""
    if not count:
        return [], pos
    if buffer[pos : pos + 1] != b":":
        return _NOT_INTEGERS
    if count == 1:  # e.g. an admitted check's whole answer
        end = buffer.find(b"\r\n", pos)
        try:
            return ([int(buffer[pos + 1 : end])], end + 2) if end > 0 else _NOT_INTEGERS
        except ValueError:
            return _NOT_INTEGERS
    window = buffer[pos + 1 : pos + _INTEGER_MAX * count]  # all of the array if it holds integers only
    parts = window.split(b":", count - 1)
    if len(parts) < count:
        return _NOT_INTEGERS
    last = parts[-1]
    end = last.find(b"\r\n")
    if end < 0:
        return _NOT_INTEGERS
    parts[-1] = last[:end]
    try:
        values = list(map(int, parts))
    except ValueError:
        return _NOT_INTEGERS
    return values, pos + 1 + len(window) - len(last) + end + 2


_INTEGER_MAX = len(b":-9223372036854775808\r\n")
"""The longest integer reply: a window of ``count`` times this holds an array of ``count`` integers."""
