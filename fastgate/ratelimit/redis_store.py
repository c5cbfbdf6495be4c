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
EVALSHA per group (a pipeline when there are several) and, on NOSCRIPT,
loads the script and sends those groups once more. The deadline is the
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
from typing import TYPE_CHECKING, Any

from coredis.exceptions import NoScriptError, ResponseError

from fastgate.ratelimit.breaker import CLOSED, CircuitBreaker, describe
from fastgate.ratelimit.config import RateLimitSettings
from fastgate.ratelimit.decision import ALLOWED_WITHOUT_HEADERS, Decision, OnDecision, unavailable
from fastgate.ratelimit.headers import HeaderWriter
from fastgate.ratelimit.local_store import LocalStore
from fastgate.ratelimit.lua import SCRIPT, SHA
from fastgate.ratelimit.redis_client import RedisLink
from fastgate.ratelimit.stats import RateLimitStats

if TYPE_CHECKING:
    from fastgate.ratelimit.limiter import RouteLimits

Pending = tuple["RouteLimits", list[bytes], OnDecision, float]
"""A submitted check: route, keys, callback, loop time of submission."""


class _Group:
    """Checks sent in one EVALSHA: their batch positions, keys, arguments and applied limits."""

    __slots__ = ("indices", "keys", "args", "applied")

    def __init__(self) -> None:
        self.indices: list[int] = []
        self.keys: list[bytes] = []
        self.args: list[bytes] = []
        self.applied: list[list[int]] = []


class RedisStore:
    def __init__(self, settings: RateLimitSettings, loop: asyncio.AbstractEventLoop, local: LocalStore,
                 writer: HeaderWriter, stats: RateLimitStats) -> None:
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
        self._link = RedisLink(redis, settings.breaker, loop)
        self.breaker = CircuitBreaker(settings.breaker, loop, self._probe, self._link.drop_connections, stats)
        self._pending: list[Pending] = []
        self._flush_scheduled = False
        self._in_flight = 0
        self._tasks: set[asyncio.Task] = set()

    def start(self) -> None:
        self._link.start()

    async def close(self) -> None:
        """Decide what is pending by the failure policy, stop the round trips, close the client."""
        self.breaker.close()
        pending, self._pending = self._pending, []
        for route, keys, on_decision, _ in pending:
            self._deliver(on_decision, self._fallback(route, keys))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._link.close()

    def check(self, route: "RouteLimits", keys: list[bytes], on_decision: OnDecision) -> None:
        if self.breaker.state != CLOSED:
            decision = self._fallback(route, keys)
            self._stats.count(decision)
            on_decision(decision)
            return
        self._pending.append((route, keys, on_decision, self._loop.time()))
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
        task = self._loop.create_task(self._round_trip(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _round_trip(self, batch: list[Pending]) -> None:
        decisions: list[Decision] | None = None
        try:
            decisions = await self._decide(batch)
        finally:
            self._in_flight -= 1
            if self._pending:
                self._schedule_flush()
            if decisions is None:  # cancelled at shutdown
                decisions = [self._fallback(route, keys) for route, keys, _, _ in batch]
            for (_, _, on_decision, _), decision in zip(batch, decisions):
                self._deliver(on_decision, decision)

    async def _decide(self, batch: list[Pending]) -> list[Decision]:
        """Redis's decision for each check of the batch, or the failure policy's where Redis failed."""
        decisions: list[Decision | None] = [None] * len(batch)
        deadline = batch[0][3] + self._timeout
        if self.breaker.state == CLOSED:  # else it opened while this batch waited: the policy decides all
            if self._loop.time() < deadline:
                await self._ask(batch, deadline, decisions)
            else:  # it waited for earlier batches, which count as failures
                self._stats.redis_timeouts += len(batch)
        return [d if d is not None else self._fallback(route, keys)
                for d, (route, keys, _, _) in zip(decisions, batch)]

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
                client = self._link.client or await self._link.connected()
                await self._send(client, groups, replies)
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
        for index, (route, keys, _, _) in enumerate(batch):
            applied = [i for i, key in enumerate(keys) if key]
            tag = b""
            if cluster:
                first = keys[applied[0]]
                tag = first[first.index(b"{") + 1 : first.index(b"}")]
            group = open_groups.get(tag)
            if group is None or len(group.indices) >= self._max_batch:
                group = open_groups[tag] = _Group()
                groups.append(group)
            group.indices.append(index)
            group.applied.append(applied)
            group.args.append(b"%d" % len(applied))
            script_args = route.limits.script_args
            for i in applied:
                group.keys.append(keys[i])
                group.args.extend(script_args[i])
        return groups

    async def _send(self, client: Any, groups: list[_Group], replies: list[Any]) -> None:
        """Fill ``replies`` with each group's reply (a list) or error; reload the script once on NOSCRIPT."""
        todo = list(range(len(groups)))
        for attempt in (1, 2):
            results = await self._call(client, [groups[g] for g in todo])
            noscript = [g for g, result in zip(todo, results) if isinstance(result, NoScriptError)]
            for g, result in zip(todo, results):
                replies[g] = result
            if not noscript or attempt == 2:
                return
            await client.script_load(SCRIPT)
            self._stats.script_loads += 1
            todo = noscript

    async def _call(self, client: Any, groups: list[_Group]) -> list[Any]:
        self._stats.redis_round_trips += 1
        if len(groups) == 1:
            try:
                return [await client.evalsha(SHA, keys=groups[0].keys, args=groups[0].args)]
            except ResponseError as exc:  # an answer for this group (e.g. NOSCRIPT), not a broken link
                return [exc]
        async with client.pipeline(transaction=False, raise_on_error=False) as pipe:
            for group in groups:
                pipe.evalsha(SHA, keys=group.keys, args=group.args)
        return list(pipe.results)

    def _decode(self, batch: list[Pending], group: _Group,
                reply: list[int], decisions: list[Decision | None]) -> None:
        decide = self._writer.decide
        pos = 0
        for index, applied in zip(group.indices, group.applied):
            allowed = reply[pos] == 1
            shown = [(i, reply[pos + 1 + 3 * n], reply[pos + 2 + 3 * n], reply[pos + 3 + 3 * n])
                     for n, i in enumerate(applied)]
            pos += 1 + 3 * len(applied)
            decisions[index] = decide(batch[index][0].limits.headers, shown, allowed)

    def _fallback(self, route: "RouteLimits", keys: list[bytes]) -> Decision:
        """The failure policy's decision for one check."""
        if self._policy == "local":
            self._stats.fallback_local += 1
            return self._local.decide(route.fallback, keys)
        if self._policy == "allow":
            self._stats.fallback_allowed += 1
            return ALLOWED_WITHOUT_HEADERS
        return unavailable(self.breaker.retry_after_s())

    def _deliver(self, on_decision: OnDecision, decision: Decision) -> None:
        self._stats.count(decision)
        try:
            on_decision(decision)
        except Exception as exc:
            self._loop.call_exception_handler(
                {"message": "rate limit: on_decision callback failed", "exception": exc})

    async def _probe(self) -> None:
        """The breaker's probe: load the script (which also proves Redis answers)."""
        async with asyncio.timeout(self._timeout):
            client = self._link.client or await self._link.connected()
            await client.script_load(SCRIPT)
        self._stats.script_loads += 1
