"""Checks against Redis: batched per event-loop iteration, bounded by a deadline, guarded by a breaker.

Theory of operation
-------------------
``check`` appends the check to ``pending`` and, unless a flush is already
scheduled or ``max_in_flight`` batches are out, schedules one flush with
``loop.call_soon``. So the checks submitted during one loop iteration (the
request callbacks of every connection that had data) form one batch. While
``max_in_flight`` batches are out, new checks accumulate, and the next
batch leaves as soon as one returns: under load batches grow instead of
round trips multiplying (each round trip costs far more CPU than one more
check in it).

The flush groups the batch (one group per slot in Redis Cluster,
otherwise one group; at most ``max_batch`` checks per group) into a
``_RoundTrip`` and sends one EVALSHA per group (pipelined in one write when
there are several) through the link (redis_link.py: fastgate's RESP2
client for a single server and for Cluster, coredis for Sentinel). No task and
no coroutine run per round trip: the link's reply comes as a Future (the
RESP client's own; a coroutine link's is made a Task), whose done callback
(``_answered``) decides the batch. On NOSCRIPT, which means those groups
were not run, a task loads the script and sends them once more.

The deadline is the batch's first submission time plus ``timeout`` and
covers waiting for a free slot, connecting and the reply, so no check
waits much longer than ``timeout``. A batch still pending past it when a
slot frees is decided by the failure policy without being sent. The round
trips in flight are watched by one timer, armed at the earliest deadline
among them and not cancelled when they return: when it fires it times out
the round trips whose deadline passed (their Future is cancelled, so the
RESP client drops their late reply and never writes one still waiting for
the connection) and re-arms itself for the next deadline in flight, if
any. Round trips are far shorter than the deadline, so the timer fires
about once per ``timeout`` under steady traffic, not once per batch.

Every check's ``on_decision`` is called exactly once: with Redis's answer,
or with the failure policy's decision after an error, the deadline, an
open breaker, or shutdown. A round trip is decided once: the first of its
reply, its deadline or shutdown takes it out of ``_trips`` and clears its
``waiting`` Future; whatever comes later for it is ignored. The breaker is
fed once per decided round trip (success, or the failure that ended it),
not for a batch that never left.

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
from functools import partial
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
from fastgate.runtime.resp_cluster import key_slot

if TYPE_CHECKING:
    from fastgate.ratelimit.limiter import RouteLimits

Pending = tuple["RouteLimits", list[bytes], OnDecision]
"""A submitted check: route, keys, callback."""


class _Group(ScriptCall):
    """Checks sent in one EVALSHA (besides their keys and ARGV), then Redis's reply to it."""

    __slots__ = ("checks", "reply")

    def __init__(self, slot: int) -> None:
        ScriptCall.__init__(self, slot)
        self.checks: list[Pending] = []
        self.reply: Any = None
        """The script's list of integers, an error (exception instance), or None while unanswered."""


