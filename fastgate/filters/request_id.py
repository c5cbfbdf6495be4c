"""The request id: the client's X-Request-ID (kept as sent), else a new one (proxy/request_id.py).

A gateway-wide ``early`` filter: the id exists before routing, so the
gateway's own answers (404, 413, 502...) carry it too. A route with
``request_id = false`` sends none of its own upstream nor to the client
(the session drops a made one after routing); a client's id still travels.
"""

from fastgate.filters.base import Filter
from fastgate.proxy.request_id import RequestIds


class RequestIdFilter(Filter):
    __slots__ = ("ids",)

    def __init__(self) -> None:
        self.ids = RequestIds()
        """Made in the worker (a prefix of its own), like every gateway-wide filter."""

    def early(self, session) -> None:
        session.request_id = session.head.request_id or self.ids.next()
