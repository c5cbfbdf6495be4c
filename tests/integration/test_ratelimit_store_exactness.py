"""Exactness across processes, for both stores and every algorithm.

The limiter is created in this process (the master's role), then several
forked processes (the workers) each run their own uvloop loop, attach, and
fire checks at the same keys at the same time. Exactly the limit must be
admitted, whatever the interleaving: the local store's table is shared
memory guarded by one process-shared lock, the Redis store decides each
check in one atomic script.
"""

import asyncio
import multiprocessing

import pytest
import uvloop

from fastgate.ratelimit import Limit, RateLimiter, RateLimitSettings, RedisSettings
from fastgate.ratelimit.decision import ALLOWED_WITHOUT_HEADERS
from tests.support.redis_server import RedisServer

PROCESSES = 4
ATTEMPTS = 2000
"""Checks per process and test: enough for the processes to overlap for many milliseconds."""
LIMIT = 5000
BURST = 8
"""Checks a process submits per loop iteration (the Redis store batches each burst)."""
JSON = b"application/json"
# Periods of a day: fixed and sliding windows are aligned to the clock, and a test that straddled a
# window boundary would see a fresh budget (a chance of about 1 in 20000 per run).


@pytest.fixture(scope="module")
def redis_server():
    with RedisServer() as server:
        yield server


@pytest.fixture(params=["local", "redis"])
def make_limiter(request):
    """Builds a limiter on the store under test; Redis runs with a generous deadline and policy "deny",
    so a slow round trip would show up as a 503 instead of silently changing the counts."""
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        server.cli("flushall")
        settings = RateLimitSettings(store="redis", on_redis_failure="deny",
                                     redis=RedisSettings(url=server.url, timeout=5.0))
    else:
        settings = RateLimitSettings(store="local")
    return lambda: RateLimiter.create_shared(settings)


def no_headers(name: bytes) -> None:
    return None


def _child(limiter, requests, barrier, conn) -> None:
    async def fire():
        loop = asyncio.get_running_loop()
        limiter.attach(loop)
        futures = []
        for start in range(0, len(requests), BURST):
            for route, ip, body in requests[start:start + BURST]:
                future = loop.create_future()
                if route.admit_ip is not None and route.admit_ip(ip):  # as transport/limit_gate.py does
                    future.set_result(ALLOWED_WITHOUT_HEADERS)
                else:
                    route.check(route.keys(ip, no_headers, b"", body, JSON), future.set_result)
                futures.append(future)
            await asyncio.sleep(0)  # one loop iteration per burst
        async with asyncio.timeout(30):
            decisions = await asyncio.gather(*futures)
        await limiter.close()
        s = limiter.stats
        return [d.status for d in decisions], (s.redis_checks, s.redis_round_trips), limiter.table.fast_admitted()

    try:
        barrier.wait(timeout=30)
        conn.send(uvloop.run(fire()))
    except BaseException as exc:
        conn.send(exc)


