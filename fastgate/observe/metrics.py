"""A worker's metrics: series named from the config, values in its shared-memory seat.

The request path adds to the worker's values: an array of doubles that the
C counter (observe/_native_counts.c, ~1.2k instructions per request) adds to
in place, or without the C speedups a plain Python list (the cheapest
increment Python has; ~5.3k). The worker clock copies the values into the
worker's seat in shared memory (observe/shm.py) on every tick, so metrics cost
no I/O per request and a scrape sees numbers at most one tick old. A worker
that crashes loses what it counted since its last tick. A series is
``(family, labels, part)``: ``labels`` is the Prometheus label text
(``route="api",status="2xx"``) and ``part`` is 0, or for a histogram the
bucket index (``len(LATENCY_BUCKETS_S)`` is +Inf) or ``SUM``. Buckets are
stored per bucket, not cumulated; the exposition cumulates them.

Labels are route, upstream and server names from the config, method and
status classes, never raw request data, so the number of series is bounded
by the config: servers that come at run time (DNS discovery, the admin API)
count together under server="(runtime)" (RUNTIME_SERVER).
"""

from typing import TYPE_CHECKING
from array import array
from bisect import bisect_left

from fastgate.native import speedup
from fastgate.routing.route import route_name
from fastgate.observe.events import EventSink
from fastgate.observe.record import LIMIT_ALLOWED, LIMIT_LIMITED, LIMIT_UNAVAILABLE
from fastgate.ratelimit.stats import ROUND_TRIP_BUCKETS_S
from fastgate.acme.challenge import CHALLENGE_ROUTE
from fastgate.acme.settings import HTTP01
from fastgate.filters.https_redirect import REDIRECT_ROUTE
from fastgate.tls.failures import REASONS as TLS_FAILURE_REASONS
from fastgate.wire.h2_guard import REASONS as HTTP2_ABUSE_REASONS

if TYPE_CHECKING:  # a type name only: observe/ does not depend on the config loader
    from fastgate.config.load import LoadedConfig

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"

