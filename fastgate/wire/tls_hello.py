"""The server name and ALPN offer of a TLS ClientHello, read from a connection's first bytes (sans-IO).

Theory of operation
-------------------
A TLS client's first flight is one handshake message, the ClientHello,
carried in handshake records (content type 22) of at most 2^14 bytes each;
a large hello may span several records. ``hello_bytes_needed`` walks only
the record headers and says how many bytes the connection must have
delivered for the whole hello to be there (or that it already is, or that
these bytes are no TLS handshake at all). ``read_client_hello`` then
reassembles the message and reads the two extensions a server may want to
know before choosing its certificate: server_name (RFC 6066 3) and
application_layer_protocol_negotiation (RFC 7301 3.1).

Both take whatever bytes are given, garbage too, and never raise: anything
that is not a well-formed ClientHello is ``None`` ("not a hello I can read"),
and the TLS stack that gets the same bytes next rejects them its own way. A
hello longer than ``MAX_HELLO_BYTES`` is not read either.
"""

from dataclasses import dataclass

MAX_HELLO_BYTES = 32768
"""Longest ClientHello handshake message read; a longer one is left to the TLS stack."""

_HANDSHAKE = 22
_CLIENT_HELLO = 1
_RECORD_HEADER = 5
_MAX_RECORD = 2**14
_SERVER_NAME = 0
_ALPN = 16
_HOST_NAME = 0


@dataclass(frozen=True, slots=True)
class ClientHello:
    """What a ClientHello asks for."""

    server_name: str | None
    """The SNI host name, lower case, without a trailing dot; None when absent or not ASCII."""
    alpn: tuple[bytes, ...]
    """The protocols offered in ALPN, in the client's order; () without the extension."""


def hello_bytes_needed(data: bytes) -> int | None:
    """How many bytes from the connection's start hold its whole ClientHello: a number at most
    ``len(data)`` when they are all in ``data``, a larger one when more must arrive first (at least
    that many), None when ``data`` does not start like a TLS handshake or the hello is too long."""
    offset = 0
    handshake_bytes = 0
    message_bytes = None  # the hello's length with its 4-byte header, read from the first record
    while True:
        if len(data) < offset + _RECORD_HEADER:
            return offset + _RECORD_HEADER
        if data[offset] != _HANDSHAKE or data[offset + 1] != 3:
            return None
        length = int.from_bytes(data[offset + 3:offset + 5], "big")
        if not 0 < length <= _MAX_RECORD:
            return None
        body = offset + _RECORD_HEADER
        end = body + length
        if message_bytes is None:  # the first record: it starts with the hello's 4-byte header
            if length < 4:
                return None
            if len(data) < body + 4:
                return end
            if data[body] != _CLIENT_HELLO:
                return None
            message_bytes = 4 + int.from_bytes(data[body + 1:body + 4], "big")
            if message_bytes > MAX_HELLO_BYTES:
                return None
        handshake_bytes += length
        if message_bytes is not None and handshake_bytes >= message_bytes:
            return end
        if len(data) < end:
            return end
        offset = end


def read_client_hello(data: bytes) -> ClientHello | None:
    """The ClientHello at the start of ``data`` (all of it there: see ``hello_bytes_needed``), or None
    when these bytes are no complete, well-formed one."""
    message = _reassemble(data)
    if message is None:
        return None
    try:
        return _read_body(memoryview(message)[4:])
    except _Malformed:
        return None


def _reassemble(data: bytes) -> bytes | None:
    """The handshake message's bytes (header and body) from its records."""
    needed = hello_bytes_needed(data)
    if needed is None or needed > len(data):
        return None
    parts = []
    offset = 0
    while offset < needed:
        length = int.from_bytes(data[offset + 3:offset + 5], "big")
        parts.append(data[offset + _RECORD_HEADER:offset + _RECORD_HEADER + length])
        offset += _RECORD_HEADER + length
    message = b"".join(parts)
    size = 4 + int.from_bytes(message[1:4], "big")
    if len(message) < size:
        return None
    return message[:size]


class _Malformed(Exception):
    pass


class _Reader:
    """Reads length-prefixed fields off a memoryview; raises _Malformed past its end."""

    __slots__ = ("view", "at")

    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.at = 0

    def take(self, count: int) -> memoryview:
        if self.at + count > len(self.view):
            raise _Malformed
        piece = self.view[self.at:self.at + count]
        self.at += count
        return piece

    def number(self, width: int) -> int:
        return int.from_bytes(self.take(width), "big")

    def vector(self, width: int) -> memoryview:
        return self.take(self.number(width))

    def done(self) -> bool:
        return self.at == len(self.view)


def _read_body(body: memoryview) -> ClientHello:
    hello = _Reader(body)
    hello.take(2 + 32)  # legacy_version, random
    if len(hello.vector(1)) > 32:  # legacy_session_id
        raise _Malformed
    suites = hello.vector(2)
    if not suites or len(suites) % 2:
        raise _Malformed
    if not hello.vector(1):  # legacy_compression_methods
        raise _Malformed
    if hello.done():  # a hello without extensions (TLS 1.2 allows it)
        return ClientHello(None, ())
    extensions = _Reader(hello.vector(2))
    if not hello.done():
        raise _Malformed
    seen: set[int] = set()
    server_name = None
    alpn: tuple[bytes, ...] = ()
    while not extensions.done():
        kind = extensions.number(2)
        data = extensions.vector(2)
        if kind in seen:  # RFC 8446 4.2: never twice
            raise _Malformed
        seen.add(kind)
        if kind == _SERVER_NAME:
            server_name = _server_name(data)
        elif kind == _ALPN:
            alpn = _protocols(data)
    return ClientHello(server_name, alpn)


def _server_name(data: memoryview) -> str | None:
    names = _Reader(_whole_vector(data))
    while not names.done():
        kind = names.number(1)
        name = names.vector(2)
        if kind == _HOST_NAME:
            try:
                text = bytes(name).decode("ascii")
            except UnicodeDecodeError:
                return None
            return text.lower().rstrip(".") or None
    return None


def _protocols(data: memoryview) -> tuple[bytes, ...]:
    protocols = _Reader(_whole_vector(data))
    offered = []
    while not protocols.done():
        name = protocols.vector(1)
        if not name:
            raise _Malformed
        offered.append(bytes(name))
    if not offered:
        raise _Malformed
    return tuple(offered)


def _whole_vector(data: memoryview) -> memoryview:
    """An extension's body that is one vector with a 2-byte length filling it exactly."""
    outer = _Reader(data)
    inner = outer.vector(2)
    if not outer.done():
        raise _Malformed
    return inner