def run_workers(limiter: RateLimiter, jobs: list[list]) -> list[tuple[list[int], tuple[int, int], int]]:
    """Fork one process per job (a list of (route, ip, body) requests); return each one's statuses,
    (redis_checks, redis_round_trips) and checks admitted by the C check. Every process is stopped before
    returning, also on failure."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(jobs))
    processes, receivers = [], []
    try:
        for job in jobs:
            receiver, sender = ctx.Pipe(duplex=False)
            process = ctx.Process(target=_child, args=(limiter, job, barrier, sender), daemon=True)
            process.start()
            processes.append(process)
            receivers.append(receiver)
        results = []
        for receiver in receivers:
            assert receiver.poll(60), "a worker process did not report"
            result = receiver.recv()
            if isinstance(result, BaseException):
                raise result
            results.append(result)
        return results
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()


@pytest.mark.parametrize("algorithm", ["gcra", "sliding_window", "fixed_window"])
def test_exactly_the_limit_is_admitted_across_processes(make_limiter, algorithm):
    limiter = make_limiter()
    route = limiter.compile_route(f"exact-{algorithm}", [Limit(key=["ip"], rate=f"{LIMIT}/d", algorithm=algorithm)])
    job = [(route, b"203.0.113.50", None)] * ATTEMPTS
    results = run_workers(limiter, [job] * PROCESSES)
    statuses = [status for result in results for status in result[0]]
    assert statuses.count(200) == LIMIT
    assert statuses.count(429) == PROCESSES * ATTEMPTS - LIMIT
    if route.admit_ip is not None:  # the local store's C check (ratelimit/_native_table.c) took part
        assert algorithm == "gcra" and limiter.settings.store == "local"
        assert 0 < sum(r[2] for r in results) < LIMIT
    if limiter.settings.store == "redis":
        checks = sum(r[1][0] for r in results)
        round_trips = sum(r[1][1] for r in results)
        assert checks == PROCESSES * ATTEMPTS
        assert round_trips < checks  # concurrent checks shared round trips


def test_otp_per_phone_and_per_ip_across_processes(make_limiter):
    """POST /otp limited to 3 per phone and 5 per IP; a request denied by either limit consumes neither."""
    limiter = make_limiter()
    otp = limiter.compile_route("otp", [Limit(key=["body.phone"], rate="3/d", scope="otp-phone"),
                                        Limit(key=["ip"], rate="5/d", scope="otp-ip")])
    phone = lambda n: b'{"phone": "+1555%04d"}' % n  # noqa: E731

    # One IP cycling over two phones: the IP budget (5) binds before the phones' (2 x 3).
    one_ip = [(otp, b"198.51.100.1", phone(i % 2)) for i in range(20)]
    statuses = [s for result in run_workers(limiter, [one_ip] * PROCESSES) for s in result[0]]
    assert statuses.count(200) == 5

    # One phone from four IPs: the phone budget (3) binds; the IPs keep what they did not spend.
    ips = [b"198.51.100.%d" % (10 + p) for p in range(PROCESSES)]
    results = run_workers(limiter, [[(otp, ip, phone(99))] * 10 for ip in ips])
    admitted = [result[0].count(200) for result in results]
    assert sum(admitted) == 3

    async def afterwards():
        loop = asyncio.get_running_loop()
        limiter.attach(loop)
        statuses = []
        for ip, spent in zip(ips, admitted):
            for n in range(6):  # fresh phones: exactly 5 - spent more from this IP
                future = loop.create_future()
                otp.check(otp.keys(ip, no_headers, b"", phone(1000 + 10 * ips.index(ip) + n), JSON),
                          future.set_result)
                statuses.append((ip, spent, (await future).status))
        fresh_phone_same_ip = loop.create_future()
        otp.check(otp.keys(b"198.51.100.1", no_headers, b"", phone(5000), JSON), fresh_phone_same_ip.set_result)
        statuses.append((b"198.51.100.1", 5, (await fresh_phone_same_ip).status))
        await limiter.close()
        return statuses

    statuses = uvloop.run(afterwards())
    for ip in ips + [b"198.51.100.1"]:
        mine = [(spent, status) for i, spent, status in statuses if i == ip]
        assert [status for _, status in mine].count(200) == 5 - mine[0][0]


def test_one_reply_with_quiet_admissions_and_full_denials_is_read_check_by_check(redis_server):
    """Without headers on admitted responses Redis answers an admitted check with its 1 alone and a
    denied one in full (lua.py), so one batch's reply mixes both lengths: each check must still get
    its own decision, with the headers of the limits that applied to it."""
    redis_server.cli("flushall")
    limiter = RateLimiter.create_shared(RateLimitSettings(
        store="redis", on_redis_failure="deny", headers_on_allowed=False,
        redis=RedisSettings(url=redis_server.url, timeout=5.0)))
    route = limiter.compile_route("mixed", [Limit(key=["ip"], rate="2/d", scope="mixed-ip"),
                                            Limit(key=["header:X-Key"], rate="1/d", scope="mixed-key")])
    with_key = lambda name: b"k" if name == b"x-key" else None  # noqa: E731
    requests = [(b"192.0.2.1", no_headers), (b"192.0.2.2", with_key), (b"192.0.2.1", no_headers),
                (b"192.0.2.2", with_key), (b"192.0.2.1", no_headers), (b"192.0.2.3", no_headers)]

    async def one_batch():
        loop = asyncio.get_running_loop()
        limiter.attach(loop)
        warm = loop.create_future()  # connects and loads the script
        route.check(route.keys(b"192.0.2.99", no_headers, b"", None, None), warm.set_result)
        assert (await warm).allowed
        before = limiter.stats.redis_round_trips
        futures = []
        for ip, headers in requests:  # all in one loop iteration: one round trip
            future = loop.create_future()
            route.check(route.keys(ip, headers, b"", None, None), future.set_result)
            futures.append(future)
        async with asyncio.timeout(10):
            decisions = await asyncio.gather(*futures)
        round_trips = limiter.stats.redis_round_trips - before
        await limiter.close()
        return decisions, round_trips

    decisions, round_trips = uvloop.run(one_batch())
    assert round_trips == 1
    assert [d.status for d in decisions] == [200, 200, 200, 429, 429, 200]
    assert all(d.headers == b"" for d in decisions if d.allowed)
    key_denied, ip_denied = decisions[3].headers, decisions[4].headers
    assert b'"mixed-ip";r=1;' in key_denied and b'"mixed-key";r=0;' in key_denied  # both applied
    assert b'"mixed-ip";r=0;' in ip_denied and b'"mixed-key";r=' not in ip_denied.split(b"RateLimit: ")[1]
    assert all(b"Retry-After: " in headers for headers in (key_denied, ip_denied))
