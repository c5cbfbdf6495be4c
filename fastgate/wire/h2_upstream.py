"""The HTTP/2 side of an exchange with an HTTP/2 upstream, sans-IO: fields in, fields out.

The proxy core renders every upstream request as an HTTP/1.1 head
(proxy/heads.py) and reads every response as one (wire/h1.py ResponseHead),
whatever the protocol on either side. For an HTTP/2 upstream these two
functions stand in between:

- ``request_fields`` turns a head fastgate itself rendered (never bytes a
  client sent as they came: the core builds the head it forwards) into
  HTTP/2 request fields. The Host becomes ``:authority``; fields that are
  specific to an HTTP/1.1 connection (Connection, Keep-Alive,
  Proxy-Connection, Transfer-Encoding, Upgrade, TE) are not sent, so an
  HTTP/2 peer cannot read the request differently from the gateway. A gRPC
  request (content-type application/grpc...) says ``te: trailers``, as gRPC
  requires. It reports how the body that follows is framed, so that the
  caller sends its payload as DATA (de-chunking a chunked body).
- ``response_head`` turns HTTP/2 response fields into the HTTP/1.1 head the
  core relays. A response without content-length is described as chunked,
  and its DATA is then rendered as chunks (``chunk``), so that the HTTP/1.1
  client side frames it as it frames any chunked response, and the HTTP/2
  client side de-chunks it as it de-chunks any.
"""

from fastgate.wire.h1 import ResponseHead, parse_response_head
from fastgate.wire.status import status_line

_NOT_FORWARDED = frozenset((b"host", b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                            b"upgrade", b"te", b"http2-settings"))
"""Request fields that do not go to an HTTP/2 server: the Host (it becomes :authority) and the
connection-specific ones RFC 9113 8.2.2 forbids (TE is re-added as "trailers" for gRPC only)."""
_GRPC_TYPE = b"application/grpc"


class RequestFraming:
    """How the body after a rendered request head is framed."""

    __slots__ = ("content_length", "chunked")

    def __init__(self, content_length: int, chunked: bool) -> None:
        self.content_length = content_length
        """Payload bytes that follow (-1: none declared)."""
        self.chunked = chunked
        """The body follows in the chunked coding (to be de-chunked into DATA)."""

    @property
    def has_body(self) -> bool:
        return self.chunked or self.content_length > 0


def request_fields(head: bytes, scheme: bytes) -> tuple[list, RequestFraming]:
    """The HTTP/2 request fields of ``head`` (a complete HTTP/1.1 request head rendered by fastgate,
    ending in CRLF CRLF) and the framing of the body after it; ``scheme`` is b"http" or b"https".

    Raise ValueError for what HTTP/2 cannot carry (a NUL byte, a missing Host, a malformed line):
    the core never renders such a head, so this is a bug, not a peer's fault.
    """
    if head.find(b"\x00") >= 0:
        raise ValueError("NUL in a request head")
    line_end = head.find(b"\r\n")
    method, target, _version = head[:line_end].split(b" ")
    authority = None
    content_length = -1
    chunked = grpc = False
    regular = []
    for line in head[line_end + 2 : -4].split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon or not name:
            raise ValueError("a request head line without a field name")
        name = name.lower()
        value = value.strip()
        if name in _NOT_FORWARDED:
            if name == b"host":
                authority = value
            elif name == b"transfer-encoding":
                chunked = True
            continue
        if name == b"content-length":
            content_length = int(value)
        elif name == b"content-type" and value[:16].lower() == _GRPC_TYPE:
            grpc = True
        regular.append((name, value))
    if authority is None:
        raise ValueError("a request head without Host")
    fields = [(b":method", method), (b":scheme", scheme), (b":authority", authority), (b":path", target)]
    fields += regular
    if grpc:
        fields.append((b"te", b"trailers"))
    if chunked:
        content_length = -1
    return fields, RequestFraming(content_length, chunked)


def response_head(fields: list, method: bytes) -> ResponseHead:
    """The HTTP/1.1 response head that HTTP/2 response ``fields`` (``:status`` first) stand for, for a
    request with ``method``.

    A response that may have a body and says no content-length is described as chunked, even when
    it ended with its fields (a gRPC trailers-only answer): the caller then renders its DATA with
    ``chunk`` and its end with ``LAST_CHUNK`` (or trailers). Raise HeadError(502) for a malformed one.
    """
    status = int(fields[0][1])
    parts = [status_line(status)]
    length_given = False
    for name, value in fields[1:]:
        if name[:1] == b":":
            continue
        if name == b"content-length":
            length_given = True
        parts.append(b"\r\n" + name + b": " + value)
    bodiless = method == b"HEAD" or status in (204, 304) or status < 200
    if not length_given and not bodiless:
        parts.append(b"\r\nTransfer-Encoding: chunked")
    parts.append(b"\r\n\r\n")
    return parse_response_head(b"".join(parts), method)


LAST_CHUNK = b"0\r\n\r\n"
"""The end of a body rendered chunked, without trailers."""


def chunk(data: bytes) -> bytes:
    """DATA payload rendered as one chunk of the chunked coding."""
    return b"%x\r\n%b\r\n" % (len(data), data)
