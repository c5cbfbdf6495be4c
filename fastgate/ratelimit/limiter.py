"""The rate limiter: built once in the master, used by every worker; per-route compiled limits.

Lifecycle::

    master:  limiter = RateLimiter.create_shared(settings)        # before fork: the shared table
             limits = limiter.compile_route(route.name, route.limits)   # each route, at config load
    fork
    worker:  limiter.attach(loop)                                  # redis store: starts its client
             keys = limits.keys(ip, header_lookup, query, body_prefix, content_type)
             if keys is not None:
                 decision = limits.check_now(keys)                 # local store (check_now is None with Redis)
                 limits.check(keys, on_decision)                   # either store
             ...
             await limiter.close()                                  # at worker exit
"""

import asyncio
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from fastgate.ratelimit.breaker import SharedBreakerState
from fastgate.ratelimit.config import Limit, RateLimitSettings
from fastgate.ratelimit.decision import Decision, OnDecision
from fastgate.ratelimit.headers import HeaderWriter
from fastgate.ratelimit.hot_keys import HotKeyBoard
from fastgate.ratelimit.instances import SharedInstances
from fastgate.ratelimit.keys import COLON, IP, HeaderLookup, IpGrouping, read_sources
from fastgate.ratelimit.limitset import LimitSet
from fastgate.ratelimit.local_store import LocalStore
from fastgate.ratelimit.scopes import LimitSpec, ScopeRegistry
from fastgate.ratelimit.shared_table import SharedTable
from fastgate.ratelimit.stats import RateLimitStats

if TYPE_CHECKING:
    from fastgate.ratelimit.redis_store import RedisStore


class RateLimiter:
    """All rate limits of one config. Create with ``create_shared`` in the master, before forking."""

    def __init__(self, settings: RateLimitSettings, table: SharedTable, previous: "RateLimiter | None" = None) -> None:
        self.settings = settings
        self.table = table
        """The shared-memory table of the local store (and of the Redis store's local fallback)."""
        self.stats = RateLimitStats(table)
        """This process's counters."""
        self.breaker_state = SharedBreakerState(settings.breaker)
        """The Redis breaker's state, one for all the workers forked after this (breaker.py)."""
        self.instances = SharedInstances(settings.instances, settings.key_prefix,
                                         previous.instances if previous is not None else None)
        """How many gateways divide the fallback rates (instances.py)."""
        self.hot_keys = HotKeyBoard(float(settings.hot_keys.window)) if settings.store == "redis" else None
        """The workers' busiest Redis keys (hot_keys.py); None with the local store."""
        self._writer = HeaderWriter(settings.headers, settings.headers_on_allowed)
        self._local = LocalStore(table, self._writer, self.stats)
        self._registry = ScopeRegistry(settings.key_prefix, hashed_keys=settings.store == "redis")
        self.ip_grouping = IpGrouping(settings.ipv6_prefix_bits)
        """What an "ip" key counts: IPv4 addresses, IPv6 networks (keys.py)."""
        self._redis: "RedisStore | None" = None
        self._check: Callable[[RouteLimits, list[bytes], OnDecision], None] = (
            self._local.check if settings.store == "local" else _not_attached)
        self._check_now: Callable[[RouteLimits, list[bytes]], Decision] | None = (
            self._local.check_now if settings.store == "local" else None)
        """The synchronous path: the local store's decision, made before returning (None for Redis);
        each route's ``check_now``."""

    @classmethod
    def create_shared(cls, settings: RateLimitSettings, previous: "RateLimiter | None" = None) -> "RateLimiter":
        """A limiter whose local table is shared by the processes forked after this call.

        On reload, pass the old limiter as ``previous``: its table (and so every
        local counter) is kept when local_capacity did not change.
        """
        table = previous.table if previous is not None and previous.table.capacity == SharedTable.rounded(
            settings.local_capacity) else SharedTable(settings.local_capacity)
        return cls(settings, table, previous)

    def compile_route(self, route_name: str, limits: list[Limit]) -> "RouteLimits | None":
        """The route's compiled limits, or None when it has none. Raises FieldError for bad limits
        (paths relative to the route, e.g. "limits[0].rate"); ``config.validate`` reports them first."""
        if not limits:
            return None
        return RouteLimits(self, route_name, self._registry.compile(route_name, limits))

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """In each worker, after fork, once: start the Redis store's client (it connects lazily)."""
        if self._redis is not None:
            raise RuntimeError("RateLimiter.attach was already called in this process")
        if self.settings.store == "redis":
            # coredis costs ~30 MB of RSS per process: only a Redis store imports it.
            from fastgate.ratelimit.redis_store import RedisStore

            self._redis = RedisStore(self.settings, self.breaker_state, self.instances, self.hot_keys, loop,
                                     self._local, self._writer, self.stats)
            self._redis.start()
            self._check = self._redis.check

    def metrics_exposition(self) -> bytes:
        """Families of the limiter that /metrics shows beside the summed series: the hot keys."""
        return self.hot_keys.exposition() if self.hot_keys is not None else b""

    async def close(self) -> None:
        """At worker exit: pending Redis checks get the failure policy's decision; the client closes."""
        if self._redis is not None:
            await self._redis.close()


