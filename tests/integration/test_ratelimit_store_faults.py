"""The Redis store when Redis fails: killed, frozen, restarted, its script cache flushed.

Each scenario runs the limiter on this process's uvloop loop against a real
redis-server and times every check from submission to decision. What must
hold: no check waits much longer than the deadline (asserted only against
a generous 1 s), the failure policy decides while Redis is unavailable,
the breaker opens and closes again, and limiting goes through Redis again
after recovery. The route admits 4 per key through Redis and 2 per key
through the local fallback, so each decision shows which one decided.
"""

import asyncio
import time

import pytest
import uvloop

from fastgate.ratelimit import BreakerSettings, Limit, RateLimiter, RateLimitSettings, RedisSettings
from tests.support.redis_server import RedisServer

TIMEOUT_S = 0.05
WAITS: list[float] = []
"""Every check's wait in this module, for the report printed at the end."""


@pytest.fixture
def redis_server():
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module", autouse=True)
def report_waits():
    yield
    if WAITS:
        print(f"\nrate limit faults: {len(WAITS)} checks, longest wait {max(WAITS) * 1000:.1f} ms "
              f"(deadline {TIMEOUT_S * 1000:.0f} ms)")


def limiter_for(server: RedisServer, policy: str, failures: int = 2) -> tuple[RateLimiter, object]:
    settings = RateLimitSettings(
        store="redis", on_redis_failure=policy,
        redis=RedisSettings(url=server.url, timeout=TIMEOUT_S),
        breaker=BreakerSettings(failures=failures, open_time=0.1, max_open_time=0.4))
    limiter = RateLimiter.create_shared(settings)
    route = limiter.compile_route("faults", [Limit(key=["ip"], rate="4/d", fallback_rate="2/d")])
    return limiter, route


def no_headers(name: bytes) -> None:
    return None


async def decide(route, ip: bytes, n: int) -> list:
    """Submit n checks for ``ip`` in one loop iteration; return their decisions, recording each wait."""
    loop = asyncio.get_running_loop()
    futures = []
    keys = route.keys(ip, no_headers, b"", None, None)
    for _ in range(n):
        future = loop.create_future()
        started = time.monotonic()
        route.check(keys, lambda d, f=future, t=started: f.set_result((d, time.monotonic() - t)))
        futures.append(future)
    async with asyncio.timeout(10):
        results = await asyncio.gather(*futures)
    WAITS.extend(wait for _, wait in results)
    assert max(wait for _, wait in results) < 1.0
    return [decision for decision, _ in results]


async def until_breaker(limiter: RateLimiter, state: str, route=None) -> None:
    """Wait for the breaker state (sending a check per turn if a route is given, as traffic would)."""
    async with asyncio.timeout(10):
        n = 0
        while limiter.stats.breaker_state != state:
            if route is not None:
                await decide(route, b"192.0.2.%d" % (100 + n % 100), 1)
                n += 1
            await asyncio.sleep(0.01)


def admitted(decisions) -> int:
    return sum(d.allowed for d in decisions)


async def healthy(limiter, route, ip: bytes) -> None:
    """A fresh key admits exactly 4 of 6: Redis decided (the local fallback would admit 2).

    Just after a recovery, a batch may still meet a slow Redis (a thawed server works off what it
    received while stopped) and be decided by the fallback; such a batch is sent again, with another
    fresh key, once the breaker has closed again (at most 3 batches)."""
    for attempt in range(3):
        before, fallbacks = limiter.stats.redis_checks, limiter.stats.fallback_local
        decisions = await decide(route, ip if attempt == 0 else ip + b"%d" % attempt, 6)
        if limiter.stats.fallback_local == fallbacks:
            break
        await until_breaker(limiter, "closed")
    assert admitted(decisions) == 4
    assert [d.status for d in decisions].count(429) == 2
    assert limiter.stats.redis_checks == before + 6


