"""The circuit breaker in front of Redis: stop paying the deadline while Redis is down.

Theory of operation
-------------------
One breaker per gateway: its state lives in a few words of shared memory
(``SharedBreakerState``), created by the master before it forks, so every
worker reads the same state and each worker's failures count towards the
same total. States and transitions::

    closed --(``failures`` consecutive failed round trips, any worker)--> open
    open --(after the open time)--> half_open: one worker probes (loads the script)
    half_open --(probe answered)--> closed   (open time back to its start value)
    half_open --(probe failed)--> open       (open time doubled, up to max_open_time)

Only ``closed`` sends checks to Redis; in ``open`` and ``half_open`` every
check is decided at once by the failure policy, so requests never wait for
a Redis that is known to be down. A worker reads the state on every check
(one shared word), so when one worker opens the breaker the others stop
sending at their next check: the gateway pays the deadline about
``failures`` times, not ``failures`` times per worker. The probe runs in
one worker: the first whose timer (set when it saw the breaker open) fires
after the open period claims it under the lock; the others keep deciding by
the policy until the prober writes the outcome. A prober that died, or
hangs past ``PROBE_STALE_S``, is replaced by the next worker that looks.

Results of round trips that were already in flight when the breaker opened
do not move it. When a worker first sees the breaker open it drops its
client's connections, so the probe and later checks do not queue behind
requests stuck on a frozen connection; when it first sees it closed again it
has its client learn the topology anew (a Redis Cluster may have failed over
meanwhile: the probe that closed it ran in another worker). Transitions are logged once, by the
worker that makes them, on the "fastgate" logger, and counted in its stats.

Transitions take a cross-process lock, held for microseconds; a worker that
cannot get it within ``LOCK_WAIT_S`` (its holder was killed inside) skips
counting that failure, or claiming the probe until its next look; the
prober writes its outcome even without the lock (no other worker writes
while a probe runs).
"""

import asyncio
import logging
import mmap
import multiprocessing
import os
import time
from collections.abc import Awaitable, Callable

from fastgate.ratelimit.config import BreakerSettings
from fastgate.ratelimit.shared_table import process_alive
from fastgate.ratelimit.stats import RateLimitStats

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
_STATE_NAMES = (CLOSED, OPEN, HALF_OPEN)
_CLOSED, _OPEN, _HALF_OPEN = range(3)

# words of the shared state
_STATE, _FAILURES, _OPEN_US, _OPENED_AT_US, _REOPEN_AT_US, _PROBER, _PROBE_STARTED_US = range(7)
_WORDS = 8

PROBE_DEADLINE_MIN_S = 1.0
"""A probe may take this long even when the check deadline is shorter: no request waits for it, and
in a cluster it also learns the layout and loads the script on every primary."""
LOCK_WAIT_S = 0.05
"""Longest wait for the transition lock (a healthy holder keeps it for microseconds)."""
PROBE_STALE_S = 5.0
"""A probe still running after this long (its worker stopped or starved) is taken over by another worker."""

log = logging.getLogger("fastgate")


def _now_us() -> int:
    """CLOCK_MONOTONIC in microseconds: one clock for every process of the machine."""
    return time.monotonic_ns() // 1000


class SharedBreakerState:
    """The breaker's state in shared memory; create in the master before forking."""

    def __init__(self, settings: BreakerSettings) -> None:
        self._mem = mmap.mmap(-1, 8 * _WORDS)
        self.words = memoryview(self._mem).cast("q")
        """The state's int64 words (see the indices above)."""
        self.lock = multiprocessing.Lock()
        self.words[_OPEN_US] = int(float(settings.open_time) * 1_000_000)

    @property
    def state(self) -> str:
        return _STATE_NAMES[self.words[_STATE]]