FAMILIES: dict[str, tuple[str, str]] = {
    "fastgate_requests_total": (COUNTER, "Requests answered, by route, method and status class."),
    "fastgate_request_duration_seconds": (HISTOGRAM, "Time from the request head to the end of the response, by route."),
    "fastgate_request_bytes_total": (COUNTER, "Bytes received from clients (heads and bodies), by route."),
    "fastgate_response_bytes_total": (COUNTER, "Bytes sent to clients (heads and bodies), by route."),
    "fastgate_ratelimit_decisions_total": (COUNTER, "Rate-limit decisions, by route and outcome."),
    "fastgate_upstream_responses_total": (COUNTER, "Responses relayed from upstream servers, by status class."),
    "fastgate_upstream_duration_seconds": (HISTOGRAM, "Time from sending a request upstream to its response head."),
    "fastgate_upstream_connect_errors_total": (COUNTER, "Connections to a server that could not be made."),
    "fastgate_upstream_timeouts_total": (COUNTER, "Connect, read and total timeouts of a server."),
    "fastgate_upstream_failures_total": (COUNTER, "Exchanges a server broke (reset, early close, malformed response)."),
    "fastgate_upstream_retries_total": (COUNTER, "Requests sent again to another server after a failure."),
    "fastgate_upstream_breaker_open": (GAUGE, "Workers whose error-ratio breaker for the upstream is open or half-open."),
    "fastgate_upstream_pending_requests": (GAUGE, "Requests waiting for a connection (max_connections reached)."),
    "fastgate_upstream_connections_opened_total": (COUNTER, "New connections to a server."),
    "fastgate_upstream_connections_reused_total": (COUNTER, "Requests sent on a pooled keep-alive connection."),
    "fastgate_upstream_idle_connections": (GAUGE, "Idle keep-alive connections in the pools."),
    "fastgate_upstream_active_requests": (GAUGE, "Requests in flight to a server."),
    "fastgate_upstream_ejected": (GAUGE, "Workers that have the server ejected by passive health checks."),
    "fastgate_upstream_health_down": (GAUGE, "Workers that see the server down by active health checks."),
    "fastgate_upstream_servers": (GAUGE, "Servers an upstream has now (DNS discovery and admin API edits applied)."),
    "fastgate_discovery_resolutions_total": (COUNTER, "Resolutions of a discovered upstream's DNS name, by outcome."),
    "fastgate_connections_accepted_total": (COUNTER, "Client connections accepted, by protocol."),
    "fastgate_connections_active": (GAUGE, "Open client connections, by protocol."),
    "fastgate_http2_abuse_total": (
        COUNTER, "HTTP/2 client connections ended for abuse (GOAWAY ENHANCE_YOUR_CALM) or a protocol error, by reason."),
    "fastgate_tls_handshakes_total": (COUNTER, "Completed TLS handshakes of clients, by listener and TLS version."),
    "fastgate_tls_sessions_resumed_total": (COUNTER, "TLS handshakes that resumed a session (ticket), by listener."),
    "fastgate_tls_handshake_failures_total": (COUNTER, "Failed TLS handshakes of clients, by listener and reason."),
    "fastgate_tls_certificate_expiry_timestamp_seconds": (
        GAUGE, "When a certificate a TLS listener serves expires (notAfter, Unix seconds), by listener, file and name."),
    "fastgate_ratelimit_redis_round_trips_total": (COUNTER, "Script calls sent to Redis (a pipeline counts once)."),
    "fastgate_ratelimit_redis_round_trip_seconds": (HISTOGRAM, "Time of answered Redis round trips."),
    "fastgate_ratelimit_redis_failures_total": (COUNTER, "Redis round trips that failed or passed their deadline."),
    "fastgate_ratelimit_redis_timeouts_total": (COUNTER, "Checks whose Redis deadline passed before the answer."),
    "fastgate_ratelimit_redis_script_loads_total": (COUNTER, "Times the limit script was loaded into Redis again."),
    "fastgate_ratelimit_fallback_total": (COUNTER, "Checks decided by the failure policy while Redis was unusable."),
    "fastgate_ratelimit_breaker_open": (GAUGE, "Workers whose Redis circuit breaker is open or half-open."),
    "fastgate_ratelimit_breaker_transitions_total": (COUNTER, "Redis circuit breaker state changes."),
    "fastgate_ratelimit_local_evictions_total": (COUNTER, "Live keys dropped from the full local limit table."),
    "fastgate_ratelimit_local_lock_takeovers_total": (
        COUNTER, "Times the local limit table's lock was taken over from a process that died holding it."),
    "fastgate_ratelimit_local_lock_timeouts_total": (
        COUNTER, "Checks admitted because a live process held the local limit table's lock too long."),
    "fastgate_log_records_dropped_total": (COUNTER, "Access-log or event records dropped (sink slow, full or down)."),
    "fastgate_events_published_total": (COUNTER, "Request events sent to the events sink (NATS or a Redis stream)."),
    "fastgate_tracing_spans_exported_total": (COUNTER, "Spans sent to the OTLP endpoint."),
    "fastgate_tracing_spans_dropped_total": (COUNTER, "Spans dropped (queue full, export failed or timed out)."),
    "fastgate_worker_restarts_total": (COUNTER, "Workers respawned after they exited unexpectedly."),
    "fastgate_reloads_total": (COUNTER, "Configuration reloads, by result."),
    "fastgate_acme_certificates_issued_total": (COUNTER, "Certificates obtained from the ACME directory, by certificate."),
    "fastgate_acme_failures_total": (COUNTER, "ACME orders that failed, by certificate."),
    "fastgate_acme_retry_timestamp_seconds": (
        GAUGE, "When the next order of a certificate whose last order failed is due (Unix seconds; 0: none failed)."),
}

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds of the request and upstream duration histograms."""
_BUCKETS_OF = {"fastgate_ratelimit_redis_round_trip_seconds": ROUND_TRIP_BUCKETS_S}
"""Histograms whose bounds are not LATENCY_BUCKETS_S."""
SUM = -1
_native = speedup("observe._native_counts")


def buckets_of(family: str) -> tuple[float, ...]:
    """The upper bounds of a histogram family's buckets (+Inf follows them)."""
    return _BUCKETS_OF.get(family, LATENCY_BUCKETS_S)

