"""Checks against the shared-memory table: exact across the worker processes of this machine.

This is the request path of the local store (and of the Redis store's local
fallback): every Python operation here is paid once per request. So a
check of one limit is one table call, the algorithms only decide
(``admit``) unless headers are to be sent, and an admitted check without
headers returns the one pre-built Decision.
"""

import time
from typing import TYPE_CHECKING

from fastgate.ratelimit.decision import ALLOWED_WITHOUT_HEADERS, Decision, OnDecision
from fastgate.ratelimit.headers import HeaderWriter
from fastgate.ratelimit.limitset import LimitSet
from fastgate.ratelimit.shared_table import SharedTable
from fastgate.ratelimit.stats import RateLimitStats

if TYPE_CHECKING:
    from fastgate.ratelimit.limiter import RouteLimits

_monotonic_ns = time.monotonic_ns


class LocalStore:
    def __init__(self, table: SharedTable, writer: HeaderWriter, stats: RateLimitStats) -> None:
        self._table = table
        self._writer = writer
        self._stats = stats

    def check(self, route: "RouteLimits", keys: list[bytes], on_decision: OnDecision) -> None:
        """``check_now``, handing the decision to ``on_decision`` before returning."""
        on_decision(self.check_now(route, keys))

    def check_now(self, route: "RouteLimits", keys: list[bytes]) -> Decision:
        """Decide at the route's rates and count in the stats."""
        decision = self.decide(route.limits, keys)
        stats = self._stats
        stats.checks += 1
        if not decision.allowed:
            stats.count_denied(decision)
        return decision

    def decide(self, limits: LimitSet, keys: list[bytes]) -> Decision:
        """Check and, if every applied limit admits it, count one request; all under the table lock.

        ``keys[i]`` is limit i's key, or b"" when limit i does not apply. If the
        lock cannot be had (a live process keeps it, see shared_table.py) the
        request is admitted without headers.
        """
        table = self._table
        if not table.acquire():
            return ALLOWED_WITHOUT_HEADERS
        try:
            now = _monotonic_ns() // 1000
            if len(keys) == 1:  # one limit (it applies, or there would be no check)
                state, allowed = table.apply(keys[0], now, limits.algorithms[0], limits.params[0])
                applied = [(0, state)]
            else:
                applied, allowed = self._check_all(table, limits, keys, now)
        finally:
            table.release()
        if allowed and not self._writer.on_allowed:
            return ALLOWED_WITHOUT_HEADERS
        algorithms, params = limits.algorithms, limits.params
        shown = [(i, *algorithms[i].show(params[i], state, now, allowed)) for i, state in applied]
        return self._writer.decide(limits.headers, shown, allowed)

    @staticmethod
    def _check_all(table: SharedTable, limits: LimitSet, keys: list[bytes], now: int) -> tuple[list, bool]:
        """Several limits: count the request in all of them only if each applied one admits it.
        Returns (limit index, state before) of the applied limits, and whether all admitted."""
        applied = []
        admitted = []
        for i, key in enumerate(keys):
            if key:
                algorithm = limits.algorithms[i]
                record = table.record(key, now)
                state = table.state(record, algorithm.size, now)
                applied.append((i, state))
                admitted.append((record, algorithm.admit(limits.params[i], state, now)))
        allowed = all(new is not None for _, new in admitted)
        if allowed:
            for record, new in admitted:
                table.write(record, new)
        return applied, allowed
