"""The two heads the proxy writes: the request sent upstream, the response sent to the client.

Both copy the received head's header block as bytes, cut out the spans of
headers that must not travel (hop-by-hop, replaced, removed by the route),
and append what the gateway adds, in one join.
"""

from fastgate.routing.route import Route
from fastgate.wire.h1 import RequestHead, ResponseHead, splice_headers


def upstream_request_head(
    head: RequestHead, route: Route, request_id: bytes, client_ip: bytes, proto_header: bytes,
    default_host: bytes, traceparent: bytes = b"", line: bytes = b"", body_length: int = -1, extra: bytes = b"",
) -> bytes:
    """The request head for the upstream, HTTP/1.1, ending in CRLF CRLF.

    ``request_id`` is added as X-Request-ID unless it came from the client
    (then the client's header travels as it was); ``proto_header`` is the
    pre-encoded ``\\r\\nX-Forwarded-Proto: ...``; ``default_host`` is sent as
    Host when an HTTP/1.0 client sent none; ``traceparent`` (``\\r\\ntraceparent: ...``,
    or b"" when tracing is off) replaces the client's traceparent headers. A request of the
    gateway's own made from the client's (an aggregation part) gives its request ``line``;
    it carries the client's headers but never an upgrade. ``body_length`` >= 0 says a chunked
    body was read whole and goes de-chunked: Transfer-Encoding gives way to a Content-Length.
    ``extra`` (``\r\nName: value`` pieces, from the route's ``upstream_request`` filters) is appended
    after the route's own edits.
    """
    raw = head.raw
    if line:
        parts = [line]
    else:
        target = route.upstream_target(head.target)
        if target is head.target and head.line_as_is:
            parts = [raw[: head.line_end]]
        else:
            parts = [head.method + b" " + target + b" HTTP/1.1"]
    drops = head.drops
    edits = route.request_edits
    replace_trace = traceparent and head.traceparent_spans
    if edits.remove is not None or (route.host_header and head.host_span) or replace_trace or body_length >= 0:
        drops = drops + edits.spans(raw)
        if route.host_header and head.host_span:
            drops.append(head.host_span)
        if replace_trace:
            drops.extend(head.traceparent_spans)
        if body_length >= 0:
            drops.append(head.chunked_span)
        drops.sort()
    splice_headers(parts, raw, head.line_end, drops)
    if route.host_header:
        parts.append(route.host_header)
    elif head.host_span is None:
        parts.append(b"\r\nHost: " + default_host)
    if head.forwarded_for:
        parts.append(b"\r\nX-Forwarded-For: " + head.forwarded_for + b", " + client_ip)
    else:
        parts.append(b"\r\nX-Forwarded-For: " + client_ip)
    parts.append(proto_header)
    if head.host:
        parts.append(b"\r\nX-Forwarded-Host: " + head.host)
    if request_id and not head.request_id:
        parts.append(b"\r\nX-Request-ID: " + request_id)
    if traceparent:
        parts.append(traceparent)
    if head.upgrade and not line:
        parts.append(b"\r\nConnection: upgrade\r\nUpgrade: " + head.upgrade)
    if edits.extra:
        parts.append(edits.extra)
    if extra:
        parts.append(extra)
    if body_length >= 0:
        parts.append(b"\r\nContent-Length: %d" % body_length)
    parts.append(b"\r\n\r\n")
    return b"".join(parts)


def client_response_head(
    head: ResponseHead, route: Route, request_id: bytes, close: bool, http_1_0: bool, dechunk: bool,
    extra: bytes = b"",
) -> bytes:
    """The response head for the client, ending in CRLF CRLF.

    ``extra`` is appended as given (``\r\nName: value`` pieces, e.g. rate-limit headers).
    ``close`` adds ``Connection: close``; an HTTP/1.0 client that stays
    connected gets ``Connection: keep-alive``; ``dechunk`` drops
    Transfer-Encoding (the body goes out without its chunked coding).
    """
    raw = head.raw
    parts = [raw[: head.line_end]]
    drops = head.drops
    edits = route.response_edits
    if edits.remove is not None or dechunk or (request_id and head.request_id_span):
        drops = drops + edits.spans(raw)
        if dechunk and head.encoding_span:
            drops.append(head.encoding_span)
        if request_id and head.request_id_span:
            drops.append(head.request_id_span)
        drops.sort()
    splice_headers(parts, raw, head.line_end, drops)
    if edits.extra:
        parts.append(edits.extra)
    if extra:
        parts.append(extra)
    if request_id:
        parts.append(b"\r\nX-Request-ID: " + request_id)
    if close:
        parts.append(b"\r\nConnection: close\r\n\r\n")
    elif http_1_0:
        parts.append(b"\r\nConnection: keep-alive\r\n\r\n")
    else:
        parts.append(b"\r\n\r\n")
    return b"".join(parts)
