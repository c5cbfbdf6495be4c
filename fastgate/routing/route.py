"""A route as the request path uses it: matching data and everything pre-encoded."""

import re

from fastgate.config.schema import Http, Route as RouteConfig
from fastgate.ratelimit import RateLimiter
from fastgate.routing.match import Conditions, compile_conditions
from fastgate.routing.rewrite import CompiledEdits
from fastgate.upstream.group import UpstreamGroup

EXACT, REGEX, PREFIX = 0, 1, 2


def route_name(config: RouteConfig, index: int) -> str:
    """A route's name for logs, metrics and rate-limit scopes: its own, or "routes[i]"."""
    return config.name or f"routes[{index}]"


class Route:
    """One compiled ``[[routes]]`` entry. Immutable after load."""

    __slots__ = (
        "name", "index", "path_kind", "path", "path_regex", "methods", "upstream",
        "max_body_bytes", "prefix_rewrite", "host_header", "request_edits", "response_edits",
        "request_id", "limits", "filters", "timeouts", "retry", "buffer_bytes", "upgrades",
        "conditions", "grpc_retry_methods", "grpc_retry_services",
    )

    def __init__(self, config: RouteConfig, index: int, upstream: UpstreamGroup | None, http: Http,
                 limiter: RateLimiter) -> None:
        self.name = route_name(config, index)
        self.index = index
        if config.path is not None:
            self.path_kind, self.path = EXACT, config.path.encode()
        elif config.path_regex is not None:
            self.path_kind, self.path = REGEX, config.path_regex.encode()
        else:
            self.path_kind, self.path = PREFIX, (config.path_prefix or "/").encode()
        self.path_regex = re.compile(self.path) if self.path_kind == REGEX else None
        self.methods = frozenset(m.encode() for m in config.methods) or None
        self.conditions: Conditions | None = compile_conditions(config)
        """Its match_headers, match_query and match_cookies (routing/match.py), or None."""
        self.upstream = upstream
        self.timeouts = upstream.timeouts.for_route(config) if upstream is not None else None
        """Timeouts with the upstream (upstream/timeouts.py): the route's own, else the upstream's."""
        self.retry = upstream.retry.with_retries(config.retries) if upstream is not None else None
        """How its requests go again (upstream/retry.py), with the route's attempt cap."""
        self.grpc_retry_methods = frozenset(m.encode() for m in config.grpc_retry_methods if not m.endswith("/*"))
        """gRPC method paths that may be sent again ("/package.Service/Method")."""
        self.grpc_retry_services = tuple(m[:-1].encode() for m in config.grpc_retry_methods if m.endswith("/*"))
        """Service path prefixes ("/package.Service/") whose every method may be sent again."""
        self.max_body_bytes = int(config.max_body_size if config.max_body_size is not None else http.max_body_size)
        buffer_size = config.request_buffer_size if config.request_buffer_size is not None else http.request_buffer_size
        self.buffer_bytes = min(int(buffer_size), self.max_body_bytes) if config.request_buffering else 0
        """Request bodies up to this size are read whole before going upstream; 0: every body streams."""
        self.upgrades = frozenset(u.lower().encode() for u in config.upgrades)
        """Upgrade protocols (lower case, without version) forwarded for this route."""
        self.prefix_rewrite = config.prefix_rewrite.encode() if config.prefix_rewrite is not None else None
        self.host_header = b"\r\nHost: " + config.host_rewrite.encode() if config.host_rewrite else None
        """The Host header sent upstream instead of the client's, or None to pass it through."""
        self.request_id = config.request_id
        self.limits = limiter.compile_route(self.name, config.limits)
        """The route's rate limits (ratelimit.RouteLimits), or None."""
        self.filters = None
        self.request_edits = self.response_edits = None
        """Set by ``attach_filters``."""

    def attach_filters(self, chain) -> None:
        """The route's filters (filters/chain.py FilterChain), built at load after the route itself
        (some take the route); their load-time header edits are compiled into its heads."""
        self.filters = chain
        self.request_edits = CompiledEdits(chain.request_edits())
        self.response_edits = CompiledEdits(chain.response_edits())

    def matches(self, path: bytes, method: bytes, request=None) -> bool:
        """The path, the method and the conditions match; conditions are read only when the rest
        does, and never hold without a ``request`` (routing/match.py MatchRequest)."""
        kind = self.path_kind
        if kind == PREFIX:
            ok = path.startswith(self.path)
        elif kind == EXACT:
            ok = path == self.path
        else:
            ok = self.path_regex.match(path) is not None
        return ok and (self.methods is None or method in self.methods) and (
            self.conditions is None or self.conditions.hold(request))

    def grpc_retryable(self, path: bytes) -> bool:
        """Whether the gRPC method at ``path`` may be sent again (grpc_retry_methods)."""
        return path in self.grpc_retry_methods or path.startswith(self.grpc_retry_services)

    def upstream_target(self, target: bytes) -> bytes:
        """The request target to send upstream, after the prefix rewrite."""
        if self.prefix_rewrite is None:
            return target
        rest = target[len(self.path) :]
        if self.prefix_rewrite.endswith(b"/") and rest.startswith(b"/"):
            rest = rest[1:]
        return self.prefix_rewrite + rest

    def specificity(self) -> tuple:
        """Sort key within one host bucket: exact path, then regex, then longest prefix; then more
        conditions (match_headers, match_query, match_cookies entries together) before fewer;
        then with methods before without; then the order of the config."""
        conditions = len(self.conditions) if self.conditions is not None else 0
        return (self.path_kind, -len(self.path) if self.path_kind == PREFIX else 0, -conditions,
                self.methods is None, self.index)
