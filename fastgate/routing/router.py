"""The route table: host buckets, each sorted by specificity.

Precedence (documented in the README and the schema): an exact host beats a
wildcard host (a longer wildcard suffix beats a shorter one), which beats a
route without hosts; within the same host kind an exact path beats a regex,
which beats a prefix, and a longer prefix beats a shorter one; then a route
with more conditions (its match_headers, match_query and match_cookies
entries together) beats one with fewer; then a route with methods beats one
without; remaining ties go to the route listed first. A route whose host
matches but whose path, method or conditions do not lets the search go on to
less specific hosts.

Conditions cost only where they are used: a route's conditions
(routing/match.py) are checked only once its host, path and method match,
reading just the values they name; a table without conditions never reads
the request beyond host, path and method.

The table holds routes already built (config/load.py's ``compile_routes``
makes them, with what they run: limits, aggregation); routing/ is data and
knows nothing of the proxy core.
"""

from fastgate.routing.match import MatchRequest
from fastgate.routing.route import Route


class Router:
    """``match(host, path, method, request=None) -> Route | None``: the route that wins.

    ``host`` is the Host (or :authority) value as sent, ``path`` the normalised
    path, ``method`` the method, all bytes; ``request`` is what conditions read
    (``MatchRequest``: for HTTP/1.1 the RequestHead). Without it a route with
    conditions never matches.
    """

    __slots__ = ("exact", "wildcard", "any_host", "host_specific")

    def __init__(self, routes: list[Route], hosts: list[list[str]]) -> None:
        exact: dict[bytes, list[Route]] = {}
        wildcard: dict[bytes, list[Route]] = {}
        any_host: list[Route] = []
        for route, route_hosts in zip(routes, hosts):
            if not route_hosts:
                any_host.append(route)
            for host in route_hosts:
                host_bytes = host.lower().encode()
                if host_bytes.startswith(b"*."):
                    wildcard.setdefault(host_bytes[1:], []).append(route)
                else:
                    exact.setdefault(host_bytes, []).append(route)
        key = Route.specificity
        self.exact = {h: tuple(sorted(rs, key=key)) for h, rs in exact.items()}
        self.wildcard = tuple(
            (suffix, tuple(sorted(rs, key=key)))
            for suffix, rs in sorted(wildcard.items(), key=lambda item: -len(item[0]))
        )
        self.any_host = tuple(sorted(any_host, key=key))
        self.host_specific = bool(exact or wildcard)

    def match(self, host: bytes, path: bytes, method: bytes, request: MatchRequest | None = None) -> Route | None:
        if self.host_specific:
            name = _host_name(host)
            for route in self.exact.get(name, ()):
                if route.matches(path, method, request):
                    return route
            for suffix, routes in self.wildcard:
                if name.endswith(suffix) and len(name) > len(suffix):
                    for route in routes:
                        if route.matches(path, method, request):
                            return route
        for route in self.any_host:
            if route.matches(path, method, request):
                return route
        return None


def _host_name(host: bytes) -> bytes:
    """Host header value -> lower-case name without port or trailing dot."""
    name = host.lower()
    colon = name.rfind(b":")
    if colon >= 0 and name.find(b"]", colon) < 0:
        name = name[:colon]
    return name.rstrip(b".")
