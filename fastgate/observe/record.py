"""What is known about one finished request, for the access log and event sinks.

A record is made only when a sink is configured (metrics read the
connection directly), so its cost is paid only by those who asked for it.
"""

import time

import msgspec

from fastgate.observe.trace import span_id_of, trace_id_of
from fastgate.wire.h1 import header_value

LIMIT_NONE, LIMIT_ALLOWED, LIMIT_LIMITED, LIMIT_UNAVAILABLE = "", "allowed", "limited", "unavailable"
"""Rate-limit outcomes: no limit on the route, admitted, answered 429, limiter unavailable (deny policy)."""


class RequestRecord(msgspec.Struct, kw_only=True):
    """One request, as logged and published. Field names are the access log's JSON keys."""

    time: float
    """When the request head arrived: Unix time in seconds."""
    request_id: str
    trace_id: str
    """The W3C trace id (32 hex digits), or "" when tracing is off."""
    span_id: str
    """The gateway's span id (16 hex digits), sent upstream as the parent in traceparent; or ""."""
    client_ip: str
    method: str
    path: str
    """The request target as received (path and query)."""
    protocol: str
    """"HTTP/1.1" or "HTTP/1.0"."""
    status: int
    """The status sent to the client; 499 when the client went away first."""
    bytes_in: int
    """Bytes received from the client for this request: head and body."""
    bytes_out: int
    """Bytes sent to the client for this request: head and body."""
    route: str
    """The route's name, or "" when no route matched."""
    upstream: str
    """The server (host:port) that answered, or ""."""
    upstream_time: float
    """Seconds from sending the request upstream to its response head; 0.0 when not forwarded."""
    total_time: float
    """Seconds from the request head to the end of the response."""
    ratelimit: str
    """One of "", "allowed", "limited", "unavailable"."""
    user_agent: str
    referer: str


def make_record(conn, status: int, total_s: float) -> RequestRecord:
    """Build the record of ``conn``'s current request (transport/h1_server.py ClientConnection)."""
    head = conn.head
    route = conn.route
    if head is None:  # refused before a head could be parsed
        method = path = user_agent = referer = ""
        protocol = "HTTP/1.1"
    else:
        method = head.method.decode("latin-1")
        path = head.target.decode("latin-1")
        protocol = "HTTP/1.0" if head.http_1_0 else "HTTP/1.1"
        user_agent = (header_value(head.raw, b"user-agent") or b"").decode("latin-1")
        referer = (header_value(head.raw, b"referer") or b"").decode("latin-1")
    return RequestRecord(
        time=time.time() - total_s,
        request_id=conn.request_id.decode("latin-1"),
        trace_id=trace_id_of(conn.traceparent).decode(),
        span_id=span_id_of(conn.traceparent).decode(),
        client_ip=conn.client_ip.decode("latin-1"),
        method=method,
        path=path,
        protocol=protocol,
        status=status,
        bytes_in=conn.bytes_in,
        bytes_out=conn.bytes_out,
        route=route.name if route is not None else "",
        upstream=conn.upstream_label,
        upstream_time=conn.upstream_s,
        total_time=total_s,
        ratelimit=conn.limit_outcome,
        user_agent=user_agent,
        referer=referer,
    )
