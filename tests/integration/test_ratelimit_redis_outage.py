"""A frozen Redis behind a gateway of several workers: what the gateway pays, and how long answers wait.

Redis is frozen with SIGSTOP: its sockets stay open and nothing is answered,
the worst kind of failure (a killed Redis refuses at once). Every check then
waits for its deadline until the breaker opens. The breaker is one per
gateway (shared memory), so the gateway pays that deadline ``failures``
times in all, whatever its number of workers. Timings are printed for the
report and asserted only against generous bounds; the counts come from the
gateway's own /metrics.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.metrics import settled, value
from tests.support.rawhttp import RawConnection
from tests.support.redis_server import RedisServer

TIMEOUT_S = 0.25
FAILURES = 2


@pytest.fixture
def redis():
    with RedisServer() as server:
        yield server


def outage_gateway(gateways, redis: RedisServer, workers: int, open_time: str):
    settings = {"store": "redis", "on_redis_failure": "local",
                "redis": {"url": redis.url, "timeout": f"{int(TIMEOUT_S * 1000)}ms"},
                "breaker": {"failures": FAILURES, "open_time": open_time, "max_open_time": open_time}}
    route = {"name": "api", "path_prefix": "/api", "respond": {"status": 200, "body": "ok\n"},
             "limits": [{"key": ["ip"], "rate": "1000/1m", "fallback_rate": "1000/1m"}]}
    return gateways.start({"routes": [route], "ratelimit": settings}, workers=workers)


def timed_get(url: str) -> tuple[int, float]:
    """One request on a new connection (so the kernel spreads them over the workers): status, seconds."""
    started = time.monotonic()
    status = httpx.get(url, timeout=10).status_code
    return status, time.monotonic() - started


def test_a_frozen_redis_costs_the_gateway_failures_deadlines_not_failures_per_worker(gateways, redis):
    workers = 4
    gw = outage_gateway(gateways, redis, workers, open_time="60s")  # no probe during the test
    assert [timed_get(gw.url("/api/warm"))[0] for _ in range(4 * workers)] == [200] * 4 * workers
    redis.freeze()
    try:
        during = [timed_get(gw.url("/api/x")) for _ in range(8 * workers)]
    finally:
        redis.thaw()
    assert {status for status, _ in during} == {200}  # the local fallback decided, nothing failed
    slow = [seconds for _, seconds in during if seconds > TIMEOUT_S / 2]
    print(f"\n{len(during)} requests over {workers} workers with Redis frozen: {len(slow)} waited for the "
          f"deadline ({', '.join(f'{s * 1000:.0f} ms' for s in slow)}), the others at most "
          f"{max(s for _, s in during if s <= TIMEOUT_S / 2) * 1000:.1f} ms")
    metrics = settled(gw)
    assert value(metrics, "fastgate_ratelimit_redis_timeouts_total") == FAILURES
    assert value(metrics, "fastgate_ratelimit_redis_failures_total") == FAILURES
    assert value(metrics, "fastgate_ratelimit_breaker_open") == workers  # every worker sees it open
    assert len(slow) == FAILURES


def burst(port: int, clients: int) -> list[tuple[int, float]]:
    """``clients`` connections, opened first; then each sends one request at the same moment.
    Each request's status and the seconds from its send to its whole response (h11, no client setup)."""
    connections = [RawConnection(port) for _ in range(clients)]
    start = threading.Barrier(clients)

    def one(connection: RawConnection) -> tuple[int, float]:
        start.wait()
        started = time.monotonic()
        connection.send(b"GET /api/burst HTTP/1.1\r\nHost: gw\r\n\r\n")
        status = connection.read_response().status
        return status, time.monotonic() - started

    try:
        with ThreadPoolExecutor(clients) as pool:
            return list(pool.map(one, connections))
    finally:
        for connection in connections:
            connection.close()


def test_the_deadline_holds_at_the_gateway_under_a_burst(gateways, redis):
    gw = outage_gateway(gateways, redis, workers=2, open_time="500ms")
    up = burst(gw.port, 40)
    redis.freeze()
    try:
        during = burst(gw.port, 40)
    finally:
        redis.thaw()
    print(f"\n40-client burst with Redis up: slowest answer {max(s for _, s in up) * 1000:.1f} ms")
    statuses = [status for status, _ in during]
    slowest = max(seconds for _, seconds in during)
    print(f"\n40-client burst with Redis frozen: slowest answer {slowest * 1000:.1f} ms "
          f"(deadline {TIMEOUT_S * 1000:.0f} ms), median {sorted(s for _, s in during)[20] * 1000:.1f} ms")
    assert statuses == [200] * 40
    assert slowest < TIMEOUT_S + 1.0
