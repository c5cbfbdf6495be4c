"""The answer of a plain listener with ``redirect_https``: 308 to the same URL over https.

A redirecting listener has a router of its own with one route that matches
every request (config/listeners.py builds it); the route's answer is made
per request by ``HttpsRedirect``, through the hook a route has for answers
the gateway makes itself from the request (the one aggregation uses, see
proxy/aggregate.py and proxy/session.py): ``start(...)`` returns the answer
and calls ``on_done()`` on a later loop turn; the session then asks the
answer for its ``status`` and ``answer(extra_headers)``, its header fields
and body, which the client's protocol adapter renders.

``Location`` is ``https://`` + the request's Host without its port + the
https port when it is not 443 + the request target as routed (path and
query): ``http://example.com:8080/a?b=1`` -> ``https://example.com:8443/a?b=1``.
308 keeps the method and the body (a POST is sent again as a POST). A
request without a Host (HTTP/1.0) cannot be redirected: 400.
"""

import msgspec

REDIRECT_ROUTE = "(https redirect)"
"""The route name (logs, metrics) of the requests a redirecting listener answers."""
REDIRECT_STATUS = 308
_NO_HOST_STATUS = 400


class _ErrorBody(msgspec.Struct):
    error: str
    status: int
    request_id: str


_encode = msgspec.json.Encoder().encode


class HttpsRedirect:
    """Makes each request's redirect (a route's ``aggregate`` hook). Immutable after load."""

    __slots__ = ("port_suffix",)

    def __init__(self, https_port: int) -> None:
        self.port_suffix = b"" if https_port == 443 else b":%d" % https_port
        """":8443" appended to the host in Location; nothing for 443."""

    def start(self, head, request_id: bytes, client_ip: bytes, proto_header: bytes, clock,
              on_done) -> "RedirectAnswer":
        """The answer to ``head``; ``on_done()`` is called on the next loop turn."""
        answer = RedirectAnswer(self.location(head), request_id)
        clock.loop.call_soon(on_done)
        return answer

    def location(self, head) -> bytes | None:
        """``https://host[:port]/path?query`` for ``head``, or None when it has no Host."""
        host = _without_port(head.host)
        if not host:
            return None
        return b"https://" + host + self.port_suffix + head.target


class RedirectAnswer:
    """One request's redirect, in the shape the client connection asks an answer for."""

    __slots__ = ("location", "request_id", "status")

    def __init__(self, location: bytes | None, request_id: bytes) -> None:
        self.location = location
        self.request_id = request_id
        self.status = REDIRECT_STATUS if location is not None else _NO_HOST_STATUS

    def answer(self, extra_headers: bytes) -> tuple[bytes, bytes]:
        """The answer's header fields (``\\r\\nName: value`` pieces) and body."""
        request_id = b"\r\nX-Request-ID: " + self.request_id if self.request_id else b""
        if self.location is None:
            body = _encode(_ErrorBody("a request without Host cannot be redirected to https", self.status,
                                      self.request_id.decode("latin-1")))
            return b"".join((b"\r\nContent-Type: application/json\r\nContent-Length: %d" % len(body),
                             extra_headers, request_id)), body
        return b"".join((b"\r\nLocation: ", self.location, b"\r\nContent-Length: 0", extra_headers, request_id)), b""

    def cancel(self) -> None:
        """The client went away first: nothing to stop."""


def _without_port(host: bytes) -> bytes:
    """``example.com:8080`` -> ``example.com``; ``[::1]:8080`` -> ``[::1]``."""
    if host.startswith(b"["):
        end = host.find(b"]")
        return host[:end + 1] if end > 0 else b""
    name, colon, port = host.rpartition(b":")
    return name if colon and (port.isdigit() or not port) else host
