"""A named group of upstream servers, compiled from config; pools and balancer are per worker."""

from fastgate.config.schema import Upstream, UpstreamServer
from fastgate.observe.errorlog import log
from fastgate.upstream.balancer import BALANCERS, Balancer, candidate_pools
from fastgate.upstream.breaker import ErrorRatioBreaker
from fastgate.upstream.connection_limit import ConnectionLimit
from fastgate.upstream.hash_key import compile_hash_key
from fastgate.upstream.retry import RetryBudget, RetryPolicy
from fastgate.upstream.timeouts import UpstreamTimeouts

_MAX_EJECTION_FACTOR = 10
"""An ejection lasts at most this many times ejection_time."""


class ServerSpec:
    """One server of a group as configured."""

    __slots__ = ("address", "host", "port", "weight", "backup", "drain", "health_slot")

    def __init__(self, server: str | UpstreamServer) -> None:
        if isinstance(server, str):
            server = UpstreamServer(address=server)
        self.address = server.address
        host, _, port = server.address.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.weight = server.weight
        self.backup = server.backup
        self.drain = server.drain
        self.health_slot = -1
        """Its slot in the health table (health/state.py), or -1 when the group has no active checks."""


class UpstreamGroup:
    """An ``[[upstreams]]`` entry at run time.

    Built once in the master and inherited by every worker; ``attach_pools``
    is called in the worker, after fork, so each worker has its own pools and
    balancer state.
    """

    __slots__ = ("name", "servers", "connect_timeout_s", "read_timeout_s", "total_timeout_s",
                 "max_idle", "idle_timeout_s", "max_requests_per_conn", "balance", "key_of", "pools", "balancer",
                 "retry", "retry_on_status", "budget", "timeouts", "eject_after", "ejection_time_s", "max_ejected",
                 "max_concurrent", "limit", "breaker", "tripped", "answered", "failed", "health", "tls", "protocol",
                 "max_streams", "max_ejected_share", "make_pool")

    def __init__(self, config: Upstream) -> None:
        self.name = config.name
        self.servers = tuple(ServerSpec(s) for s in config.servers)
        self.retry = RetryPolicy(self, config.connect_retries, config.retries, float(config.retry_backoff))
        self.retry_on_status = frozenset(config.retry_on_status)
        self.budget = RetryBudget(config.retry_budget)
        """Retries in flight from this worker (upstream/retry.py)."""
        self.timeouts = UpstreamTimeouts.of_upstream(config)
        """The timeouts of routes that set none of their own (upstream/timeouts.py)."""
        self.max_concurrent = config.max_concurrent_requests
        self.limit = ConnectionLimit(config.max_connections, config.max_pending_requests)
        """This worker's connections to the servers, and the requests waiting for one."""
        self.breaker = ErrorRatioBreaker(
            self, config.breaker_error_ratio, config.breaker_min_requests, float(config.breaker_window),
            float(config.breaker_open_time)) if config.breaker_error_ratio else None
        self.tripped = False
        """The breaker is open or half-open: a request may go only if ``breaker.admit()``."""
        self.answered = 0
        """Exchanges of this worker that got a response head that is not a failure (for the breaker)."""
        self.failed = 0
        """Exchanges of this worker that failed (see exchange_failed)."""
        self.eject_after = config.eject_after_failures
        self.ejection_time_s = float(config.ejection_time)
        self.max_ejected_share = config.max_ejected
        self.max_ejected = int(config.max_ejected * len(self.servers))
        """Servers that may be ejected at once (recounted when the servers change: upstream/membership.py)."""
        # the upstream's own timeouts, which the worker's clock tick is derived from (master/worker.py)
        self.connect_timeout_s = float(config.connect_timeout)
        self.read_timeout_s = float(config.read_timeout)
        self.total_timeout_s = float(config.total_timeout)
        self.max_idle = config.max_idle_connections
        self.idle_timeout_s = float(config.idle_timeout)
        self.max_requests_per_conn = config.max_requests_per_connection
        self.balance = config.balance
        self.key_of = compile_hash_key(config.hash_key) if config.balance == "consistent_hash" else None
        self.health = config.health
        """The active health check settings (read by the checker process), or None."""
        self.protocol = config.protocol
        """"h1" or "h2": which pool and client the worker makes for the servers (master/worker.py)."""
        self.max_streams = config.max_streams_per_connection
        """HTTP/2: requests in flight at once on one connection, at most."""
        self.tls = None
        """HTTPS to the servers: a tls/client.py UpstreamTls (its context made by config/load.py, in the
        master), or None for plain HTTP."""
        self.pools: tuple = ()
        self.balancer: Balancer | None = None
        self.make_pool = None
        """``make_pool(group, spec)``: a new pool of this worker (for servers that come at run time)."""

    def attach_pools(self, make_pool, clock) -> None:
        """Create this worker's pools (``make_pool(group, spec)``) and balancer."""
        self.make_pool = make_pool
        self.pools = tuple(make_pool(self, spec) for spec in self.servers)
        self.balancer = BALANCERS[self.balance](self.pools)
        if self.breaker is not None:
            clock.on_tick.append(lambda: self.breaker.tick(clock.now))

    def pick(self, head, client_ip: bytes):
        """The pool of the server for this request, or None when no server can take it."""
        balancer = self.balancer
        if balancer.needs_key:
            return balancer.pick(self.key_of(head, client_ip))
        return balancer.pick()

    # -- passive health: per worker, like the pools --------------------------------
    def record_failure(self, pool) -> None:
        """An exchange with ``pool``'s server failed; eject it after eject_after failures in a row."""
        pool.failures += 1
        if (not self.eject_after or pool.failures < self.eject_after or pool.ejected
                or sum(p.ejected for p in self.pools) >= self.max_ejected):
            return
        pool.ejected = True
        pool.ejections += 1
        pool.failures = 0
        clock = pool.clock
        pool.deadline = clock.now + self.ejection_time_s * min(pool.ejections, _MAX_EJECTION_FACTOR)
        clock.watched.add(pool)
        self.balancer.set_candidates(candidate_pools(self.pools))
        log.warning("upstream %s: server %s ejected for %.1fs after failing %d times in a row",
                    self.name, pool.label, pool.deadline - clock.now, self.eject_after)

    def exchange_failed(self, pool) -> None:
        """An exchange failed in a way the retry policy and the breaker count: no connection, a reset,
        a timeout, garbage, or a status in retry_on_status. Passive health counts it too."""
        self.failed += 1
        if self.tripped:
            self.breaker.failed_while_tripped(pool.clock.now)
        self.record_failure(pool)

    def record_server_error(self, pool, status: int) -> bool:
        """A 5xx response head (answers under 500 only bump ``answered``, inline): True when it is a
        failed exchange, a status in retry_on_status; any 5xx counts for passive health."""
        if status in self.retry_on_status:
            self.exchange_failed(pool)
            return True
        self.answered += 1
        self.record_failure(pool)
        return False

    def restore(self, pool) -> None:
        """An ejection ended: the server takes requests again (its next failures count anew)."""
        pool.ejected = False
        pool.deadline = 0.0
        pool.clock.watched.discard(pool)
        self.balancer.set_candidates(candidate_pools(self.pools))
        log.info("upstream %s: server %s back after ejection", self.name, pool.label)

    def overloaded(self) -> bool:
        """Whether max_concurrent_requests are in flight from this worker (False without a limit)."""
        return bool(self.max_concurrent) and self.in_flight() >= self.max_concurrent

    def in_flight(self) -> int:
        """Requests in flight to this group from this worker."""
        return sum(p.active for p in self.pools)

    def pick_other(self, head, client_ip: bytes, tried: list):
        """A server not tried yet for this request, for a retry; None when every one was."""
        for _ in range(len(self.pools)):
            pool = self.pick(head, client_ip)
            if pool is not None and pool not in tried:
                return pool
        return next((p for p in self.balancer.candidates if p not in tried), None)


def compile_upstreams(configs: list[Upstream]) -> dict[str, UpstreamGroup]:
    return {c.name: UpstreamGroup(c) for c in configs}
