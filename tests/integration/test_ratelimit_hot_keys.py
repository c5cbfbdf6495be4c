"""Hot keys: a key taking most of a Redis node's calls shows in /metrics and in the log, bounded to the top 10."""

import httpx
import pytest

from fastgate.ratelimit import Limit, RateLimiter, RateLimitSettings, RedisSettings
from tests.support.metrics import scrape
from tests.support.redis_server import RedisServer
from tests.support.wait import wait_until

LIMIT = {"key": ["header:X-Client"], "rate": "1000/1m"}


@pytest.fixture
def redis():
    with RedisServer() as server:
        yield server


def redis_key_of(client: str) -> str:
    limiter = RateLimiter.create_shared(RateLimitSettings(store="redis", redis=RedisSettings(url="redis://x")))
    route = limiter.compile_route("api", [Limit(**LIMIT)])
    return route.keys(b"192.0.2.1", {b"x-client": client.encode()}.get, b"", None, None)[0].decode()


def test_a_hot_key_is_reported_in_metrics_and_the_log(gateways, redis):
    settings = {"store": "redis", "redis": {"url": redis.url, "timeout": "1s"},
                "hot_keys": {"share": 0.5, "window": "1s", "min_calls": 30}}
    route = {"name": "api", "path_prefix": "/api", "limits": [LIMIT], "respond": {"status": 200, "body": "ok\n"}}
    gw = gateways.start({"routes": [route], "ratelimit": settings}, workers=1)
    hot = redis_key_of("hot")
    node = f"127.0.0.1:{redis.port}"

    def hot_in_metrics() -> dict | None:
        with httpx.Client(base_url=gw.url()) as client:
            for n in range(80):  # 60 for one client, 20 spread over 20 others: its share is 3/4
                client.get("/api/x", headers={"X-Client": "hot" if n % 4 else f"cold-{n}"})
        found = scrape(gw)
        share = found.get(("fastgate_ratelimit_hot_key_share", frozenset({("key", hot), ("node", node)})))
        return found if share is not None and share > 0.5 else None

    found = wait_until(hot_in_metrics, "the hot key shows in /metrics")
    calls = {labels: v for (name, labels), v in found.items() if name == "fastgate_ratelimit_hot_key_calls"}
    assert len(calls) == 10  # 21 keys were used: only the 10 busiest are shown
    assert max(calls, key=calls.get) == frozenset({("key", hot), ("node", node)})
    wait_until(lambda: f"rate limit: hot key {hot} took" in gw.log_text(), "the hot key is logged")
    assert "cold-" not in gw.log_text() and redis_key_of("cold-1") not in gw.log_text()
