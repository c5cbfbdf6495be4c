"""A small RESP2 client for one Redis server: pipelined commands on an asyncio Protocol.

Theory of operation
-------------------
Its users batch their work (the rate limiter sends one EVALSHA per batch of
checks), so the client only has to be cheap per round trip:
``execute(payload, replies)`` writes commands already encoded (``encode``,
or pieces the caller built once) in one ``transport.write`` and waits for
their replies, which Redis sends in order. The connection keeps a FIFO of
reply futures: each reply parsed from the socket resolves the oldest one.
A caller whose deadline passes stops waiting (its future is cancelled) but
stays in the FIFO, so its late reply is recognised and dropped; replies
never shift.

Replies are parsed incrementally from the bytes received so far: integers,
simple strings, errors, bulk strings, nil and arrays of them. An array of
integers, which is what the rate limiter's script returns, is parsed with
a few C-level bytes operations whatever its length (``_int_array``); other
replies go through the general parser, one value at a time. An error reply
is a ``ReplyError`` value in the results, not an exception: it answers that
command only, the connection is fine.

Connecting: the first ``execute`` (or the first after a failure) opens a
connection (TCP or Unix socket, TLS if configured), sends AUTH and SELECT
when needed, and shares it; concurrent callers wait for the same attempt,
which is bounded by ``connect_timeout_s``. When the connection fails, every
waiting caller gets ``ConnectionError`` and the next ``execute`` connects
again. Nothing is ever resent by the client: a command that may have
reached Redis is the caller's to judge.
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


class RespConnection(asyncio.Protocol):
    """One connection: writes commands, resolves reply futures in order."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = b""
        self._waiting: deque[asyncio.Future] = deque()
        self._lost: Exception | None = None

    @property
    def usable(self) -> bool:
        return self._lost is None and self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, payload: bytes, replies: int, loop: asyncio.AbstractEventLoop) -> list[asyncio.Future]:
        """Write ``payload`` (``replies`` encoded commands); one future per reply, in order."""
        if self._lost is not None:
            raise self._lost
        futures = [loop.create_future() for _ in range(replies)]
        self._waiting.extend(futures)
        self.transport.write(payload)
        return futures

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
                future = waiting.popleft()
                if not future.done():  # else its caller stopped waiting (deadline)
                    future.set_result(reply)
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
        for future in waiting:
            if not future.done():
                future.set_exception(exc)


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

    async def execute(self, payload: bytes, replies: int) -> list[Reply]:
        """Send ``replies`` encoded commands in one write; their replies, in order (``ReplyError``
        values for error replies). Raises ConnectionError/OSError when the connection fails,
        TimeoutError when connecting takes longer than connect_timeout_s."""
        connection = self._connection
        if connection is None or not connection.usable:
            connection = await self._connected()
        futures = connection.send(payload, replies, self._loop)
        if replies == 1:
            return [await futures[0]]
        return [await future for future in futures]

    @property
    def connected(self) -> bool:
        """A usable connection is open: ``send`` writes at once."""
        connection = self._connection
        return connection is not None and connection.usable

    async def connect(self) -> None:
        """Open the connection if there is none (as ``execute`` does first); raises as it does."""
        if not self.connected:
            await self._connected()

    def send(self, payload: bytes, replies: int) -> list[asyncio.Future]:
        """``execute``'s write without its wait, for a caller that writes to several servers before
        it waits for any: one future per reply, in order. Raises ConnectionError without a
        connection (``connect`` first)."""
        connection = self._connection
        if connection is None or not connection.usable:
            raise ConnectionError("not connected to Redis")
        return connection.send(payload, replies, self._loop)

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

    async def _connected(self) -> RespConnection:
        if self._connecting is None:
            self._connecting = self._loop.create_task(self._connect())
            self._connecting.add_done_callback(self._connect_done)
        return await asyncio.shield(self._connecting)

    def _connect_done(self, task: asyncio.Task) -> None:
        self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._connection = task.result()

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
                    futures = connection.send(b"".join([encode(c) for c in handshake]), len(handshake), loop)
                    for future in futures:
                        reply = await future
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


def _int_array(buffer: bytes, pos: int, count: int) -> tuple[list[int], int] | None | object:
    """An array body of ``count`` integers at ``pos``, parsed without a Python loop: (values, end),
    None when it is not complete yet, or _NOT_INTEGERS when it holds anything else (the general
    parser then takes it). The lines are joined and split at ":" so that any other type's marker
    ("+", "-", "$", "*") lands inside a number and int() refuses it."""
    lines = buffer[pos:].split(b"\r\n", count)
    if len(lines) <= count:
        # Fewer than count lines so far: incomplete if they are integers; a bulk string or a nested
        # array may need more lines than it has items, so let the general parser decide.
        return None if all(line[:1] == b":" for line in lines[:-1]) else _NOT_INTEGERS
    body = b"".join(lines[:count])
    if count and body[:1] != b":":
        return _NOT_INTEGERS
    try:
        values = list(map(int, body.split(b":")[1:]))
    except ValueError:
        return _NOT_INTEGERS
    if len(values) != count:
        return _NOT_INTEGERS
    return values, len(buffer) - len(lines[count])
