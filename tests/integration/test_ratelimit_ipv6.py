"""An "ip" limit counts an IPv6 client by its network ([ratelimit] ipv6_prefix_bits, /64 by default).

The gateway listens on [::1] as well as on 127.0.0.1. A test can only reach
it from ::1 (loopback holds no other IPv6 address, and tests do not change
the machine's addresses), so the grouping of several addresses of one /64
is shown by the unit tests (test_ratelimit_keys.py); here the real gateway
shows that an IPv6 client is counted under its network's key in Redis, that
the limit holds for it across workers, and that IPv4 clients keep budgets
of their own.
"""

import socket

import httpx
import pytest

from fastgate.ratelimit import Limit, RateLimiter, RateLimitSettings, RedisSettings
from tests.support.gateway import Gateway
from tests.support.redis_server import RedisServer

LIMIT = {"key": ["ip"], "rate": "3/1m", "scope": "per-client"}


def free_ipv6_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


class DualStackGateway(Gateway):
    """A gateway that also listens on [::1]."""

    def start(self) -> "DualStackGateway":
        self.v6_port = free_ipv6_port()
        return super().start()

    def full_config(self, config: dict) -> dict:
        full = super().full_config(config)
        full["listeners"] = [*full["listeners"], {"address": f"[::1]:{self.v6_port}"}]
        return full

    def v6_url(self, path: str) -> str:
        return f"http://[::1]:{self.v6_port}{path}"


@pytest.fixture
def redis():
    with RedisServer() as server:
        yield server


@pytest.fixture
def dual_stack(tmp_path):
    started: list[Gateway] = []

    def start(config: dict, workers: int) -> DualStackGateway:
        gateway = DualStackGateway(tmp_path / f"gw{len(started)}", config, workers)
        started.append(gateway)
        return gateway.start()

    yield start
    for gateway in started:
        gateway.stop()


def redis_key(redis: RedisServer, client_ip: bytes, prefix_bits: int) -> str:
    """The counter an "ip" request from ``client_ip`` goes to, as the gateway names it."""
    limiter = RateLimiter.create_shared(RateLimitSettings(
        store="redis", ipv6_prefix_bits=prefix_bits, redis=RedisSettings(url=redis.url)))
    route = limiter.compile_route("v6", [Limit(**LIMIT)])
    return route.keys(client_ip, {}.get, b"", None, None)[0].decode()


@pytest.mark.parametrize("prefix_bits", [64, 128])
def test_an_ipv6_client_is_counted_under_its_network(dual_stack, redis, prefix_bits):
    settings = {"store": "redis", "ipv6_prefix_bits": prefix_bits, "redis": {"url": redis.url, "timeout": "1s"}}
    route = {"name": "v6", "path_prefix": "/v6", "limits": [LIMIT], "respond": {"status": 200, "body": "ok\n"}}
    gateway = dual_stack({"routes": [route], "ratelimit": settings}, workers=2)
    statuses = []
    for _ in range(5):  # a new connection each time: the kernel spreads them over both workers
        statuses.append(httpx.get(gateway.v6_url("/v6/x"), timeout=10).status_code)
    assert statuses == [200, 200, 200, 429, 429]
    network_key, address_key = redis_key(redis, b"::1", prefix_bits), redis_key(redis, b"::1", 128)
    assert int(redis.cli("exists", network_key)) == 1
    assert (network_key == address_key) == (prefix_bits == 128)  # /64: "::/64", not "::1", names the counter
    assert int(redis.cli("dbsize")) == 1
    assert httpx.get(gateway.url("/v6/x"), timeout=10).status_code == 200  # 127.0.0.1: a budget of its own
