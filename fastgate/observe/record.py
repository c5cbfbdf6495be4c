"""What is known about one finished request, for the access log and event sinks.

A record is made only when a sink is configured (metrics read the
connection directly), so its cost is paid only by those who asked for it.
"""

import time

import msgspec

from fastgate.observe.trace import SPAN_ID, TRACE_ID

LIMIT_NONE, LIMIT_ALLOWED, LIMIT_LIMITED, LIMIT_UNAVAILABLE = "", "allowed", "limited", "unavailable"
"""Rate-limit outcomes: no limit on the route, admitted, answered 429, limiter unavailable (deny policy)."""


class RequestRecord(msgspec.Struct, gc=False, omit_defaults=True):
    """One request, as logged and published. Field names are the access log's JSON keys;
    ``make_record`` passes them by position (cheaper), in this order. Fields that can be
    empty come last and are left out of the JSON while empty (shorter lines, cheaper to
    write). Records hold only strings and numbers, so the garbage collector need not track them."""

    time: float
    """When the request head arrived: Unix time in seconds."""
    request_id: str
    client_ip: str
    method: str
    path: str
    """The request target as routed and forwarded: the normalised path (wire/target.py) and the query."""
    protocol: str
    """"HTTP/1.1" or "HTTP/1.0"."""
    status: int
    """The status sent to the client; 499 when the client went away first."""
    bytes_in: int
    """Bytes received from the client for this request: head and body."""
    bytes_out: int
    """Bytes sent to the client for this request: head and body."""
    upstream_time: float
    """Seconds from sending the request upstream to its response head; 0.0 when not forwarded."""
    total_time: float
    """Seconds from the request head to the end of the response."""
    route: str = ""
    """The route's name, or "" when no route matched."""
    upstream: str = ""
    """The server (host:port) that answered, or ""."""
    ratelimit: str = ""
    """One of "" (no limit on the route), "allowed", "limited", "unavailable"."""
    trace_id: str = ""
    """The W3C trace id (32 hex digits), or "" when tracing is off."""
    span_id: str = ""
    """The gateway's span id (16 hex digits), sent upstream as the parent in traceparent; or ""."""
    user_agent: str = ""
    referer: str = ""


def _field(raw: bytes, lowered: bytes, marker: bytes) -> str:
    """The value of the first header ``marker`` (b"\\r\\nname:") names; no regex (10x cheaper here).

    httptools has validated the head, so no space precedes the colon.
    """
    at = lowered.find(marker)
    if at < 0:
        return ""
    start = at + len(marker)
    return raw[start:raw.find(b"\r\n", start)].strip().decode("latin-1")


def make_record(conn, status: int, total_s: float) -> RequestRecord:
    """Build the record of a finished request from its session (proxy/session.py ProxySession)."""
    head = conn.head
    route = conn.route
    if head is None:  # refused before a head could be parsed
        method = path = user_agent = referer = ""
        protocol = "HTTP/1.1"
    else:
        raw = head.raw
        lowered = head.lowered
        method = head.method.decode("latin-1")
        path = head.target.decode("latin-1")
        protocol = "HTTP/2.0" if head.http2 else "HTTP/1.0" if head.http_1_0 else "HTTP/1.1"
        user_agent = _field(raw, lowered, b"\r\nuser-agent:")
        referer = _field(raw, lowered, b"\r\nreferer:")
    traceparent = conn.traceparent
    if traceparent:
        trace_id = traceparent[TRACE_ID].decode()
        span_id = traceparent[SPAN_ID].decode()
    else:
        trace_id = span_id = ""
    return RequestRecord(
        time.time() - total_s,
        conn.request_id.decode("latin-1"),
        conn.client_text,
        method,
        path,
        protocol,
        status,
        conn.bytes_in,
        conn.bytes_out,
        conn.upstream_s,
        total_s,
        route.name if route is not None else "",
        conn.upstream_label,
        conn.limit_outcome,
        trace_id,
        span_id,
        user_agent,
        referer,
    )
