"""The circuit breaker in front of Redis: stop paying the deadline while Redis is down.

Theory of operation
-------------------
States and transitions (one breaker per worker)::

    closed --(``failures`` consecutive failed round trips)--> open
    open --(after the open time)--> half_open: one probe (load the script)
    half_open --(probe answered)--> closed   (open time back to its start value)
    half_open --(probe failed)--> open       (open time doubled, up to max_open_time)

Only ``closed`` sends checks to Redis; in ``open`` and ``half_open`` every
check is decided at once by the failure policy, so requests never wait for
a Redis that is known to be down, and only the probe (one per worker per
open period) tests it. Results of round trips that were already in flight
when the breaker opened do not move it. Opening also drops the client's
connections, so the probe and later checks do not queue behind requests
stuck on a frozen connection. Every transition is logged on the "fastgate"
logger and counted in the stats.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastgate.ratelimit.config import BreakerSettings
from fastgate.ratelimit.stats import RateLimitStats

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

log = logging.getLogger("fastgate")


class CircuitBreaker:
    def __init__(self, settings: BreakerSettings, loop: asyncio.AbstractEventLoop,
                 probe: Callable[[], Awaitable[None]], on_open: Callable[[], None], stats: RateLimitStats) -> None:
        self._settings = settings
        self._loop = loop
        self._probe = probe
        """Raises if Redis does not work; bounded by its own deadline."""
        self._on_open = on_open
        self._stats = stats
        self.state = CLOSED
        self._failures = 0
        self.open_s = float(settings.open_time)
        """The current open period: open_time, doubled after each failed probe up to max_open_time."""
        self._opened_at = 0.0
        self._reopen_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._probe_task: asyncio.Task | None = None

    def record_success(self) -> None:
        if self.state == CLOSED:
            self._failures = 0

    def record_failure(self, reason: str) -> None:
        if self.state != CLOSED:
            return
        self._failures += 1
        if self._failures >= self._settings.failures:
            self._opened_at = self._loop.time()
            log.warning("rate limit: Redis failed %d times in a row (last: %s); circuit breaker open for %.1fs",
                        self._failures, reason, self.open_s)
            self._open()
            self._on_open()

    def retry_after_s(self) -> float:
        """Seconds until the next probe (at least the whole open time while closed)."""
        if self.state == CLOSED:
            return self.open_s
        return max(0.0, self._reopen_at - self._loop.time())

    def close(self) -> None:
        """Stop timers and the probe (worker shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
        if self._probe_task is not None:
            self._probe_task.cancel()

    def _move(self, state: str) -> None:
        self.state = state
        self._stats.breaker_state = state
        self._stats.breaker_transitions += 1

    def _open(self) -> None:
        self._move(OPEN)
        self._reopen_at = self._loop.time() + self.open_s
        self._timer = self._loop.call_at(self._reopen_at, self._half_open)

    def _half_open(self) -> None:
        self._timer = None
        self._move(HALF_OPEN)
        self._probe_task = self._loop.create_task(self._run_probe())

    async def _run_probe(self) -> None:
        try:
            await self._probe()
        except Exception as exc:
            self.open_s = min(self.open_s * 2, float(self._settings.max_open_time))
            log.info("rate limit: Redis probe failed (%s); circuit breaker open for %.1fs",
                     describe(exc), self.open_s)
            self._open()
        else:
            log.warning("rate limit: Redis answers again; circuit breaker closed after %.1fs",
                        self._loop.time() - self._opened_at)
            self._failures = 0
            self.open_s = float(self._settings.open_time)
            self._move(CLOSED)
        finally:
            self._probe_task = None


def describe(exc: BaseException) -> str:
    """An exception as a short log text: its type, and its message when it has one."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
