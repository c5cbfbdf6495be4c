"""Counters of one worker's rate limiter, as plain attributes (the metrics exporter reads them)."""

from bisect import bisect_left
from collections.abc import Callable

from fastgate.ratelimit.decision import Decision
from fastgate.ratelimit.shared_table import SharedTable

ROUND_TRIP_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
"""Upper bounds of the Redis round-trip histogram; the last bucket (past them) is +Inf."""


class RateLimitStats:
    def __init__(self, table: SharedTable) -> None:
        self._table = table
        self.checks = 0
        """Decisions delivered by the Python paths (every check, whatever decided it, except the admissions
        of the C check, SharedTable.gcra_admit)."""
        self.limited = 0
        """Answered 429."""
        self.unavailable = 0
        """Answered 503 (Redis unavailable, policy "deny")."""
        self.fallback_local = 0
        """Checks decided by the local store because Redis failed or the breaker was open."""
        self.fallback_allowed = 0
        """Checks admitted unchecked because Redis failed (policy "allow")."""
        self.redis_checks = 0
        """Checks sent to Redis."""
        self.redis_round_trips = 0
        """Script calls (pipelines count once) sent to Redis; redis_checks / redis_round_trips is the batching factor."""
        self.redis_round_trip_seconds = 0.0
        """Time spent waiting for answered round trips."""
        self.redis_round_trip_buckets = [0] * (len(ROUND_TRIP_BUCKETS_S) + 1)
        """Answered round trips by duration (ROUND_TRIP_BUCKETS_S, then +Inf); not cumulated."""
        self.redis_failures = 0
        """Round trips that failed (error or deadline)."""
        self.redis_timeouts = 0
        """Checks whose deadline passed before Redis answered."""
        self.script_loads = 0
        """Times the script was (re)loaded after NOSCRIPT or by a breaker probe."""
        self.breaker_state_of: Callable[[], str] = lambda: "closed"
        """Reads the gateway's shared breaker state (set by the Redis store's breaker)."""
        self.breaker_transitions = 0
        """Breaker state changes this worker made."""

    def count(self, decision: Decision) -> None:
        self.checks += 1
        if not decision.allowed:
            self.count_denied(decision)

    def count_denied(self, decision: Decision) -> None:
        """For a denied decision already counted in ``checks`` (the local store's hot path)."""
        if decision.status == 429:
            self.limited += 1
        else:
            self.unavailable += 1

    def count_round_trip(self, seconds: float) -> None:
        """One answered round trip to Redis, which took ``seconds``."""
        self.redis_round_trip_seconds += seconds
        self.redis_round_trip_buckets[bisect_left(ROUND_TRIP_BUCKETS_S, seconds)] += 1

    @property
    def breaker_state(self) -> str:
        """"closed" (Redis in use), "open" (failure policy applies) or "half_open" (a probe is running),
        as every worker of the gateway sees it."""
        return self.breaker_state_of()

    @property
    def fallbacks(self) -> int:
        """Checks decided by the failure policy (local store, allow or deny) while Redis was unusable."""
        return self.fallback_local + self.fallback_allowed + self.unavailable

    @property
    def allowed(self) -> int:
        """Checks admitted."""
        return self.checks + self._table.fast_admitted() - self.limited - self.unavailable

    @property
    def local_evictions(self) -> int:
        """Live keys dropped from the full local table by this worker."""
        return self._table.evictions

    @property
    def local_lock_takeovers(self) -> int:
        """Times this worker inherited the local table lock from a process that died holding it."""
        return self._table.lock_takeovers

    @property
    def local_lock_timeouts(self) -> int:
        """Checks this worker admitted because a live process held the local table lock too long."""
        return self._table.lock_timeouts