METHOD_CLASSES = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
_METHOD_SLOT = {m.encode(): i * len(STATUS_CLASSES) for i, m in enumerate(METHOD_CLASSES[:-1])}
"""Where a method's block of status classes starts."""
_OTHER_METHOD_SLOT = (len(METHOD_CLASSES) - 1) * len(STATUS_CLASSES)
_STATUS_SLOT = (4, 0, 1, 2, 3, 4, 4, 4, 4, 4)
"""status // 100 -> its class's place (a status outside 100..599 counts as 5xx)."""
LIMIT_OUTCOMES = (LIMIT_ALLOWED, LIMIT_LIMITED, LIMIT_UNAVAILABLE)
_LIMIT_INDEX = {outcome: i for i, outcome in enumerate(LIMIT_OUTCOMES)}
_HISTOGRAM_PARTS = len(LATENCY_BUCKETS_S) + 2  # buckets, +Inf, sum

# offsets inside one route's block of series
_R_DURATION = len(METHOD_CLASSES) * len(STATUS_CLASSES)
_R_BYTES_IN = _R_DURATION + _HISTOGRAM_PARTS
_R_BYTES_OUT = _R_BYTES_IN + 1
_R_LIMITS = _R_BYTES_OUT + 1
_ROUTE_BLOCK = _R_LIMITS + len(LIMIT_OUTCOMES)
_SUM_PART = _HISTOGRAM_PARTS - 1
# offsets inside one server's block
_S_CONNECT_ERRORS = len(STATUS_CLASSES)
_S_TIMEOUTS, _S_FAILURES, _S_OPENED, _S_REUSED, _S_IDLE, _S_ACTIVE, _S_EJECTED, _S_DOWN = range(
    _S_CONNECT_ERRORS + 1, _S_CONNECT_ERRORS + 9)
_SERVER_FAMILIES = (
    "fastgate_upstream_connect_errors_total", "fastgate_upstream_timeouts_total", "fastgate_upstream_failures_total",
    "fastgate_upstream_connections_opened_total", "fastgate_upstream_connections_reused_total",
    "fastgate_upstream_idle_connections", "fastgate_upstream_active_requests", "fastgate_upstream_ejected",
    "fastgate_upstream_health_down",
)
_LIMITER_COUNTERS = (
    ("fastgate_ratelimit_redis_round_trips_total", "redis_round_trips"),
    ("fastgate_ratelimit_redis_failures_total", "redis_failures"),
    ("fastgate_ratelimit_redis_timeouts_total", "redis_timeouts"),
    ("fastgate_ratelimit_redis_script_loads_total", "script_loads"),
    ("fastgate_ratelimit_fallback_total", "fallbacks"),
    ("fastgate_ratelimit_breaker_transitions_total", "breaker_transitions"),
    ("fastgate_ratelimit_local_evictions_total", "local_evictions"),
    ("fastgate_ratelimit_local_lock_takeovers_total", "local_lock_takeovers"),
    ("fastgate_ratelimit_local_lock_timeouts_total", "local_lock_timeouts"),
)
"""Series copied on each tick from the limiter's RateLimitStats attribute of the same line."""

TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")
"""The versions a listener may negotiate (min_version is 1.2 or 1.3)."""
_TLS_REASON_INDEX = {reason: i for i, reason in enumerate(TLS_FAILURE_REASONS)}
_TLS_VERSION_INDEX = {version: i for i, version in enumerate(TLS_VERSIONS)}
_HTTP2_ABUSE_INDEX = {reason: i for i, reason in enumerate(HTTP2_ABUSE_REASONS)}
_TLS_HANDSHAKES = len(TLS_FAILURE_REASONS)
_TLS_RESUMED = _TLS_HANDSHAKES + len(TLS_VERSIONS)
"""Offsets in one TLS listener's block: its failures by reason, then handshakes by version, then resumed."""

UNMATCHED_ROUTE = "(none)"
"""The route label of requests that matched no route (or were refused before routing)."""
RUNTIME_SERVER = "(runtime)"
"""The server label under which each upstream counts the servers not in its config: found in DNS or
added through the admin API (upstream/membership.py), together."""


def label(**pairs: str) -> str:
    return ",".join(f'{name}="{_escape(value)}"' for name, value in pairs.items())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _LayoutBuilder:
    """Series in the order they are added; ``add`` returns the index of the first."""

    def __init__(self) -> None:
        self.layout: list[tuple[str, str, int]] = []

    def add(self, family: str, labels: str) -> int:
        index = len(self.layout)
        if FAMILIES[family][0] == HISTOGRAM:
            self.layout.extend((family, labels, part) for part in range(len(buckets_of(family)) + 1))
            self.layout.append((family, labels, SUM))
        else:
            self.layout.append((family, labels, 0))
        return index

    def route_block(self, route: str) -> int:
        base = len(self.layout)
        for method in METHOD_CLASSES:
            for status in STATUS_CLASSES:
                self.add("fastgate_requests_total", label(route=route, method=method, status=status))
        self.add("fastgate_request_duration_seconds", label(route=route))
        self.add("fastgate_request_bytes_total", label(route=route))
        self.add("fastgate_response_bytes_total", label(route=route))
        for outcome in LIMIT_OUTCOMES:
            self.add("fastgate_ratelimit_decisions_total", label(route=route, outcome=outcome))
        return base

    def server_block(self, upstream: str, server: str) -> int:
        base = len(self.layout)
        for status in STATUS_CLASSES:
            self.add("fastgate_upstream_responses_total", label(upstream=upstream, server=server, status=status))
        for family in _SERVER_FAMILIES:
            self.add(family, label(upstream=upstream, server=server))
        return base


