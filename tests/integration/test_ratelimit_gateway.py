"""Rate limits through the real gateway: exact admission across workers and instances,
the documented 429 answer, body-keyed limits, and Redis failures handled by policy."""

import json
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.redis_server import RedisServer
from tests.support.wait import wait_until


def limited_gateway(gateways, upstream, limits, ratelimit=None, workers=2, respond=False):
    route = {"name": "otp", "path_prefix": "/otp", "limits": limits}
    route.update({"respond": {"status": 200, "body": "sent\n"}} if respond else {"upstream": "up"})
    config = {"upstreams": [upstream.config()], "routes": [route]}
    if ratelimit:
        config["ratelimit"] = ratelimit
    return gateways.start(config, workers=workers)


def fire(urls_and_bodies, max_workers=8):
    """Send POSTs concurrently, each on its own connection; return the responses."""
    def one(item):
        url, body = item
        return httpx.post(url, json=body, timeout=10)
    with ThreadPoolExecutor(max_workers) as pool:
        return list(pool.map(one, urls_and_bodies))


@pytest.mark.parametrize("headers_on_allowed", [True, False])
def test_exactly_the_limit_is_admitted_across_workers(gateways, upstream, headers_on_allowed):
    """Without headers on admitted responses, admissions take the C check where it was built."""
    gw = limited_gateway(gateways, upstream, [{"key": ["ip"], "rate": "7/1m"}],
                         {"headers_on_allowed": headers_on_allowed}, workers=2)
    responses = fire([(gw.url("/otp/send"), {"n": i}) for i in range(40)])
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 7 + [429] * 33
    admitted = [r for r in responses if r.status_code == 200]
    assert all(("ratelimit" in r.headers) == headers_on_allowed for r in admitted)
    assert len(upstream.requests_with("/otp/send")) == 7  # refused requests never reach the upstream


def test_the_429_answer_is_as_documented(gateways, upstream):
    gw = limited_gateway(gateways, upstream, [{"key": ["header:X-API-Key"], "rate": "2/1m", "scope": "keys"}],
                         workers=1)
    with httpx.Client(base_url=gw.url(), headers={"X-API-Key": "k1"}) as client:
        first, second, third = (client.get("/otp/x") for _ in range(3))
    assert first.status_code == second.status_code == 200
    assert first.headers["RateLimit-Policy"] == '"keys";q=2;w=60'
    assert re.fullmatch(r'"keys";r=1;t=\d+', first.headers["RateLimit"])
    assert third.status_code == 429
    assert third.headers["Content-Type"] == "application/json"
    assert third.headers["RateLimit-Policy"] == '"keys";q=2;w=60'
    assert re.fullmatch(r'"keys";r=0;t=\d+', third.headers["RateLimit"])
    assert 1 <= int(third.headers["Retry-After"]) <= 60
    body = third.json()
    assert body == {"error": "rate limit exceeded", "status": 429, "request_id": third.headers["X-Request-ID"]}
    other = httpx.get(gw.url("/otp/x"), headers={"X-API-Key": "k2"})
    assert other.status_code == 200  # another key has its own budget
    assert httpx.get(gw.url("/otp/x")).status_code == 200  # no key: the limit does not apply


def test_one_time_passwords_per_phone_and_per_ip(gateways, upstream):
    limits = [{"key": ["body.phone"], "rate": "3/10m", "scope": "otp-phone"},
              {"key": ["ip"], "rate": "5/10m", "scope": "otp-ip"}]
    gw = limited_gateway(gateways, upstream, limits, workers=2)
    url = gw.url("/otp/send")
    phone_a = [r.status_code for r in fire([(url, {"phone": "+15550001"})] * 4, max_workers=1)]
    assert phone_a == [200, 200, 200, 429]  # per phone
    phone_b = [r.status_code for r in fire([(url, {"phone": "+15550002"})] * 3, max_workers=1)]
    assert phone_b == [200, 200, 429]  # the IP's budget of 5 is spent after 3 + 2
    sent = upstream.requests_with("/otp/send")
    assert len(sent) == 5
    assert json.loads(sent[-1].body) == {"phone": "+15550002"}  # the body went upstream unchanged


def test_a_body_keyed_limit_reads_a_chunked_body_and_forwards_it_whole(gateways, upstream):
    gw = limited_gateway(gateways, upstream, [{"key": ["body.phone"], "rate": "1/10m"}], workers=1)
    def chunks():
        yield b'{"phone": "+1555'
        yield b'0003", "pad": "' + b"x" * 100_000 + b'"}'
    first = httpx.post(gw.url("/otp/send"), content=chunks(), headers={"Content-Type": "application/json"})
    second = httpx.post(gw.url("/otp/send"), content=chunks(), headers={"Content-Type": "application/json"})
    assert (first.status_code, second.status_code) == (200, 429)
    assert upstream.requests_with("/otp/send")[0].body_len == 100_000 + 33


@pytest.fixture
def redis():
    with RedisServer() as server:
        yield server


def test_redis_store_is_exact_across_gateway_instances(gateways, upstream, redis):
    settings = {"store": "redis", "redis": {"url": redis.url, "timeout": "500ms"}}
    limits = [{"key": ["ip"], "rate": "11/1m", "algorithm": "sliding_window"}]
    first = limited_gateway(gateways, upstream, limits, settings, workers=2, respond=True)
    second = limited_gateway(gateways, upstream, limits, settings, workers=2, respond=True)
    items = [(gw.url("/otp/send"), {}) for _ in range(20) for gw in (first, second)]
    statuses = sorted(r.status_code for r in fire(items))
    assert statuses == [200] * 11 + [429] * 29


@pytest.mark.parametrize("policy,expected", [("allow", {200}), ("deny", {503}), ("local", {200, 429})])
def test_redis_down_applies_the_policy_quickly_and_limiting_resumes(gateways, upstream, redis, policy, expected):
    settings = {"store": "redis", "on_redis_failure": policy,
                "redis": {"url": redis.url, "timeout": "100ms"}, "breaker": {"failures": 2, "open_time": "500ms"}}
    gw = limited_gateway(gateways, upstream, [{"key": ["ip"], "rate": "3/1m", "fallback_rate": "2/1m"}],
                         settings, workers=1, respond=True)
    url = gw.url("/otp/send")
    assert [httpx.post(url).status_code for _ in range(4)] == [200, 200, 200, 429]

    redis.freeze()
    during = [httpx.post(url, timeout=10) for _ in range(6)]
    slowest = max(r.elapsed.total_seconds() for r in during)
    redis.thaw()
    assert {r.status_code for r in during} <= expected and all(r.status_code != 500 for r in during)
    if policy == "local":
        assert [r.status_code for r in during][:3] == [200, 200, 429]  # the local fallback rate of 2
    assert slowest < 1.0, f"a request waited {slowest:.2f}s with Redis frozen"
    if policy == "deny":
        assert during[-1].json()["error"] == "rate limiter unavailable"
        assert "Retry-After" in during[-1].headers

    redis.kill()
    assert {httpx.post(url, timeout=10).status_code for _ in range(3)} <= expected
    redis.start()  # empty: a killed Redis loses its counters
    wait_until(lambda: httpx.post(url, timeout=10) and int(redis.cli("DBSIZE").strip() or 0) > 0,
               "the breaker closes again and checks reach Redis", timeout_s=20)
    redis.cli("FLUSHALL")
    assert [httpx.post(url, timeout=10).status_code for _ in range(4)] == [200, 200, 200, 429]
