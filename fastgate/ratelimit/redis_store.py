"""Checks against Redis: batched per event-loop iteration, bounded by a deadline, guarded by a breaker.

Theory of operation
-------------------
``check`` appends the check to ``pending`` and, unless a flush is already
scheduled or ``max_in_flight`` batches are out, schedules one flush with
``loop.call_soon``. So the checks submitted during one loop iteration (the
request callbacks of every connection that had data) form one batch. The
flush starts one task for the batch's round trip. While ``max_in_flight``
batches are out, new checks accumulate, and the next batch leaves as soon
as one returns: under load batches grow instead of round trips
multiplying (each round trip costs far more CPU than one more check in it).

A round trip groups the batch (one group per hash tag in Redis Cluster,
otherwise one group; at most ``max_batch`` checks per group), sends one
EVALSHA per group (pipelined in one write when there are several) through
the link (redis_link.py: fastgate's RESP2 client for a single server and
for Cluster, coredis for Sentinel) and, on NOSCRIPT, loads the script and
sends those groups once more (NOSCRIPT means they were not run). The deadline is the
batch's first submission time plus ``timeout`` and covers waiting for a
free slot, connecting and the reply, so no check waits much longer than
``timeout``.

Every check's ``on_decision`` is called exactly once: with Redis's answer,
or with the failure policy's decision after an error, the deadline, an
open breaker, or shutdown.

Over-counting: a script that timed out may still run later (a frozen Redis
resumes and executes what it had received). That request was decided by
the failure policy and is also counted in Redis, so its client's budget is
smaller by one for a while: timeouts err on the strict side. At most the
checks in flight when Redis stalled are affected (bounded per worker by
``max_in_flight * max_batch`` per round trip, and the breaker stops sending
after ``failures`` failed round trips). Nothing is ever retried after it
may have reached Redis, so a healthy Redis never counts a request twice.
"""

import asyncio
import time
from typing import TYPE_CHECKING, Any

from fastgate.ratelimit.breaker import PROBE_DEADLINE_MIN_S, CircuitBreaker, SharedBreakerState, describe
from fastgate.ratelimit.config import RateLimitSettings
from fastgate.ratelimit.decision import ALLOWED_WITHOUT_HEADERS, Decision, OnDecision, unavailable
from fastgate.ratelimit.headers import HeaderWriter
from fastgate.ratelimit.hot_keys import HotKeyBoard, HotKeyCounter
from fastgate.ratelimit.instances import SharedInstances, register_forever
from fastgate.ratelimit.local_store import LocalStore
from fastgate.ratelimit.redis_link import ScriptCall, open_link
from fastgate.ratelimit.stats import RateLimitStats
from fastgate.runtime.resp import ReplyError

if TYPE_CHECKING:
    from fastgate.ratelimit.limiter import RouteLimits

Pending = tuple["RouteLimits", list[bytes], OnDecision]
"""A submitted check: route, keys, callback."""


class _Group(ScriptCall):
    """Checks sent in one EVALSHA: their batch positions and applied limits, besides keys and ARGV."""

    __slots__ = ("indices", "applied")

    def __init__(self) -> None:
        super().__init__()
        self.indices: list[int] = []
        self.applied: list[tuple[int, ...]] = []


