"""The rate-limit part of the config: per-route ``limits`` and the top-level ``[ratelimit]`` table.

The lead's schema adds ``limits: list[Limit] = []`` to a route and
``ratelimit: RateLimitSettings`` to the config; ``validate`` checks what
msgspec cannot (rate strings, key sources, scopes shared between routes,
Redis settings) and raises ``FieldError`` with a path such as
``routes[2].limits[0].rate`` or ``ratelimit.redis``.
"""

from collections.abc import Sequence
from typing import Literal

import msgspec

from fastgate.config.errors import FieldError
from fastgate.config.units import Duration, Size
from fastgate.ratelimit.scopes import ScopeRegistry
from fastgate.runtime.redis_server import RedisServer


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every table: a key that is not in the schema is an error."""


class Limit(_Section):
    """One ``[[routes.limits]]`` entry: a budget of requests per key and period.

    All limits of a route are checked together and atomically: a request is
    admitted only if every limit that applies to it admits it, and only then
    is it counted against each of them. A denied request consumes nothing.
    """

    key: list[str]
    """What identifies a client, combined when several are given: "ip", "header:X-API-Key",
    "query:phone", "body.phone" (a field of a JSON or form body; "body.user.phone" for nested JSON).
    A request that lacks one of them is not subject to this limit (the route's other limits still apply)."""
    rate: str
    """Requests per period: "5/10m", "100/s", "1000/1h", "20/d". Units: s, m, h, d."""
    burst: int = 0
    """GCRA only: requests admitted at once on top of the rate's count (bucket size = count + burst)."""
    algorithm: Literal["gcra", "sliding_window", "fixed_window"] = "gcra"
    """"gcra" (a token bucket without a timer: smooth, the default), "sliding_window"
    (weighted counter of this and the previous window) or "fixed_window" (counter per clock-aligned window)."""
    scope: str = ""
    """Name of the budget. Limits of several routes with the same scope (and the same key, rate and
    algorithm) share one budget. Default: the route name, or "route.key" when the route has several limits.
    Also the policy name in the RateLimit headers."""
    fallback_rate: str = ""
    """Rate enforced by the gateways' local stores while Redis is unavailable (policy "local"),
    divided among them by [ratelimit] instances; default: the same as rate."""


class RedisSettings(_Section):
    """``[ratelimit.redis]``: where the shared counters live. Give exactly one of url,
    cluster_nodes and sentinel_nodes."""

    url: str = ""
    """A single server: "redis://[user:password@]host:port/db", "rediss://..." for TLS, or
    "unix:///path/redis.sock?db=0". User and password in the url take precedence over username/password."""
    cluster_nodes: list[str] = []
    """Redis Cluster: some of its nodes as "host:port"; the rest is discovered."""
    sentinel_nodes: list[str] = []
    """Redis Sentinel: the sentinels as "host:port"; the primary is found through them."""
    sentinel_service: str = ""
    """Sentinel: the name of the monitored primary (e.g. "mymaster")."""
    sentinel_password: str = ""
    """Sentinel: password of the sentinels themselves, if they need one."""
    username: str = ""
    """ACL user name (Redis 6+); empty: the default user."""
    password: str = ""
    """Password of that user."""
    tls: bool = False
    """Connect with TLS (implied by a rediss:// url)."""
    tls_ca_file: str = ""
    """CA bundle that signed the server certificate; empty: the system's."""
    tls_cert_file: str = ""
    """Client certificate for mutual TLS."""
    tls_key_file: str = ""
    """Private key of the client certificate."""
    tls_verify: bool = True
    """Verify the server certificate and host name."""
    timeout: Duration = Duration(0.05)
    """Longest time a check waits for Redis, counted from when it was submitted (queueing,
    connecting and the round trip). Past it, the failure policy decides that check."""
    key_prefix: str = "fg:rl"
    """Prefix of every key fastgate writes; deployments sharing one Redis need different prefixes."""
    max_batch: int = 256
    """Most checks sent in one script call; more waiting checks go as further calls in the same pipeline."""
    max_in_flight: int = 2
    """Batches a worker has in flight at once; checks arriving meanwhile wait and form the next batch."""

    def server(self) -> RedisServer:
        """Where and how to reach this Redis, as the clients in runtime/ read it."""
        return RedisServer(
            self.url, cluster_nodes=self.cluster_nodes, sentinel_nodes=self.sentinel_nodes,
            sentinel_service=self.sentinel_service, sentinel_password=self.sentinel_password,
            username=self.username, password=self.password, tls=self.tls, tls_ca_file=self.tls_ca_file,
            tls_cert_file=self.tls_cert_file, tls_key_file=self.tls_key_file, tls_verify=self.tls_verify,
            timeout_s=float(self.timeout))


class BreakerSettings(_Section):
    """``[ratelimit.breaker]``: when to stop asking a failing Redis, and when to try again."""

    failures: int = 3
    """Consecutive failed round trips (error or timeout) that open the breaker."""
    open_time: Duration = Duration(1.0)
    """How long it stays open before a probe; doubled after each failed probe."""
    max_open_time: Duration = Duration(30.0)
    """Upper bound of that doubling."""


class HotKeySettings(_Section):
    """``[ratelimit.hot_keys]``: when a key counts as hot (Redis store), in /metrics and the log."""

    share: float = 0.2
    """A key is hot when it takes more than this share (0-1) of the calls this gateway's worker
    sent to the key's Redis node in one window."""
    window: Duration = Duration(10.0)
    """How long calls are counted before keys are compared (and /metrics is updated)."""
    min_calls: int = 100
    """Calls a key needs in one window before it can count as hot (a quiet node is no concern)."""


class RateLimitSettings(_Section):
    """The ``[ratelimit]`` table: where counters live and how answers look."""

    store: Literal["local", "redis"] = "local"
    """"local": counters in this machine's shared memory, exact across its worker processes.
    "redis": counters in Redis, exact across all machines."""
    redis: RedisSettings | None = None
    """Required when store = "redis"."""
    on_redis_failure: Literal["local", "allow", "deny"] = "local"
    """While Redis fails: "local" checks against the local store with each limit's fallback_rate,
    "allow" admits every request, "deny" answers 503."""
    breaker: BreakerSettings = msgspec.field(default_factory=BreakerSettings)
    """Circuit breaker in front of Redis."""
    instances: int | Literal["auto"] = 1
    """Gateway machines sharing the Redis budgets. While Redis is unavailable each limit's
    fallback_rate is divided among them, so that together they admit about fallback_rate:
    1 (default) lets each machine admit the whole fallback_rate; "auto" learns the number
    from the gateways registered in Redis (see registration_ttl) while it was up."""
    registration_ttl: Duration = Duration(15.0)
    """instances = "auto": a gateway counts while its last heartbeat in Redis is younger than
    this; heartbeats go every third of it."""
    hot_keys: HotKeySettings = msgspec.field(default_factory=HotKeySettings)
    """Reporting of the keys that take much of a Redis node's calls."""
    headers: Literal["draft", "legacy", "none"] = "draft"
    """"draft": RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers);
    "legacy": RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset; "none". Retry-After is
    always sent with 429 and 503."""
    headers_on_allowed: bool = True
    """Send the rate-limit headers on admitted responses too, not only on 429."""
    local_capacity: int = 65536
    """Keys the local store holds (32 bytes each, shared by all workers); when full,
    the key expiring soonest is dropped."""
    ipv6_prefix_bits: int = 64
    """An "ip" key counts an IPv6 client by its network of this many bits (a client rotating
    addresses inside its /64 shares one budget); 128: each address apart. IPv4 clients count
    by their address."""
    body_read_limit: Size = Size(64 * 1024)
    """Most body bytes read to find a body.* key; a body that does not parse within it shares
    one budget per limit with every other such body."""

    @property
    def key_prefix(self) -> str:
        """The prefix of counter keys (also used in the local table)."""
        return (self.redis or RedisSettings()).key_prefix


def validate(settings: RateLimitSettings, routes: Sequence[tuple[str, Sequence[Limit]]]) -> None:
    """Check the settings and every route's limits; raise ``FieldError`` at the first problem.

    ``routes`` holds (route name, route.limits) in config order, so ``routes[i]``
    in an error path is the i-th route. Scopes shared by several routes must
    agree on key, rate, burst, algorithm and fallback_rate.
    """
    _validate_settings(settings)
    registry = ScopeRegistry(settings.key_prefix)
    for i, (route_name, limits) in enumerate(routes):
        try:
            registry.compile(route_name, limits)
        except FieldError as exc:
            raise FieldError(f"routes[{i}].{exc.field}", exc.reason) from None


def _validate_settings(settings: RateLimitSettings) -> None:
    if not 64 <= settings.local_capacity <= 1 << 24:
        raise FieldError("ratelimit.local_capacity", "must be between 64 and 16777216")
    if not 16 <= settings.ipv6_prefix_bits <= 128:
        raise FieldError("ratelimit.ipv6_prefix_bits", "must be between 16 and 128")
    if settings.instances != "auto" and not 1 <= settings.instances <= 10000:
        raise FieldError("ratelimit.instances", 'must be "auto" or between 1 and 10000')
    if settings.instances == "auto" and settings.store != "redis":
        raise FieldError("ratelimit.instances", '"auto" learns the count through Redis: it needs store = "redis"')
    hot = settings.hot_keys
    if not 0 < hot.share <= 1:
        raise FieldError("ratelimit.hot_keys.share", "must be greater than 0 and at most 1")
    if not 1 <= hot.window <= 3600:
        raise FieldError("ratelimit.hot_keys.window", "must be between 1s and 1h")
    if hot.min_calls < 1:
        raise FieldError("ratelimit.hot_keys.min_calls", "must be at least 1")
    if not 1 <= settings.registration_ttl <= 3600:
        raise FieldError("ratelimit.registration_ttl", "must be between 1s and 1h")
    if not 0 < settings.body_read_limit <= 16 * 1024 * 1024:
        raise FieldError("ratelimit.body_read_limit", "must be between 1 byte and 16MiB")
    breaker = settings.breaker
    if breaker.failures < 1:
        raise FieldError("ratelimit.breaker.failures", "must be at least 1")
    if breaker.open_time <= 0:
        raise FieldError("ratelimit.breaker.open_time", "must be greater than zero")
    if breaker.max_open_time < breaker.open_time:
        raise FieldError("ratelimit.breaker.max_open_time", "cannot be shorter than open_time")
    redis = settings.redis
    if redis is None:
        if settings.store == "redis":
            raise FieldError("ratelimit.redis", 'store = "redis" needs a [ratelimit.redis] table')
        return
    given = [name for name in ("url", "cluster_nodes", "sentinel_nodes") if getattr(redis, name)]
    if len(given) != 1:
        raise FieldError("ratelimit.redis", "give exactly one of url, cluster_nodes, sentinel_nodes")
    if redis.url and not redis.url.startswith(("redis://", "rediss://", "unix://")):
        raise FieldError("ratelimit.redis.url", "must start with redis://, rediss:// or unix://")
    for name in ("cluster_nodes", "sentinel_nodes"):
        for j, node in enumerate(getattr(redis, name)):
            host, _, port = node.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise FieldError(f"ratelimit.redis.{name}[{j}]", f"{node!r} is not host:port")
    if redis.sentinel_nodes and not redis.sentinel_service:
        raise FieldError("ratelimit.redis.sentinel_service", "needed with sentinel_nodes")
    if not 0 < redis.timeout <= 10:
        raise FieldError("ratelimit.redis.timeout", "must be greater than zero and at most 10s")
    if not redis.key_prefix or any(c in redis.key_prefix for c in "{} "):
        raise FieldError("ratelimit.redis.key_prefix", "must be non-empty, without braces or spaces")
    if redis.max_batch < 1 or redis.max_in_flight < 1:
        raise FieldError("ratelimit.redis", "max_batch and max_in_flight must be at least 1")
