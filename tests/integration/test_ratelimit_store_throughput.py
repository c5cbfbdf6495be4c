"""What a check costs: the local store per check, Redis one by one versus batched.

Prints the numbers (run with -s to see them); asserts only behaviour: a
burst of concurrent checks shares round trips, one-by-one checks do not.
"""

import asyncio
import time

import uvloop

from fastgate.ratelimit import Limit, RateLimiter, RateLimitSettings, RedisSettings
from tests.support.redis_server import RedisServer

IPS = [b"10.9.%d.%d" % (n // 256, n % 256) for n in range(1000)]


def no_headers(name: bytes) -> None:
    return None


def test_local_check_cost():
    limiter = RateLimiter.create_shared(RateLimitSettings())
    route = limiter.compile_route("cost", [Limit(key=["ip"], rate="1000000/s")])
    decisions = []
    n = 50_000
    started = time.perf_counter()
    for i in range(n):
        route.check(route.keys(IPS[i % 1000], no_headers, b"", None, None), decisions.append)
    elapsed = time.perf_counter() - started
    assert len(decisions) == n and all(d.allowed for d in decisions)
    print(f"\nlocal store: {elapsed / n * 1e6:.2f} us per check (keys + check + headers, 1 limit)")


def test_redis_batched_versus_one_by_one():
    with RedisServer() as server:
        limiter = RateLimiter.create_shared(RateLimitSettings(
            store="redis", on_redis_failure="deny", redis=RedisSettings(url=server.url, timeout=2.0)))
        route = limiter.compile_route("throughput", [Limit(key=["ip"], rate="1000000/s")])
        keys = [route.keys(ip, no_headers, b"", None, None) for ip in IPS]

        async def scenario():
            loop = asyncio.get_running_loop()
            limiter.attach(loop)
            stats = limiter.stats
            one_by_one = 1000
            trips = stats.redis_round_trips
            started = time.perf_counter()
            for i in range(one_by_one):
                future = loop.create_future()
                route.check(keys[i % 1000], future.set_result)
                assert (await future).allowed
            single_rate = one_by_one / (time.perf_counter() - started)
            assert stats.redis_round_trips - trips >= one_by_one

            bursts, burst = 100, 200
            trips, checks = stats.redis_round_trips, stats.redis_checks
            futures = []
            started = time.perf_counter()
            for b in range(bursts):
                for i in range(burst):
                    future = loop.create_future()
                    route.check(keys[(b * burst + i) % 1000], future.set_result)
                    futures.append(future)
                await asyncio.sleep(0)  # the next burst arrives in the next loop iteration
            async with asyncio.timeout(60):
                decisions = await asyncio.gather(*futures)
            batched_rate = len(futures) / (time.perf_counter() - started)
            assert all(d.status == 200 for d in decisions)
            trips, checks = stats.redis_round_trips - trips, stats.redis_checks - checks
            assert checks == bursts * burst and trips < checks / 10
            await limiter.close()
            print(f"\nredis store: one by one {single_rate:.0f} checks/s; batched {batched_rate:.0f} checks/s, "
                  f"{trips / checks:.4f} round trips per check ({checks} checks, {trips} round trips)")

        uvloop.run(scenario())