class RedisStore:
    def __init__(self, settings: RateLimitSettings, breaker_state: SharedBreakerState, instances: SharedInstances,
                 hot_keys: HotKeyBoard, loop: asyncio.AbstractEventLoop, local: LocalStore, writer: HeaderWriter,
                 stats: RateLimitStats) -> None:
        redis = settings.redis
        assert redis is not None
        self._loop = loop
        self._timeout = float(redis.timeout)
        self._max_batch = redis.max_batch
        self._max_in_flight = redis.max_in_flight
        self._policy = settings.on_redis_failure
        self._local = local
        self._writer = writer
        self._stats = stats
        self._link = open_link(redis, settings.breaker, loop)
        self.breaker = CircuitBreaker(settings.breaker, breaker_state, loop, self._probe,
                                      self._link.drop_connections, self._link.refresh, stats)
        self._instances = instances
        hot = settings.hot_keys
        self.hot_keys = HotKeyCounter(hot_keys, hot.share, hot.min_calls, self._link.node_of, loop)
        self._registration_ttl_s = float(settings.registration_ttl)
        self._pending: list[Pending] = []
        self._pending_since = 0.0
        """Loop time of the first pending check: the next batch's deadline is counted from it."""
        self._flush_scheduled = False
        self._in_flight = 0
        self._tasks: set[asyncio.Task] = set()

    def start(self) -> None:
        self._link.start()
        self.hot_keys.start()
        if self._instances.learned:
            self._spawn(register_forever(self._instances, self._registration_ttl_s, self._timeout, self._link.eval,
                                         self.breaker.closed))

    def _spawn(self, work) -> None:
        task = self._loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Decide what is pending by the failure policy, stop the round trips, close the client."""
        self.breaker.close()
        self.hot_keys.close()
        pending, self._pending = self._pending, []
        self._deliver(pending, [self._fallback(route, keys) for route, keys, _ in pending])
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._link.close()

    def check(self, route: "RouteLimits", keys: list[bytes], on_decision: OnDecision) -> None:
        if not self.breaker.closed():
            decision = self._fallback(route, keys)
            self._stats.count(decision)
            on_decision(decision)
            return
        pending = self._pending
        if not pending:
            self._pending_since = self._loop.time()
        pending.append((route, keys, on_decision))
        if not self._flush_scheduled:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._in_flight < self._max_in_flight:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending or self._in_flight >= self._max_in_flight:
            return
        batch, self._pending = self._pending, []
        self._in_flight += 1
        self._spawn(self._round_trip(batch, self._pending_since + self._timeout))

    async def _round_trip(self, batch: list[Pending], deadline: float) -> None:
        decisions: list[Decision] | None = None
        try:
            decisions = await self._decide(batch, deadline)
        finally:
            self._in_flight -= 1
            if self._pending:
                self._schedule_flush()
            if decisions is None:  # cancelled at shutdown
                decisions = [self._fallback(route, keys) for route, keys, _ in batch]
            self._deliver(batch, decisions)

    async def _decide(self, batch: list[Pending], deadline: float) -> list[Decision]:
        """Redis's decision for each check of the batch, or the failure policy's where Redis failed."""
        decisions: list[Decision | None] = [None] * len(batch)
        if self.breaker.closed():  # else it opened while this batch waited: the policy decides all
            if self._loop.time() < deadline:
                await self._ask(batch, deadline, decisions)
            else:  # it waited for earlier batches, which count as failures
                self._stats.redis_timeouts += len(batch)
        if None in decisions:
            return [d if d is not None else self._fallback(route, keys)
                    for d, (route, keys, _) in zip(decisions, batch)]
        return decisions  # type: ignore[return-value]
    async def _ask(self, batch: list[Pending], deadline: float,
                   decisions: list[Decision | None]) -> None:
        """Send the batch, fill ``decisions`` for the checks Redis answered, feed the breaker."""
        stats = self._stats
        groups = self._groups(batch, self._link.cluster)
        replies: list[Any] = [None] * len(groups)
        stats.redis_checks += len(batch)
        failure = ""
        timed_out = False
        try:
            async with asyncio.timeout_at(deadline):
                await self._send(groups, replies)
        except Exception as exc:
            failure = describe(exc)
            timed_out = isinstance(exc, TimeoutError)
        for group, reply in zip(groups, replies):
            if isinstance(reply, list):
                self._decode(batch, group, reply, decisions)
            else:
                failure = failure or describe(reply)  # reply is None only after an exception
                if (reply is None and timed_out) or isinstance(reply, TimeoutError):
                    stats.redis_timeouts += len(group.indices)
        if failure:
            stats.redis_failures += 1
            self.breaker.record_failure(failure)
        else:
            self.breaker.record_success()

    def _groups(self, batch: list[Pending], cluster: bool) -> list[_Group]:
        groups: list[_Group] = []
        open_groups: dict[bytes, _Group] = {}
        count_key = self.hot_keys.count
        for index, (route, keys, _) in enumerate(batch):
            limits = route.limits
            if b"" in keys:  # some limits do not apply to this request
                applied = tuple(i for i, key in enumerate(keys) if key)
                keys = [keys[i] for i in applied]
                args = limits.script_args.get(applied) or limits.add_script_args(applied)
            else:
                applied = limits.every_limit
                args = limits.script_args[applied]
            first = keys[0]
            count_key(first)  # the counters of one check share a slot: the first key stands for them
            tag = b""
            if cluster:
                tag = first[first.index(b"{") + 1 : first.index(b"}")]
            group = open_groups.get(tag)
            if group is None or len(group.indices) >= self._max_batch:
                group = open_groups[tag] = _Group()
                groups.append(group)
            group.indices.append(index)
            group.applied.append(applied)
            group.add(keys, args)
        return groups

    async def _send(self, groups: list[_Group], replies: list[Any]) -> None:
        """Fill ``replies`` with each group's reply (a list) or error; reload the script once on NOSCRIPT."""
        todo = list(range(len(groups)))
        for attempt in (1, 2):
            stats = self._stats
            stats.redis_round_trips += 1
            started = time.monotonic()
            results = await self._link.eval_groups([groups[g] for g in todo])
            stats.count_round_trip(time.monotonic() - started)
            noscript = [g for g, result in zip(todo, results) if isinstance(result, ReplyError) and result.noscript]
            for g, result in zip(todo, results):
                replies[g] = result
            if not noscript or attempt == 2:
                return
            await self._link.script_load()
            self._stats.script_loads += 1
            todo = noscript

    def _decode(self, batch: list[Pending], group: _Group,
                reply: list[int], decisions: list[Decision | None]) -> None:
        writer = self._writer
        quiet = not writer.on_allowed
        pos = 0
        for index, applied in zip(group.indices, group.applied):
            allowed = reply[pos] == 1
            if allowed and quiet:
                decisions[index] = ALLOWED_WITHOUT_HEADERS
            else:
                shown = [(i, reply[pos + 1 + 3 * n], reply[pos + 2 + 3 * n], reply[pos + 3 + 3 * n])
                         for n, i in enumerate(applied)]
                decisions[index] = writer.decide(batch[index][0].limits.headers, shown, allowed)
            pos += 1 + 3 * len(applied)

    def _fallback(self, route: "RouteLimits", keys: list[bytes]) -> Decision:
        """The failure policy's decision for one check."""
        if self._policy == "local":
            self._stats.fallback_local += 1
            return self._local.decide(route.fallback_share(self._instances.count), keys)
        if self._policy == "allow":
            self._stats.fallback_allowed += 1
            return ALLOWED_WITHOUT_HEADERS
        return unavailable(self.breaker.retry_after_s())

    def _deliver(self, batch: list[Pending], decisions: list[Decision]) -> None:
        stats = self._stats
        stats.checks += len(batch)
        for (_, _, on_decision), decision in zip(batch, decisions):
            if not decision.allowed:
                stats.count_denied(decision)
            try:
                on_decision(decision)
            except Exception as exc:
                self._loop.call_exception_handler(
                    {"message": "rate limit: on_decision callback failed", "exception": exc})

    async def _probe(self) -> None:
        """The breaker's probe: load the script (which also proves Redis answers)."""
        async with asyncio.timeout(max(self._timeout, PROBE_DEADLINE_MIN_S)):
            await self._link.script_load()
        self._stats.script_loads += 1