def _not_attached(route: "RouteLimits", keys: list[bytes], on_decision: OnDecision) -> None:
    raise RuntimeError("RateLimiter.attach(loop) must be called in the worker before checks")


class RouteLimits:
    """The limits of one route, compiled at config load."""

    __slots__ = ("route_name", "needs_body", "body_read_limit", "limits", "fallback", "admit_ip", "check_now",
                 "_limiter", "_sources", "_per_limit", "_ip_scope", "_ip_names", "_group_ip", "_specs",
                 "_fallback_shares")

    def __init__(self, limiter: RateLimiter, route_name: str, specs: list[LimitSpec]) -> None:
        self.route_name = route_name
        sources = tuple(dict.fromkeys(source for spec in specs for source in spec.scope.sources))
        self.needs_body = any(source.kind == "body" for source in sources)
        """Some limit is keyed by a body field: read up to body_read_limit bytes before calling keys()."""
        self.body_read_limit = int(limiter.settings.body_read_limit)
        self.limits = LimitSet(specs, False, limiter._writer)
        self.fallback = LimitSet(specs, True, limiter._writer)
        """The same limits at their whole fallback rates (local store while Redis fails)."""
        self._specs = specs
        self._fallback_shares = {1: self.fallback}
        self._limiter = limiter
        self._group_ip = limiter.ip_grouping.group
        self._sources = sources
        self._per_limit = tuple((spec.scope, tuple(sources.index(s) for s in spec.scope.sources)) for spec in specs)
        only = specs[0].scope
        self._ip_scope = only if len(specs) == 1 and only.sources == (IP,) else None
        """The scope of the route's one limit when it is keyed by the client IP alone."""
        self._ip_names = only.names if self._ip_scope is not None and only.hashed else None
        """Its hashed keys' cache (``Scope.name_of``), looked up here first."""
        check_now = limiter._check_now
        self.check_now: Callable[[list[bytes]], Decision] | None = (
            partial(check_now, self) if check_now is not None else None)
        """With the local store, ``check_now(keys)`` checks and counts one request and returns the
        decision. None with Redis (call ``check``)."""
        plain = (self._ip_scope is not None and only.algorithm == "gcra" and limiter.settings.store == "local"
                 and not limiter._writer.on_allowed)
        self.admit_ip = limiter.table.gcra_admit(only.plain_prefix, specs[0].params) if plain else None
        """For the most common limit (local store, one GCRA limit keyed by the client IP, no headers on
        admitted responses), ``admit_ip(client_ip)``: True when the C check counted the request, then
        nothing else is to be done; False: check it with ``keys`` and ``check_now``. None otherwise.
        It sees the plain address, so it never counts an IPv6 client (whose key is its network)
        unless ipv6_prefix_bits is 128."""

    def keys(self, client_ip: bytes, header_lookup: HeaderLookup, query: bytes, body_prefix: bytes | None,
             content_type: bytes | None) -> list[bytes] | None:
        """The counter key of each limit for this request: b"" for a limit whose key source is absent
        (that limit does not apply), None when no limit applies (do not call check). An IPv6
        ``client_ip`` counts as its network ([ratelimit] ipv6_prefix_bits).

        ``header_lookup`` gets lower-case header names; ``query`` is the raw query
        string (without "?"); ``body_prefix`` the body, or its first
        body_read_limit bytes when it is longer (None without a body or when
        needs_body is False). A prefix of body_read_limit bytes counts as cut
        off: its body fields are UNPARSEABLE (keys.py).
        """
        if COLON in client_ip:
            client_ip = self._group_ip(client_ip)
        scope = self._ip_scope
        if scope is not None:  # the most common limit, without the general machinery
            if not scope.hashed:
                return [scope.plain_prefix + client_ip]
            return [self._ip_names.get(client_ip) or scope.name_of(client_ip)]
        truncated = body_prefix is not None and len(body_prefix) >= self.body_read_limit
        values = read_sources(self._sources, client_ip, header_lookup, query, body_prefix, content_type, truncated)
        keys: list[bytes] = []
        applies = False
        for scope, indices in self._per_limit:
            parts = [values[i] for i in indices]
            if None in parts:
                keys.append(b"")
            else:
                keys.append(scope.key(parts))
                applies = True
        return keys if applies else None

    def fallback_share(self, instances: int) -> LimitSet:
        """The limits at one of ``instances`` shares of their fallback rates (made once per count)."""
        limits = self._fallback_shares.get(instances)
        if limits is None:
            limits = self._fallback_shares[instances] = LimitSet(self._specs, True, self._limiter._writer, instances)
        return limits

    def check(self, keys: list[bytes], on_decision: OnDecision) -> None:
        """Check and count one request; ``on_decision`` is called exactly once.

        The local store, and the Redis store while its breaker is open, call it
        before returning; otherwise it is called later from the event loop (at
        most about [ratelimit.redis].timeout later).
        """
        self._limiter._check(self, keys, on_decision)
