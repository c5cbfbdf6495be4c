"""HTTP/2 request and response fields as the proxy core sees them, sans-IO.

An HTTP/2 request's header list is checked beyond what the h2 library
checks, then rendered as the HTTP/1.1 request head it stands for, so that
wire/h1.py's parser (target, Host and size rules) and the rest of the core
serve it unchanged; a response head's ``\r\nName: value`` lines become
HTTP/2 response fields (transport/h2_stream.py uses both).

An extended CONNECT (RFC 8441) with ``:protocol websocket`` is rendered as
the HTTP/1.1 WebSocket upgrade it stands for: a GET with ``Connection:
Upgrade``, ``Upgrade: websocket`` and a Sec-WebSocket-Key made here (HTTP/2
has none); the upstream's 101 becomes the stream's 200 (``tunnel_headers``).
Any other CONNECT, or another ``:protocol``, is a stream error.
"""

import re

from fastgate.wire.chunked import REQUEST_TRAILER_FORBIDDEN
from fastgate.wire.websocket import new_key

_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9a-z-]+\Z")
_METHOD = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_BAD_VALUE = re.compile(rb"[\r\n\x00]|\A[ \t]|[ \t]\Z")
_CONNECTION_SPECIFIC = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"))
"""Fields that HTTP/2 forbids (RFC 9113 8.2.2); ``te`` is allowed only as "trailers"."""
_RESPONSE_DROPPED = _CONNECTION_SPECIFIC | {b"te", b"trailer"}
_REQUEST_PSEUDO = frozenset((b":method", b":scheme", b":path", b":authority", b":protocol"))


class StreamError(Exception):
    """A request stream that breaks HTTP/2's rules: reset with PROTOCOL_ERROR."""


def render_request(headers: list, end_stream: bool) -> bytes:
    """The HTTP/1.1 request head (ending in CRLF CRLF) that an HTTP/2 request's header list stands for.

    A request without content-length whose stream did not end with its
    headers gets ``Transfer-Encoding: chunked``: its DATA is rendered chunked.
    Raise StreamError for what HTTP/2 itself forbids.
    """
    host = content_length = None
    pseudo: dict[bytes, bytes] = {}
    regular = False
    lines = [b""]
    cookies = []
    for name, value in headers:
        if _BAD_VALUE.search(value):
            raise StreamError("CR, LF, NUL or surrounding blanks in a field value")
        if name[:1] == b":":
            if regular:
                raise StreamError("a pseudo-header after a regular field")
            if name not in _REQUEST_PSEUDO:
                raise StreamError("unknown pseudo-header")
            if name in pseudo:
                raise StreamError("repeated " + name.decode())
            pseudo[name] = value
            continue
        regular = True
        if not _TOKEN.match(name):
            raise StreamError("a field name that is not a lower-case token")
        if name in _CONNECTION_SPECIFIC:
            raise StreamError("a connection-specific field")
        if name == b"te":
            if value.lower() != b"trailers":
                raise StreamError("te other than trailers")
            continue  # hop-by-hop: it goes no further
        if name == b"sec-websocket-key" and pseudo.get(b":method") == b"CONNECT":
            continue  # not used over HTTP/2 (RFC 8441 5): the upgrade sent upstream gets a key of ours
        if name == b"cookie":
            cookies.append(value)
            continue
        if name == b"host":
            if host is not None:
                raise StreamError("repeated host")
            host = value
            continue
        if name == b"content-length":
            if content_length is not None or not value.isdigit():
                raise StreamError("bad content-length")
            content_length = int(value)
        lines.append(name + b": " + value)
    method = pseudo.get(b":method")
    scheme = pseudo.get(b":scheme")
    path = pseudo.get(b":path")
    authority = pseudo.get(b":authority")
    protocol = pseudo.get(b":protocol")
    if method is None or scheme is None or not path:
        raise StreamError("missing :method, :scheme or :path")
    if method == b"CONNECT":
        if protocol is None:
            raise StreamError("CONNECT is not supported")
        if protocol.lower() != b"websocket":
            raise StreamError("an extended CONNECT for a protocol other than websocket")
        if content_length is not None:
            raise StreamError("content-length on an extended CONNECT")
        method = b"GET"
        lines.append(b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: " + new_key())
    elif protocol is not None:
        raise StreamError(":protocol without CONNECT")
    if not _METHOD.match(method):
        raise StreamError("bad :method")
    if scheme not in (b"http", b"https"):
        raise StreamError("bad :scheme")
    if authority is not None:
        if host is not None and host != authority:
            raise StreamError("host and :authority differ")
        host = authority
    if content_length is not None and end_stream and content_length:
        raise StreamError("content-length on a stream without DATA")
    parts = [method, b" ", path, b" HTTP/1.1"]
    if host is not None:
        parts.append(b"\r\nHost: " + host)
    parts.append(b"\r\n".join(lines))
    if cookies:
        parts.append(b"\r\nCookie: " + b"; ".join(cookies))
    if content_length is None and not end_stream and protocol is None:
        parts.append(b"\r\nTransfer-Encoding: chunked")
    parts.append(b"\r\n\r\n")
    return b"".join(parts)


def trailer_refused(name: bytes, value: bytes) -> bool:
    """A request trailer field that makes the stream an error: a name that is not a lower-case token
    (a pseudo-header among them), one that frames, routes or authorises the request, or a value
    HTTP/1.1 cannot carry as it is."""
    return not _TOKEN.match(name) or name in REQUEST_TRAILER_FORBIDDEN or _BAD_VALUE.search(value) is not None


def response_headers(status: int, block: bytes) -> list:
    """HTTP/2 response headers: ``:status``, then the ``\\r\\nName: value`` lines of ``block``
    without connection-specific fields, names in lower case."""
    headers = [(b":status", b"%d" % status)]
    for line in block.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        name = name.strip().lower()
        if name and name not in _RESPONSE_DROPPED:
            headers.append((name, value.strip()))
    return headers


def tunnel_headers(block: bytes) -> list:
    """The HTTP/2 response headers of an extended CONNECT whose upgrade the upstream accepted (101):
    ``:status`` 200, then the 101's ``\\r\\nName: value`` lines as ``response_headers`` keeps them,
    without the HTTP/1.1 handshake's Sec-WebSocket-Accept (RFC 8441 5); Sec-WebSocket-Protocol and
    -Extensions stay."""
    return [field for field in response_headers(200, block) if field[0] != b"sec-websocket-accept"]
