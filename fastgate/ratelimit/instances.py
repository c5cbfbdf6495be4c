"""How many gateways share the Redis budgets: what each limit's fallback_rate is divided by.

Theory of operation
-------------------
While Redis is unavailable every gateway decides alone, with its local
store. If each admitted the whole ``fallback_rate``, N gateways would admit
N times it; so each admits its share, ``fallback_rate`` divided by the
number of gateways (rates.Rate.share).

``[ratelimit] instances`` gives that number, or "auto": learn it from Redis
while Redis is up. Then every gateway registers in one sorted set,
``<key_prefix>:instances``, member = its instance id, score = Redis's clock
(ms) of its last heartbeat; a heartbeat also drops members older than
``registration_ttl`` and returns how many are left. One worker of the
gateway sends it every third of ``registration_ttl`` (workers claim the
heartbeat through a word of shared memory, so the count of heartbeats does
not grow with the workers), and writes the count into shared memory, where
every worker's fallback reads it. During an outage the last count learned
stays in force; before the first heartbeat answered it is 1.

The instance id (host name, master pid, random) is made in the master and
kept across reloads, so a reloaded gateway does not count twice.
"""

import asyncio
import logging
import mmap
import multiprocessing
import os
import socket
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("fastgate")

HEARTBEAT = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
return redis.call('ZCARD', KEYS[1])
"""
"""KEYS[1]: the registration set; ARGV: instance id, registration_ttl in ms. Returns the gateways left."""

_COUNT, _NEXT_HEARTBEAT_US = range(2)

Eval = Callable[[str, list[bytes], list[bytes]], Awaitable[object]]
"""Runs a script (EVAL) in Redis with keys and arguments; returns its reply."""


class SharedInstances:
    """The number of gateways, in shared memory; create in the master before forking."""

    def __init__(self, configured: int | str, key_prefix: str, previous: "SharedInstances | None" = None) -> None:
        self.learned = configured == "auto"
        """Learned through Redis (else fixed by the config)."""
        self.instance_id = previous.instance_id if previous is not None else (
            f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}".encode())
        self.key = f"{key_prefix}:instances".encode()
        self._mem = mmap.mmap(-1, 16)
        self.words = memoryview(self._mem).cast("q")
        kept = previous.count if previous is not None and previous.learned else 1
        self.words[_COUNT] = kept if self.learned else int(configured)
        self.lock = multiprocessing.Lock()

    @property
    def count(self) -> int:
        """Gateways sharing the budgets (at least 1)."""
        return self.words[_COUNT]

    def claim_heartbeat(self, period_s: float) -> bool:
        """True for the one worker that is to send this period's heartbeat."""
        now = time.monotonic_ns() // 1000
        if now < self.words[_NEXT_HEARTBEAT_US] or not self.lock.acquire(True, 0.05):
            return False
        try:
            if now < self.words[_NEXT_HEARTBEAT_US]:
                return False
            self.words[_NEXT_HEARTBEAT_US] = now + int(period_s * 1_000_000 * 0.9)
            return True
        finally:
            self.lock.release()

    def learn(self, count: int) -> None:
        count = max(1, count)
        if count != self.words[_COUNT]:
            log.warning("rate limit: %d gateways share the Redis budgets; while Redis is unavailable each "
                        "admits 1/%d of the fallback rates", count, count)
            self.words[_COUNT] = count


async def register_forever(shared: SharedInstances, ttl_s: float, timeout_s: float, eval_script: Eval,
                           redis_usable: Callable[[], bool]) -> None:
    """A worker's part of learning the count: heartbeats while Redis is usable, until cancelled."""
    period_s = ttl_s / 3
    args = [shared.instance_id, b"%d" % int(ttl_s * 1000)]
    while True:
        if redis_usable() and shared.claim_heartbeat(period_s):
            try:
                async with asyncio.timeout(timeout_s):
                    shared.learn(int(await eval_script(HEARTBEAT, [shared.key], args)))
            except Exception as exc:  # the breaker learns of outages from the checks
                log.debug("rate limit: instance heartbeat failed: %r", exc)
        await asyncio.sleep(period_s / 2)