@pytest.mark.parametrize("fault", ["kill", "freeze"])
def test_outage_falls_back_to_local_limits_and_recovers(redis_server, fault):
    limiter, route = limiter_for(redis_server, "local")

    async def scenario():
        limiter.attach(asyncio.get_running_loop())
        await healthy(limiter, route, b"192.0.2.1")
        redis_server.kill() if fault == "kill" else redis_server.freeze()
        await until_breaker(limiter, "open", route)
        assert limiter.stats.redis_failures >= 2
        during = await decide(route, b"192.0.2.2", 5)
        assert admitted(during) == 2  # the fallback rate, from this machine's table
        assert all(b'"faults";q=2;w=86400' in d.headers for d in during)
        redis_server.start() if fault == "kill" else redis_server.thaw()
        await until_breaker(limiter, "closed")
        await healthy(limiter, route, b"192.0.2.3")
        assert limiter.stats.fallback_local >= 5
        await limiter.close()

    uvloop.run(scenario())
    assert limiter.stats.breaker_transitions >= 3  # open, half_open, closed


@pytest.mark.parametrize("policy", ["allow", "deny"])
def test_policies_while_redis_is_down(redis_server, policy):
    limiter, route = limiter_for(redis_server, policy)

    async def scenario():
        limiter.attach(asyncio.get_running_loop())
        await healthy(limiter, route, b"192.0.2.1")
        redis_server.kill()
        await until_breaker(limiter, "open", route)
        during = await decide(route, b"192.0.2.1", 5)  # a key Redis had exhausted
        if policy == "allow":
            assert all(d.allowed and d.status == 200 and d.headers == b"" for d in during)
            assert limiter.stats.fallback_allowed >= 5
        else:
            assert all(not d.allowed and d.status == 503 for d in during)
            assert all(d.headers.startswith(b"\r\nRetry-After: ") for d in during)
            assert limiter.stats.unavailable >= 5
        redis_server.start()
        await until_breaker(limiter, "closed")
        await healthy(limiter, route, b"192.0.2.4")
        await limiter.close()

    uvloop.run(scenario())


def test_script_is_reloaded_after_a_flush_and_a_restart(redis_server):
    limiter, route = limiter_for(redis_server, "deny", failures=100)

    async def scenario():
        loop = asyncio.get_running_loop()
        limiter.attach(loop)
        await healthy(limiter, route, b"192.0.2.1")
        loads = limiter.stats.script_loads
        await loop.run_in_executor(None, redis_server.cli, "script", "flush")
        await healthy(limiter, route, b"192.0.2.2")  # NOSCRIPT, load, same checks sent again
        assert limiter.stats.script_loads == loads + 1
        redis_server.kill()
        redis_server.start()
        assert admitted(await decide(route, b"192.0.2.3", 6)) in (0, 4)  # the old connection may fail once
        await healthy(limiter, route, b"192.0.2.5")
        assert limiter.stats.script_loads >= loads + 2
        await limiter.close()

    uvloop.run(scenario())


def test_checks_that_timed_out_on_a_frozen_redis_are_applied_when_it_resumes(redis_server):
    """The documented over-count: the failure policy decided them, and Redis counts them too."""
    settings = RateLimitSettings(store="redis", on_redis_failure="allow",
                                 redis=RedisSettings(url=redis_server.url, timeout=TIMEOUT_S),
                                 breaker=BreakerSettings(failures=100))
    limiter = RateLimiter.create_shared(settings)
    route = limiter.compile_route("overcount", [Limit(key=["ip"], rate="5/d", algorithm="fixed_window")])

    async def scenario():
        loop = asyncio.get_running_loop()
        limiter.attach(loop)
        key = route.keys(b"192.0.2.7", no_headers, b"", None, None)[0].decode()
        assert admitted(await decide(route, b"192.0.2.8", 1)) == 1  # connected before the freeze
        redis_server.freeze()
        try:
            during = await decide(route, b"192.0.2.7", 3)
            assert all(d.allowed and d.headers == b"" for d in during)  # policy "allow" decided them
            assert limiter.stats.redis_timeouts == 3
        finally:
            redis_server.thaw()
        async with asyncio.timeout(10):
            while not (await loop.run_in_executor(None, redis_server.cli, "get", key)).strip().endswith(":3"):
                await asyncio.sleep(0.01)
        assert admitted(await decide(route, b"192.0.2.7", 5)) == 2
        await limiter.close()

    uvloop.run(scenario())
