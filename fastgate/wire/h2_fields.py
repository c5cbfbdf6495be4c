"""HTTP/2 request and response fields as the proxy core sees them, sans-IO.

An HTTP/2 request's header list is checked beyond what the h2 library
checks, then rendered as the HTTP/1.1 request head it stands for, so that
wire/h1.py's parser (target, Host and size rules) and the rest of the core
serve it unchanged; a response head's ``\r\nName: value`` lines become
HTTP/2 response fields (transport/h2_server.py uses both).
"""

import re

_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9a-z-]+\Z")
_METHOD = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_BAD_VALUE = re.compile(rb"[\r\n\x00]|\A[ \t]|[ \t]\Z")
_CONNECTION_SPECIFIC = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"))
"""Fields that HTTP/2 forbids (RFC 9113 8.2.2); ``te`` is allowed only as "trailers"."""
_RESPONSE_DROPPED = _CONNECTION_SPECIFIC | {b"te", b"trailer"}


class StreamError(Exception):
    """A request stream that breaks HTTP/2's rules: reset with PROTOCOL_ERROR."""


def render_request(headers: list, end_stream: bool) -> bytes:
    """The HTTP/1.1 request head (ending in CRLF CRLF) that an HTTP/2 request's header list stands for.

    A request without content-length whose stream did not end with its
    headers gets ``Transfer-Encoding: chunked``: its DATA is rendered chunked.
    Raise StreamError for what HTTP/2 itself forbids.
    """
    method = scheme = path = authority = host = content_length = None
    regular = False
    lines = [b""]
    cookies = []
    for name, value in headers:
        if _BAD_VALUE.search(value):
            raise StreamError("CR, LF, NUL or surrounding blanks in a field value")
        if name[:1] == b":":
            if regular:
                raise StreamError("a pseudo-header after a regular field")
            if name == b":method":
                if method is not None:
                    raise StreamError("repeated :method")
                method = value
            elif name == b":scheme":
                if scheme is not None:
                    raise StreamError("repeated :scheme")
                scheme = value
            elif name == b":path":
                if path is not None:
                    raise StreamError("repeated :path")
                path = value
            elif name == b":authority":
                if authority is not None:
                    raise StreamError("repeated :authority")
                authority = value
            else:
                raise StreamError("unknown pseudo-header")
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
    if method is None or scheme is None or not path:
        raise StreamError("missing :method, :scheme or :path")
    if method == b"CONNECT":
        raise StreamError("CONNECT is not supported")
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
    if content_length is None and not end_stream:
        parts.append(b"\r\nTransfer-Encoding: chunked")
    parts.append(b"\r\n\r\n")
    return b"".join(parts)


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
