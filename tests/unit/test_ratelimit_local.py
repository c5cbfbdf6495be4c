"""The local store in one process: all limits of a route counted together, a full table, the stats."""

import time

from fastgate.ratelimit import Limit, RateLimiter, RateLimitSettings
from fastgate.ratelimit.shared_table import SharedTable

JSON = b"application/json"


def no_headers(name: bytes) -> None:
    return None


def decide(route, ip: bytes, body: bytes | None = None):
    decisions = []
    route.check(route.keys(ip, no_headers, b"", body, JSON), decisions.append)
    assert len(decisions) == 1  # the local store answers before check() returns
    return decisions[0]


def test_a_request_denied_by_one_limit_consumes_none():
    limiter = RateLimiter.create_shared(RateLimitSettings(local_capacity=1024))
    otp = limiter.compile_route("otp", [Limit(key=["body.phone"], rate="1/d", scope="phone"),
                                        Limit(key=["ip"], rate="3/d", scope="ip")])
    phone = lambda n: b'{"phone": "+1555000%d"}' % n  # noqa: E731
    assert decide(otp, b"192.0.2.1", phone(1)).allowed
    for _ in range(5):  # the phone limit denies: the IP budget must not shrink
        d = decide(otp, b"192.0.2.1", phone(1))
        assert (d.allowed, d.status) == (False, 429)
    assert [decide(otp, b"192.0.2.1", phone(n)).allowed for n in (2, 3, 4)] == [True, True, False]
    assert decide(otp, b"192.0.2.2", phone(4)).allowed
    # No phone in the body: only the IP limit applies.
    assert decide(otp, b"192.0.2.2", b'{"email": "x@example.com"}').allowed
    s = limiter.stats
    assert (s.checks, s.allowed, s.limited) == (11, 5, 6)


def test_a_full_table_drops_the_key_expiring_first_and_keeps_working():
    table = SharedTable(64)
    assert table.capacity == 64 and SharedTable.rounded(100) == 128
    now = time.monotonic_ns() // 1000
    assert table.acquire()
    try:
        for n in range(200):
            record = table.record(b"key-%d" % n, now)
            assert table.state(record, 2, now) is None
            table.write(record, (now + 10_000_000 + n, n))
        assert table.evictions > 0
        record = table.record(b"key-199", now)  # the newest keys are still there
        assert table.state(record, 2, now) == (now + 10_000_000 + 199, 199)
        assert table.state(record, 2, now + 10_000_000 + 199) is None  # expired
    finally:
        table.release()


def test_headers_follow_the_settings():
    legacy = RateLimiter.create_shared(RateLimitSettings(headers="legacy", headers_on_allowed=False))
    route = legacy.compile_route("r", [Limit(key=["ip"], rate="1/m")])
    first, second = decide(route, b"192.0.2.9"), decide(route, b"192.0.2.9")
    assert first.headers == b""
    assert second.headers.startswith(b"\r\nRateLimit-Limit: 1\r\nRateLimit-Remaining: 0\r\nRateLimit-Reset: ")
    assert b"\r\nRetry-After: " in second.headers and 0 < second.retry_after_s <= 60


def test_a_reload_keeps_the_local_counters_when_the_capacity_is_unchanged():
    old = RateLimiter.create_shared(RateLimitSettings(local_capacity=1000))
    assert decide(old.compile_route("r", [Limit(key=["ip"], rate="1/d")]), b"192.0.2.3").allowed
    same = RateLimiter.create_shared(RateLimitSettings(local_capacity=1024), previous=old)
    assert same.table is old.table
    assert not decide(same.compile_route("r", [Limit(key=["ip"], rate="1/d")]), b"192.0.2.3").allowed
    bigger = RateLimiter.create_shared(RateLimitSettings(local_capacity=4096), previous=old)
    assert bigger.table is not old.table
    assert decide(bigger.compile_route("r", [Limit(key=["ip"], rate="1/d")]), b"192.0.2.3").allowed
