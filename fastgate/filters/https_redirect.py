"""The answer of a plain listener with ``redirect_https``: 308 to the same URL over https.

A redirecting listener has a router of its own with one route that matches
every request (config/listeners.py builds it), whose one filter is this.

``Location`` is ``https://`` + the request's Host without its port + the
https port when it is not 443 + the request target as routed (path and
query): ``http://example.com:8080/a?b=1`` -> ``https://example.com:8443/a?b=1``.
308 keeps the method and the body (a POST is sent again as a POST). A
request without a Host (HTTP/1.0) cannot be redirected: 400.
"""

from fastgate.filters.base import Answer, Filter

REDIRECT_ROUTE = "(https redirect)"
"""The route name (logs, metrics) of the requests a redirecting listener answers."""
REDIRECT_STATUS = 308


class HttpsRedirect(Filter):
    """Answers each request with its redirect. Immutable after load."""

    __slots__ = ("port_suffix",)

    def __init__(self, https_port: int) -> None:
        self.port_suffix = b"" if https_port == 443 else b":%d" % https_port
        """":8443" appended to the host in Location; nothing for 443."""

    def request(self, session) -> Answer:
        location = self.location(session.head)
        if location is None:
            return Answer.failure(400, "a request without Host cannot be redirected to https")
        return Answer(REDIRECT_STATUS, b"\r\nLocation: " + location + b"\r\nContent-Length: 0")

    def location(self, head) -> bytes | None:
        """``https://host[:port]/path?query`` for ``head``, or None when it has no Host."""
        host = _without_port(head.host)
        if not host:
            return None
        return b"https://" + host + self.port_suffix + head.target


def _without_port(host: bytes) -> bytes:
    """``example.com:8080`` -> ``example.com``; ``[::1]:8080`` -> ``[::1]``."""
    if host.startswith(b"["):
        end = host.find(b"]")
        return host[:end + 1] if end > 0 else b""
    name, colon, port = host.rpartition(b":")
    return name if colon and (port.isdigit() or not port) else host