class WorkerMetrics:
    """The series of one worker, built from its config after its pools exist.

    ``bind`` gives it the worker's shared seat. The ``request_done`` and
    ``count_*`` methods are the hot path; ``publish`` runs on the clock tick.
    """

    __slots__ = ("request_done", "layout", "values", "seat", "unmatched_base", "pool_bases", "group_bases",
                 "accepted", "active", "limiter_base", "round_trips", "breaker_open", "dropped", "published",
                 "spans_exported", "pools", "limiter", "sinks", "spans", "tls_bases", "h2_accepted", "h2_active",
                 "h2_open", "h2_abuse", "server_bases", "retired", "carried")

    def __init__(self, loaded: "LoadedConfig", sinks: tuple = (), spans=None) -> None:
        b = _LayoutBuilder()
        for i, route in enumerate(loaded.config.routes):
            b.route_block(route_name(route, i))  # route i's block starts at i * _ROUTE_BLOCK
        if any(spec.router is not None for spec in loaded.listeners):
            b.route_block(REDIRECT_ROUTE)  # the route of redirecting listeners has the next index
        if any(managed.challenge == HTTP01 for managed in loaded.acme):
            b.route_block(CHALLENGE_ROUTE)  # then the ACME challenge route (config/listeners.py)
        self.unmatched_base = b.route_block(UNMATCHED_ROUTE)
        self.group_bases: dict[object, int] = {}
        self.pool_bases: dict[object, int] = {}
        self.server_bases: dict[tuple, int] = {}
        """(group, server label) -> its block: the config's servers, and RUNTIME_SERVER of each group."""
        self.retired: list = []
        """Pools of servers that left (servers_changed) whose series may still be counted."""
        self.carried: dict[int, list] = {}
        """A block -> [opened, reused] of pools that left it, so its counters never go back."""
        self.pools: list = []
        for group in loaded.upstreams.values():
            up = label(upstream=group.name)
            self.group_bases[group] = b.add("fastgate_upstream_duration_seconds", up)
            b.add("fastgate_upstream_retries_total", up)  # the group's other series follow its histogram
            b.add("fastgate_upstream_breaker_open", up)
            b.add("fastgate_upstream_pending_requests", up)
            for pool in group.pools:
                self.pool_bases[pool] = self.server_bases[(group, pool.label)] = b.server_block(group.name, pool.label)
                self.pools.append(pool)
            self.server_bases[(group, RUNTIME_SERVER)] = b.server_block(group.name, RUNTIME_SERVER)
        self.accepted = b.add("fastgate_connections_accepted_total", label(protocol="http1"))
        self.active = b.add("fastgate_connections_active", label(protocol="http1"))
        self.h2_accepted = b.add("fastgate_connections_accepted_total", label(protocol="h2"))
        self.h2_active = b.add("fastgate_connections_active", label(protocol="h2"))
        self.h2_open = 0
        """Open HTTP/2 connections (the others of ``publish``'s count are HTTP/1.1)."""
        self.h2_abuse = len(b.layout)
        for reason in HTTP2_ABUSE_REASONS:
            b.add("fastgate_http2_abuse_total", label(reason=reason))
        self.tls_bases: dict[int, int] = {}
        """A TLS listener's index -> where its block starts (failures, handshakes, resumed)."""
        for spec in loaded.listeners:
            if spec.tls is not None:
                self.tls_bases[spec.index] = len(b.layout)
                for reason in TLS_FAILURE_REASONS:
                    b.add("fastgate_tls_handshake_failures_total", label(listener=spec.label, reason=reason))
                for version in TLS_VERSIONS:
                    b.add("fastgate_tls_handshakes_total", label(listener=spec.label, version=version))
                b.add("fastgate_tls_sessions_resumed_total", label(listener=spec.label))
        self.limiter_base = len(b.layout)
        for family, _ in _LIMITER_COUNTERS:
            b.add(family, "")
        self.round_trips = b.add("fastgate_ratelimit_redis_round_trip_seconds", "")
        self.breaker_open = b.add("fastgate_ratelimit_breaker_open", "")
        self.dropped = b.add("fastgate_log_records_dropped_total", "")
        self.published = b.add("fastgate_events_published_total", "")
        self.spans_exported = b.add("fastgate_tracing_spans_exported_total", "")
        b.add("fastgate_tracing_spans_dropped_total", "")  # follows spans_exported
        self.layout = b.layout
        self.values = array("d", bytes(8 * len(self.layout))) if _native else [0] * len(self.layout)
        """One number per series. For the C counter an array of doubles, which it adds to directly; for
        ``count_request`` a list (int + int is Python's cheapest add; sums of seconds become floats)."""
        self.seat: memoryview | None = None
        self.limiter = loaded.limiter
        self.sinks = sinks
        self.spans = spans
        """The OTLP span exporter (observe/otlp.py), or None."""
        self.request_done = _native.RequestCounter(**self._native_layout()).count if _native else self.count_request
        """``count_request``, or its C twin (observe/_native_counts.c) when that was built."""

    def bind(self, seat: memoryview) -> None:
        """Publish into ``seat`` (float64s, one per series) from now on."""
        self.seat = seat

    def _native_layout(self) -> dict:
        """What the C ``count_request`` needs to know of the series layout."""
        return dict(
            values=self.values, method_slots=_METHOD_SLOT, limit_slots=_LIMIT_INDEX,
            pool_blocks={pool: (base, self.group_bases[pool.group]) for pool, base in self.pool_bases.items()},
            status_slots=_STATUS_SLOT, bounds=LATENCY_BUCKETS_S,
            route_block=_ROUTE_BLOCK, unmatched_base=self.unmatched_base, other_method_slot=_OTHER_METHOD_SLOT,
            duration=_R_DURATION, bytes_in=_R_BYTES_IN, bytes_out=_R_BYTES_OUT, limits=_R_LIMITS, sum_part=_SUM_PART)

    # -- the hot path -----------------------------------------------------------
    def count_request(self, conn, status: int, total_s: float) -> None:
        """Count one finished request of ``conn``, its session (proxy/session.py); called as ``request_done``."""
        v = self.values
        route = conn.route
        base = route.index * _ROUTE_BLOCK if route is not None else self.unmatched_base
        head = conn.head
        v[base + (_METHOD_SLOT.get(head.method, _OTHER_METHOD_SLOT) if head is not None else _OTHER_METHOD_SLOT)
          + _STATUS_SLOT[status // 100]] += 1
        duration = base + _R_DURATION
        v[duration + bisect_left(LATENCY_BUCKETS_S, total_s)] += 1
        v[duration + _SUM_PART] += total_s
        v[base + _R_BYTES_IN] += conn.bytes_in
        v[base + _R_BYTES_OUT] += conn.bytes_out
        outcome = conn.limit_outcome
        if outcome:
            v[base + _R_LIMITS + _LIMIT_INDEX[outcome]] += 1
        pool = conn.pool
        if pool is not None and conn.upstream_label:
            v[self.pool_bases[pool] + _STATUS_SLOT[conn.status // 100]] += 1
            duration = self.group_bases[pool.group]
            upstream_s = conn.upstream_s
            v[duration + bisect_left(LATENCY_BUCKETS_S, upstream_s)] += 1
            v[duration + _SUM_PART] += upstream_s

    def count_accepted(self) -> None:
        """An HTTP/1.1 client connection."""
        self.values[self.accepted] += 1

    def count_h2_opened(self) -> None:
        """An HTTP/2 client connection began (it is among the open connections ``publish`` is given)."""
        self.values[self.h2_accepted] += 1
        self.h2_open += 1

    def count_h2_closed(self) -> None:
        self.h2_open -= 1

    def count_h2_abuse(self, reason: str) -> None:
        """An HTTP/2 connection ended for ``reason``, one of wire/h2_guard.py's REASONS."""
        self.values[self.h2_abuse + _HTTP2_ABUSE_INDEX[reason]] += 1

    def count_tls_handshake(self, listener: int, version: str, resumed: bool) -> None:
        """A client's completed handshake on TLS listener ``listener`` (its index in the config)."""
        base = self.tls_bases[listener]
        slot = _TLS_VERSION_INDEX.get(version)
        if slot is not None:
            self.values[base + _TLS_HANDSHAKES + slot] += 1
        if resumed:
            self.values[base + _TLS_RESUMED] += 1

    def count_tls_failure(self, listener: int, reason: str) -> None:
        """A client's failed handshake; ``reason`` is one of tls/failures.py's REASONS."""
        self.values[self.tls_bases[listener] + _TLS_REASON_INDEX[reason]] += 1

    def count_upstream_error(self, pool, status: int, connecting: bool) -> None:
        """A failed exchange or connect: a timeout (504), else a connect error or a broken exchange."""
        if status == 504:
            part = _S_TIMEOUTS
        else:
            part = _S_CONNECT_ERRORS if connecting else _S_FAILURES
        self.values[self.pool_bases[pool] + part] += 1

    def count_retry(self, group) -> None:
        self.values[self.group_bases[group] + _HISTOGRAM_PARTS] += 1

    # -- when servers come and go (upstream/membership.py) ---------------------------
    def servers_changed(self, group, added: list, retired: list) -> None:
        """Count ``added`` pools in their server's block (a config server's own, else the group's
        RUNTIME_SERVER block); forget retired pools once no request of theirs is in flight. Rebuilds
        ``request_done``: take it again (RequestObserver.count_request)."""
        for pool in added:
            base = self.server_bases.get((group, pool.label))
            self.pool_bases[pool] = self.server_bases[(group, RUNTIME_SERVER)] if base is None else base
            self.pools.append(pool)
        self.retired += retired
        for pool in [p for p in self.retired if not p.active]:
            self.retired.remove(pool)
            self.pools.remove(pool)
            base = self.pool_bases.pop(pool)
            carried = self.carried.setdefault(base, [0, 0])
            carried[0] += pool.opened
            carried[1] += pool.reused
        if _native:
            self.request_done = _native.RequestCounter(**self._native_layout()).count

    # -- on the clock tick --------------------------------------------------------
    def publish(self, open_connections: int) -> None:
        """Refresh the gauges, then copy every value into the shared seat."""
        self._refresh_gauges(open_connections)
        if self.seat is not None:
            self.seat[:] = array("d", self.values)

    def _refresh_gauges(self, open_connections: int) -> None:
        """Gauges, and the counters other parts keep as attributes."""
        v = self.values
        h2_open = min(self.h2_open, open_connections)  # publish(0) at the end: all are gone
        v[self.active] = open_connections - h2_open
        v[self.h2_active] = h2_open
        for group, base in self.group_bases.items():
            v[base + _HISTOGRAM_PARTS + 1] = 1.0 if group.tripped else 0.0
            v[base + _HISTOGRAM_PARTS + 2] = len(group.limit.waiting)
        for base in self.server_bases.values():  # a block may hold several pools, or none: sum them
            opened, reused = self.carried.get(base, (0, 0))
            v[base + _S_OPENED], v[base + _S_REUSED] = opened, reused
            v[base + _S_IDLE] = v[base + _S_ACTIVE] = v[base + _S_EJECTED] = v[base + _S_DOWN] = 0
        for pool in self.pools:
            base = self.pool_bases[pool]
            v[base + _S_OPENED] += pool.opened
            v[base + _S_REUSED] += pool.reused
            v[base + _S_IDLE] += len(pool.idle)
            v[base + _S_ACTIVE] += pool.active
            v[base + _S_EJECTED] += 1.0 if pool.ejected else 0.0
            v[base + _S_DOWN] += 1.0 if pool.down else 0.0
        stats = self.limiter.stats
        for i, (_, attribute) in enumerate(_LIMITER_COUNTERS, self.limiter_base):
            v[i] = getattr(stats, attribute)
        for i, count in enumerate(stats.redis_round_trip_buckets, self.round_trips):
            v[i] = count
        v[self.round_trips + len(ROUND_TRIP_BUCKETS_S) + 1] = stats.redis_round_trip_seconds
        v[self.breaker_open] = 0 if stats.breaker_state == "closed" else 1
        v[self.dropped] = sum(sink.dropped for sink in self.sinks)
        v[self.published] = sum(sink.sent for sink in self.sinks if isinstance(sink, EventSink))
        if self.spans is not None:
            v[self.spans_exported] = self.spans.exported_spans
            v[self.spans_exported + 1] = self.spans.dropped_spans


class _NoMetrics:
    """Stands in for WorkerMetrics when ``admin.metrics`` is off: every count is a no-op."""

    def servers_changed(self, group, added: list, retired: list) -> None:
        pass

    def request_done(self, conn, status: int, total_s: float) -> None:
        pass

    def count_accepted(self) -> None:
        pass

    def count_h2_opened(self) -> None:
        pass

    def count_h2_closed(self) -> None:
        pass

    def count_h2_abuse(self, reason: str) -> None:
        pass

    def count_tls_handshake(self, listener: int, version: str, resumed: bool) -> None:
        pass

    def count_tls_failure(self, listener: int, reason: str) -> None:
        pass

    def count_upstream_error(self, pool, status: int, connecting: bool) -> None:
        pass

    def count_retry(self, group) -> None:
        pass

    def publish(self, open_connections: int) -> None:
        pass


NO_METRICS = _NoMetrics()
