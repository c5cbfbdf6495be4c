"""Compiling a route's limits: scopes (shared budgets), their checks, and the names of their keys.

Theory of operation
-------------------
A scope is one budget: a name, the key sources that tell clients apart, an
algorithm and a rate. Routes that name the same scope share its counters;
they must then define it identically. ``ScopeRegistry.compile`` turns one
route's ``Limit`` list into ``LimitSpec``s bound to registered scopes.

Every counter of one check must live on one Redis Cluster slot, because a
check is one atomic script. A counter's name cannot depend on the check it
appears in (other routes reach the same counter), so slots are assigned per
group of scopes: scopes are connected when some route checks them together.
In a group whose scopes all use the same key sources (e.g. "ip" at 10/s and
"ip" at 1000/h), one request's counters all have the same key value, so the
hash tag is the key value's digest and the counters spread over the whole
cluster. A group that mixes key sources (per phone AND per IP) gets one tag
for the whole group: exact and atomic, but its counters share one slot.
Key names (documented for operators)::

    <prefix>:<scope>:<g|s|f>:{<digest>}              same-source group
    <prefix>:<scope>:<g|s|f>:{<group tag>}:<digest>  mixed-source group

``g|s|f`` is the algorithm, ``digest`` 32 hex digits of BLAKE2b over the key
values (keys.digest), ``group tag`` "g" + 8 hex digits of the group's scope
names. Groups are recomputed after every compiled route, so once all routes
are compiled (config load) every name is final.

The local store never sends a key anywhere and its table keeps only a
64-bit hash of it, so there the key values follow the prefix in clear
(``plain_prefix`` + keys.joined(values), e.g. ``fg:rl:api:g:{192.0.2.1``):
no digest to compute per request. Scope names cannot contain "{", so the
first "{" ends the scope part and keys of different scopes never meet.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import blake2b
from typing import TYPE_CHECKING

from fastgate.config.errors import FieldError
from fastgate.ratelimit.algorithms import LimitParams
from fastgate.ratelimit.keys import Source, digest, joined, parse_source
from fastgate.ratelimit.rates import Rate, parse_rate

if TYPE_CHECKING:
    from fastgate.ratelimit.config import Limit

MAX_LIMITS_PER_ROUTE = 16
NAMES_KEPT = 4096
MAX_SOURCES_PER_KEY = 8
_ALGORITHM_LETTER = {"gcra": "g", "sliding_window": "s", "fixed_window": "f"}
_FORBIDDEN_IN_SCOPE = set('{}"\\')


class Scope:
    """One budget, shared by every route that names it. ``key_prefix``/``per_key_tag`` are set by placement."""

    __slots__ = ("name", "sources", "algorithm", "rate", "burst", "fallback_rate", "route", "key_prefix",
                 "per_key_tag", "plain_prefix", "hashed", "names")

    def __init__(self, name: str, sources: tuple[Source, ...], algorithm: str, rate: Rate, burst: int,
                 fallback_rate: Rate, route: str) -> None:
        self.name = name
        self.sources = sources
        self.algorithm = algorithm
        self.rate = rate
        self.burst = burst
        self.fallback_rate = fallback_rate
        self.route = route
        """The first route that defined it, for error messages."""
        self.key_prefix = b""
        self.per_key_tag = True
        self.plain_prefix = b""
        """What precedes the key values in a plain key (local store)."""
        self.hashed = True
        """Keys name Redis keys: the values are digested. False: plain keys (local store)."""
        self.names: dict[bytes, bytes] = {}
        """Recent single values and their Redis key names (see name_of)."""

    def same_budget(self, other: Scope) -> bool:
        return (self.sources, self.algorithm, self.rate, self.burst, self.fallback_rate) == (
            other.sources, other.algorithm, other.rate, other.burst, other.fallback_rate)

    def name_of(self, value: bytes) -> bytes:
        """``key([value])`` for hashed keys, remembered: the same clients come back, and a digest
        costs more than the rest of a Redis check's Python work. Holds at most NAMES_KEPT values."""
        name = self.names.get(value)
        if name is None:
            if len(self.names) >= NAMES_KEPT:
                self.names.clear()
            name = self.names[value] = self.key([value])
        return name

    def key(self, values: list[bytes]) -> bytes:
        """The key of the counter for these key values: the Redis key name, or a plain key."""
        if not self.hashed:
            return self.plain_prefix + joined(values)
        d = digest(values)
        return self.key_prefix + (b"{" + d + b"}" if self.per_key_tag else d)


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """One compiled limit of one route."""

    scope: Scope
    params: LimitParams
    """At the configured rate."""
    fallback: LimitParams
    """At fallback_rate, for the local store while Redis is unavailable."""

    def fallback_share(self, instances: int) -> LimitParams:
        """The fallback of one of ``instances`` gateways: fallback_rate (and burst) divided among them."""
        if instances == 1:
            return self.fallback
        scope = self.scope
        return _params(scope.fallback_rate.share(instances), scope.burst // instances)


class ScopeRegistry:
    """All scopes of one config, and which scopes are checked together (for key placement)."""

    def __init__(self, key_prefix: str, hashed_keys: bool = True) -> None:
        self._key_prefix = key_prefix
        self._hashed_keys = hashed_keys
        """Redis key names (True) or plain keys for the local store (False)."""
        self.scopes: dict[str, Scope] = {}
        self._checked_together: list[list[str]] = []

    def compile(self, route_name: str, limits: list[Limit]) -> list[LimitSpec]:
        """Compile one route's limits; FieldError paths are relative to the route ("limits[1].rate")."""
        if len(limits) > MAX_LIMITS_PER_ROUTE:
            raise FieldError("limits", f"at most {MAX_LIMITS_PER_ROUTE} limits per route")
        specs: list[LimitSpec] = []
        new_scopes: dict[str, Scope] = {}
        for j, limit in enumerate(limits):
            scope = self._scope_of(route_name, limit, len(limits), f"limits[{j}]")
            if scope.name in new_scopes:
                raise FieldError(f"limits[{j}].scope",
                                 f"another limit of this route already uses scope {scope.name!r}; give each its own")
            known = self.scopes.get(scope.name)
            if known is not None and not known.same_budget(scope):
                raise FieldError(f"limits[{j}].scope",
                                 f"scope {scope.name!r} is defined differently by route {known.route!r} "
                                 "(key, rate, burst, algorithm and fallback_rate must match)")
            scope = new_scopes[scope.name] = known or scope
            specs.append(LimitSpec(scope, _params(scope.rate, scope.burst), _params(scope.fallback_rate, scope.burst)))
        for name, scope in new_scopes.items():
            self.scopes.setdefault(name, scope)
        if new_scopes:
            self._checked_together.append(list(new_scopes))
        self._place()
        return specs

    def _scope_of(self, route_name: str, limit: Limit, route_limits: int, where: str) -> Scope:
        if not 1 <= len(limit.key) <= MAX_SOURCES_PER_KEY:
            raise FieldError(f"{where}.key", f"give between 1 and {MAX_SOURCES_PER_KEY} key sources")
        if len(set(limit.key)) != len(limit.key):
            raise FieldError(f"{where}.key", "a key source is listed twice")
        try:
            sources = tuple(parse_source(text) for text in limit.key)
        except ValueError as exc:
            raise FieldError(f"{where}.key", str(exc)) from None
        rate = _rate(limit.rate, f"{where}.rate")
        fallback = _rate(limit.fallback_rate, f"{where}.fallback_rate") if limit.fallback_rate else rate
        if not 0 <= limit.burst <= 10**9:
            raise FieldError(f"{where}.burst", "must be between 0 and 1000000000")
        if limit.burst and limit.algorithm != "gcra":
            raise FieldError(f"{where}.burst", "burst applies only to the gcra algorithm")
        for r in (rate, fallback):
            params = _params(r, limit.burst)
            if params.capacity * params.interval_us >= 1 << 52:  # beyond exact integers in Lua's doubles
                raise FieldError(f"{where}.burst", "too large for this rate")
        name = limit.scope or (route_name if route_limits == 1 else f"{route_name}.{'+'.join(limit.key)}")
        if (not name or len(name) > 200 or not name.isascii() or not name.isprintable() or " " in name
                or _FORBIDDEN_IN_SCOPE & set(name)):
            field = f"{where}.scope" if limit.scope else where
            raise FieldError(field, f"scope {name!r} must be 1-200 printable ASCII characters without spaces, "
                                    'braces, quotes or backslashes (set scope explicitly)')
        return Scope(name, sources, limit.algorithm, rate, limit.burst, fallback, route_name)

    def _place(self) -> None:
        """Assign every scope its key prefix: per-key hash tags, or one tag per mixed-source group."""
        parent = {name: name for name in self.scopes}

        def root(name: str) -> str:
            while parent[name] != name:
                parent[name] = parent[parent[name]]
                name = parent[name]
            return name

        for names in self._checked_together:
            for other in names[1:]:
                parent[root(other)] = root(names[0])
        groups: dict[str, list[Scope]] = {}
        for name, scope in self.scopes.items():
            groups.setdefault(root(name), []).append(scope)
        for members in groups.values():
            same_sources = len({scope.sources for scope in members}) == 1
            tag = "g" + blake2b("\n".join(sorted(s.name for s in members)).encode(), digest_size=4).hexdigest()
            for scope in members:
                base = f"{self._key_prefix}:{scope.name}:{_ALGORITHM_LETTER[scope.algorithm]}:"
                scope.per_key_tag = same_sources
                scope.key_prefix = (base if same_sources else f"{base}{{{tag}}}:").encode()
                scope.plain_prefix = scope.key_prefix + b"{" if same_sources else scope.key_prefix
                scope.hashed = self._hashed_keys
                scope.names.clear()


def _params(rate: Rate, burst: int) -> LimitParams:
    return LimitParams.of(rate.count, rate.period_s * 1_000_000, burst)


def _rate(text: str, where: str) -> Rate:
    try:
        return parse_rate(text)
    except ValueError as exc:
        raise FieldError(where, str(exc)) from None