class CircuitBreaker:
    """One worker's handle on the gateway's breaker."""

    def __init__(self, settings: BreakerSettings, shared: SharedBreakerState, loop: asyncio.AbstractEventLoop,
                 probe: Callable[[], Awaitable[None]], on_open: Callable[[], None], on_close: Callable[[], None],
                 stats: RateLimitStats) -> None:
        self._settings = settings
        self._base_open_us = int(float(settings.open_time) * 1_000_000)
        self._max_open_us = int(float(settings.max_open_time) * 1_000_000)
        self._shared = shared
        self._words = shared.words
        self._lock = shared.lock
        self._loop = loop
        self._probe = probe
        """Raises if Redis does not work; bounded by its own deadline."""
        self._on_open = on_open
        """Called when this worker first sees the breaker open."""
        self._on_close = on_close
        """Called when this worker first sees it closed again (another worker's probe may have closed it)."""
        self._stats = stats
        stats.breaker_state_of = lambda: shared.state
        self._seen_open = False
        """This worker has seen the breaker open (and dropped its connections) since it last saw it closed."""
        self._timer: asyncio.TimerHandle | None = None
        self._probe_task: asyncio.Task | None = None

    @property
    def state(self) -> str:
        return self._shared.state

    @property
    def open_s(self) -> float:
        """The current open period: open_time, doubled after each failed probe up to max_open_time."""
        return self._words[_OPEN_US] / 1_000_000

    def closed(self) -> bool:
        """Whether checks go to Redis now (the request path asks this before every check)."""
        if self._words[_STATE] == _CLOSED:
            if self._seen_open:
                self._saw_closed()
            return True
        if not self._seen_open:
            self._seen_open = True
            self._on_open()
            self._wait_for_probe_time()
        return False

    def record_success(self) -> None:
        words = self._words
        if words[_FAILURES] and words[_STATE] == _CLOSED and self._lock.acquire(True, LOCK_WAIT_S):
            try:
                if words[_STATE] == _CLOSED:
                    words[_FAILURES] = 0
            finally:
                self._lock.release()

    def record_failure(self, reason: str) -> None:
        words = self._words
        if words[_STATE] != _CLOSED or not self._lock.acquire(True, LOCK_WAIT_S):
            return
        try:
            if words[_STATE] != _CLOSED:
                return
            words[_FAILURES] += 1
            failures = words[_FAILURES]
            if failures < self._settings.failures:
                return
            now = _now_us()
            words[_OPENED_AT_US] = now
            self._open(now)
        finally:
            self._lock.release()
        log.warning("rate limit: Redis failed %d times in a row (last: %s); circuit breaker open for %.1fs",
                    failures, reason, self.open_s)
        self.closed()  # this worker sees it open: drop the connections, wait for the probe time

    def retry_after_s(self) -> float:
        """Seconds until the next probe (at least the whole open time while closed)."""
        if self._words[_STATE] == _CLOSED:
            return self.open_s
        return max(0.0, (self._words[_REOPEN_AT_US] - _now_us()) / 1_000_000)

    def close(self) -> None:
        """Stop timers and the probe (worker shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
        if self._probe_task is not None:
            self._probe_task.cancel()

    def _move(self, state: int) -> None:
        """Set the shared state (hold the lock)."""
        self._words[_STATE] = state
        self._stats.breaker_transitions += 1

    def _open(self, now: int) -> None:
        """Open for the current open period (hold the lock)."""
        self._words[_REOPEN_AT_US] = now + self._words[_OPEN_US]
        self._words[_PROBER] = 0
        self._move(_OPEN)

    def _saw_closed(self) -> None:
        self._seen_open = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._on_close()

    def _wait_for_probe_time(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, (self._words[_REOPEN_AT_US] - _now_us()) / 1_000_000)
        self._timer = self._loop.call_later(delay, self._try_probe)

    def _try_probe(self) -> None:
        """At the end of the open period: probe, unless another worker is at it (or it closed)."""
        self._timer = None
        words = self._words
        if words[_STATE] == _CLOSED:
            self._saw_closed()
            return
        if not self._lock.acquire(True, LOCK_WAIT_S):
            self._wait_for_probe_time()
            return
        try:
            now = _now_us()
            state = words[_STATE]
            claim = (state == _OPEN and now >= words[_REOPEN_AT_US]) or (
                state == _HALF_OPEN and (now - words[_PROBE_STARTED_US] > PROBE_STALE_S * 1_000_000
                                         or not process_alive(words[_PROBER])))
            if claim:
                words[_PROBER] = os.getpid()
                words[_PROBE_STARTED_US] = now
                self._move(_HALF_OPEN)
        finally:
            self._lock.release()
        if claim:
            self._probe_task = self._loop.create_task(self._run_probe())
        elif state != _CLOSED:  # another worker probes, or the open period moved on: look again then
            self._timer = self._loop.call_later(
                max(0.01, (words[_REOPEN_AT_US] - _now_us()) / 1_000_000) if state == _OPEN else self.open_s,
                self._try_probe)

    async def _run_probe(self) -> None:
        words = self._words
        try:
            await self._probe()
        except Exception as exc:
            locked = self._lock.acquire(True, LOCK_WAIT_S)  # without it too: only this worker probes
            words[_OPEN_US] = min(words[_OPEN_US] * 2, self._max_open_us)
            self._open(_now_us())
            if locked:
                self._lock.release()
            log.info("rate limit: Redis probe failed (%s); circuit breaker open for %.1fs",
                     describe(exc), self.open_s)
            self._wait_for_probe_time()
        else:
            locked = self._lock.acquire(True, LOCK_WAIT_S)
            words[_FAILURES] = 0
            words[_OPEN_US] = self._base_open_us
            words[_PROBER] = 0
            self._move(_CLOSED)
            if locked:
                self._lock.release()
            self._seen_open = False  # the probe itself learned the topology
            log.warning("rate limit: Redis answers again; circuit breaker closed after %.1fs",
                        (_now_us() - words[_OPENED_AT_US]) / 1_000_000)
        finally:
            self._probe_task = None


def describe(exc: BaseException) -> str:
    """An exception as a short log text: its type, and its message when it has one."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
