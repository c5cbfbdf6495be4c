"""Two gateways in fallback together admit about the fallback rate, not twice it ([ratelimit] instances).

Both gateways share one Redis; the limit is 20 per minute in Redis and 10
per minute while Redis is unavailable. Redis is killed, and one client
sends 30 requests to each gateway: each gateway decides alone, from its
own shared memory, so with ``instances`` each admits its share (5) and the
two together the fallback rate (10). The count is given (2) or learned from
the gateways' registrations in Redis while it was up ("auto").
"""

import httpx
import pytest

from tests.support.redis_server import RedisServer
from tests.support.wait import wait_until


@pytest.fixture
def redis():
    with RedisServer() as server:
        yield server


def start_gateway(gateways, redis: RedisServer, instances):
    settings = {"store": "redis", "instances": instances, "registration_ttl": "3s",
                "redis": {"url": redis.url, "timeout": "200ms"}, "breaker": {"failures": 1, "open_time": "30s"}}
    route = {"name": "api", "path_prefix": "/api", "respond": {"status": 200, "body": "ok\n"},
             "limits": [{"key": ["ip"], "rate": "20/1m", "fallback_rate": "10/1m"}]}
    return gateways.start({"routes": [route], "ratelimit": settings}, workers=2)


@pytest.mark.parametrize("instances", [1, 2, "auto"])
def test_gateways_in_fallback_split_the_fallback_rate(gateways, redis, instances):
    first, second = (start_gateway(gateways, redis, instances) for _ in range(2))
    if instances == "auto":
        for gateway in (first, second):
            wait_until(lambda: "2 gateways share the Redis budgets" in gateway.log_text(),
                       "each gateway learned that two gateways share the budgets")
        assert int(redis.cli("zcard", "fg:rl:instances")) == 2
    redis.kill()
    admitted = [sum(httpx.get(gateway.url("/api/x"), timeout=10).status_code == 200 for _ in range(30))
                for gateway in (first, second)]
    expected = 10 if instances == 1 else 5
    assert admitted == [expected, expected]