class _RoundTrip:
    """One batch on its way to Redis: its checks in groups, its deadline, the Future it waits on."""

    __slots__ = ("groups", "deadline", "waiting", "sent", "sent_s", "reloaded")

    def __init__(self, groups: list[_Group], deadline: float) -> None:
        self.groups = groups
        self.deadline = deadline
        """Loop time past which the failure policy decides the batch."""
        self.waiting: asyncio.Future | None = None
        """The link's reply (or the script reload); None once the round trip is decided."""
        self.sent = groups
        """The groups the link answers next (after NOSCRIPT: only those Redis did not run)."""
        self.sent_s = 0.0
        """time.monotonic() when ``sent`` left (the round-trip histogram)."""
        self.reloaded = False
        """The script was loaded again for this round trip: a second NOSCRIPT is an answer."""


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
        self._trips: list[_RoundTrip] = []
        """The round trips in flight (at most max_in_flight), oldest first."""
        self._deadline_timer: asyncio.TimerHandle | None = None
        """Fires at the earliest deadline of the round trips in flight when it was armed (``_deadline_passed``)."""
        self._tasks: set[asyncio.Task] = set()

    def start(self) -> None:
        self._link.start()
        self.hot_keys.start()
        if self._instances.learned:
            self._spawn(register_forever(self._instances, self._registration_ttl_s, self._timeout, self._link.eval,
                                         self.breaker.closed))

    def _spawn(self, work) -> asyncio.Task:
        task = self._loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Decide what is pending or in flight by the failure policy, stop the timers and tasks, close the client."""
        self.breaker.close()
        self.hot_keys.close()
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        pending, self._pending = self._pending, []
        self._fall_back(pending)
        trips, self._trips = self._trips, []
        for trip in trips:
            waiting, trip.waiting = trip.waiting, None
            if waiting is not None:
                waiting.cancel()
            for group in trip.groups:
                self._fall_back(group.checks)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._link.close()

    def check(self, route: "RouteLimits", keys: list[bytes], on_decision: OnDecision) -> None:
        pending = self._pending
        if pending:  # a batch is forming: its flush (scheduled, or due when a round trip returns) asks the breaker
            pending.append((route, keys, on_decision))
            return
        if not self.breaker.closed():
            decision = self._fallback(route, keys)
            self._stats.count(decision)
            on_decision(decision)
            return
        self._pending_since = self._loop.time()
        pending.append((route, keys, on_decision))
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and len(self._trips) < self._max_in_flight:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Send the pending checks as one round trip (or decide them, if they can no longer be sent)."""
        self._flush_scheduled = False
        if not self._pending or len(self._trips) >= self._max_in_flight:
            return
        batch, self._pending = self._pending, []
        deadline = self._pending_since + self._timeout
        if not self.breaker.closed():  # it opened while this batch waited: the policy decides all
            self._fall_back(batch)
            return
        if self._loop.time() >= deadline:  # it waited for earlier batches, which count as failures
            self._stats.redis_timeouts += len(batch)
            self._fall_back(batch)
            return
        trip = _RoundTrip(self._groups(batch), deadline)
        self._stats.redis_checks += len(batch)
        self._trips.append(trip)
        if self._deadline_timer is None:
            self._deadline_timer = self._loop.call_at(deadline, self._deadline_passed)
        self._send(trip)

    def _send(self, trip: _RoundTrip) -> None:
        """Send the trip's ``sent`` groups; ``_answered`` gets the replies."""
        stats = self._stats
        stats.redis_round_trips += 1
        trip.sent_s = time.monotonic()
        try:
            waiting = self._link.eval_groups(trip.sent)
            if waiting.__class__ is not asyncio.Future:  # a coroutine (e.g. coredis_link.py) becomes a Task
                waiting = asyncio.ensure_future(waiting, loop=self._loop)
        except Exception as exc:  # the link refused at once: the round trip failed
            waiting = self._loop.create_future()
            waiting.set_exception(exc)
        trip.waiting = waiting
        waiting.add_done_callback(partial(self._answered, trip))

    def _answered(self, trip: _RoundTrip, waiting: asyncio.Future) -> None:
        """The link answered (or failed): decide the trip, or send the groups that met NOSCRIPT once more."""
        if waiting is not trip.waiting:
            return  # decided already: its deadline passed, or shutdown
        exc = waiting.exception()
        if exc is not None:
            self._decide(trip, describe(exc), False)
            return
        self._stats.count_round_trip(time.monotonic() - trip.sent_s)
        noscript = []
        for group, reply in zip(trip.sent, waiting.result()):
            group.reply = reply
            if reply.__class__ is ReplyError and reply.noscript:
                noscript.append(group)
        if noscript and not trip.reloaded:
            trip.reloaded = True
            trip.sent = noscript
            trip.waiting = reload = self._spawn(self._reload_script())
            reload.add_done_callback(partial(self._reloaded, trip))
            return
        self._decide(trip, "", False)

    async def _reload_script(self) -> None:
        await self._link.script_load()
        self._stats.script_loads += 1

    def _reloaded(self, trip: _RoundTrip, reload: asyncio.Future) -> None:
        """The script is loaded again after NOSCRIPT: send the groups Redis did not run (NOSCRIPT
        means they were not run, so this is no retry of anything Redis applied)."""
        if reload is not trip.waiting:
            return
        if reload.exception() is not None:
            self._decide(trip, describe(reload.exception()), False)
            return
        self._send(trip)

    def _deadline_passed(self) -> None:
        """Time out the round trips whose deadline passed; watch the next deadline in flight."""
        self._deadline_timer = None
        now = self._loop.time()
        for trip in [trip for trip in self._trips if trip.deadline <= now]:
            trip.waiting.cancel()  # the RESP client drops its late reply, or does not send it at all
            self._decide(trip, "TimeoutError", True)
        if self._trips:
            self._deadline_timer = self._loop.call_at(min(trip.deadline for trip in self._trips),
                                                      self._deadline_passed)

    def _decide(self, trip: _RoundTrip, failure: str, timed_out: bool) -> None:
        """Feed the breaker; deliver Redis's decision for each check Redis answered, the failure
        policy's for the others; send the next batch."""
        trip.waiting = None
        self._trips.remove(trip)
        stats = self._stats
        groups = trip.groups
        for group in groups:
            reply = group.reply
            if reply.__class__ is not list:
                failure = failure or describe(reply)  # reply is None only after an exception or the deadline
                if (reply is None and timed_out) or isinstance(reply, TimeoutError):
                    stats.redis_timeouts += len(group.checks)
        if failure:
            stats.redis_failures += 1
            self.breaker.record_failure(failure)
        else:
            self.breaker.record_success()
        if self._pending:
            self._schedule_flush()
        self._answer([group for group in groups if group.reply.__class__ is list])
        for group in groups:
            if group.reply.__class__ is not list:
                self._fall_back(group.checks)

    def _groups(self, batch: list[Pending]) -> list[_Group]:
        """The batch's checks in groups of at most max_batch, one EVALSHA each; in a cluster, one
        group (or more) per slot (the keys of a check share a hash tag, so a slot)."""
        cluster = self._link.cluster
        max_batch = self._max_batch
        groups: list[_Group] = []
        by_slot: dict[int, _Group] = {}
        firsts = []
        group = None
        slot = 0
        for check in batch:
            route, keys, _ = check
            limits = route.limits
            if b"" in keys:  # some limits do not apply to this request
                applied = tuple(i for i, key in enumerate(keys) if key)
                keys = [keys[i] for i in applied]
                args = limits.script_args.get(applied) or limits.add_script_args(applied)
            else:
                args = limits.all_script_args
            first = keys[0]
            firsts.append(first)  # the counters of one check share a slot: the first key stands for them
            if cluster:
                slot = key_slot(first)
                group = by_slot.get(slot)
            if group is None or len(group.checks) >= max_batch:
                group = _Group(slot)
                groups.append(group)
                if cluster:
                    by_slot[slot] = group
            group.checks.append(check)
            group.keys += keys
            group.args.append(args)
            group.argc += args.argc
        self.hot_keys.count(firsts)
        return groups

    def _answer(self, groups: list[_Group]) -> None:
        """Deliver each check of the groups its decision from Redis's reply: per check, admitted
        (1/0), then, unless it was admitted quietly, per limit applied to it, remaining, reset and
        retry-after (lua.py). A group whose reply is not of that shape (which only a bug could
        make) is decided by the failure policy, so every check is still decided once."""
        for group in groups:
            try:
                decisions = self._read(group)
            except (IndexError, TypeError, ValueError) as exc:
                self._loop.call_exception_handler({"message": "rate limit: a Redis reply of the wrong shape",
                                                   "exception": exc})
                self._fall_back(group.checks)
                continue
            self._deliver(group.checks, decisions)

    def _read(self, group: _Group) -> list[Decision]:
        """The decision of each check of the group, from its reply; raises when the reply does not fit."""
        writer = self._writer
        reply = group.reply
        decisions = []
        pos = 0
        for (route, _, _), args in zip(group.checks, group.args):
            admitted = reply[pos] == 1
            if admitted and args.quiet:
                pos += 1
                decisions.append(ALLOWED_WITHOUT_HEADERS)
            else:
                shown = [(i, reply[pos + 1 + 3 * n], reply[pos + 2 + 3 * n], reply[pos + 3 + 3 * n])
                         for n, i in enumerate(args.applied)]
                pos += 1 + 3 * len(shown)
                decisions.append(writer.decide(route.limits.headers, shown, admitted))
        if pos != len(reply):
            raise ValueError(f"{len(reply)} integers answer checks that take {pos}")
        return decisions

    def _fallback(self, route: "RouteLimits", keys: list[bytes]) -> Decision:
        """The failure policy's decision for one check."""
        if self._policy == "local":
            self._stats.fallback_local += 1
            return self._local.decide(route.fallback_share(self._instances.count), keys)
        if self._policy == "allow":
            self._stats.fallback_allowed += 1
            return ALLOWED_WITHOUT_HEADERS
        return unavailable(self.breaker.retry_after_s())

    def _fall_back(self, checks: list[Pending]) -> None:
        """Deliver the failure policy's decision to each check."""
        self._deliver(checks, [self._fallback(route, keys) for route, keys, _ in checks])

    def _deliver(self, batch: list[Pending], decisions: list[Decision]) -> None:
        stats = self._stats
        stats.checks += len(batch)
        for (_, _, on_decision), decision in zip(batch, decisions):
            if not decision.allowed:
                stats.count_denied(decision)
            try:
                on_decision(decision)
            except Exception as exc:
                self._callback_failed(exc)

    def _callback_failed(self, exc: Exception) -> None:
        self._loop.call_exception_handler({"message": "rate limit: on_decision callback failed", "exception": exc})

    async def _probe(self) -> None:
        """The breaker's probe: load the script (which also proves Redis answers)."""
        async with asyncio.timeout(max(self._timeout, PROBE_DEADLINE_MIN_S)):
            await self._link.script_load()
        self._stats.script_loads += 1
