"""The Redis store against a 3-node Redis Cluster, a sentinel, a password, an ACL user and TLS."""

import asyncio

import pytest
import uvloop

from fastgate.ratelimit import Limit, RateLimiter, RateLimitSettings, RedisSettings
from tests.support.redis_server import RedisClusterServers, RedisSentinel, RedisServer

JSON = b"application/json"


def no_headers(name: bytes) -> None:
    return None


def limiter_for(redis: RedisSettings) -> RateLimiter:
    return RateLimiter.create_shared(RateLimitSettings(store="redis", on_redis_failure="deny", redis=redis))


async def statuses(route, requests: list[tuple[bytes, bytes | None]]) -> list[int]:
    """Submit all requests in one loop iteration; their statuses in order."""
    loop = asyncio.get_running_loop()
    futures = []
    for ip, body in requests:
        future = loop.create_future()
        route.check(route.keys(ip, no_headers, b"", body, JSON), future.set_result)
        futures.append(future)
    async with asyncio.timeout(10):
        return [d.status for d in await asyncio.gather(*futures)]


def test_cluster_spreads_per_key_counters_and_keeps_mixed_checks_atomic():
    with RedisClusterServers() as cluster:
        limiter = limiter_for(RedisSettings(cluster_nodes=cluster.addresses[:1], timeout=1.0))
        api = limiter.compile_route("api", [Limit(key=["ip"], rate="5/d")])
        otp = limiter.compile_route("otp", [Limit(key=["body.phone"], rate="3/d", scope="otp-phone"),
                                            Limit(key=["ip"], rate="5/d", scope="otp-ip")])
        phone = lambda n: b'{"phone": "+1555%04d"}' % n  # noqa: E731

        async def scenario():
            limiter.attach(asyncio.get_running_loop())
            many = await statuses(api, [(b"10.1.0.%d" % n, None) for n in range(60)])
            assert many == [200] * 60
            trips = limiter.stats.redis_round_trips
            assert await statuses(api, [(b"10.1.0.1", None)] * 6) == [200] * 4 + [429] * 2
            assert limiter.stats.redis_round_trips == trips + 1
            first = await statuses(otp, [(b"10.2.0.1", phone(1))] * 4)
            assert first == [200] * 3 + [429]  # the phone's 3; the IP spent 3 of 5
            assert await statuses(otp, [(b"10.2.0.1", phone(n)) for n in (2, 3, 4)]) == [200, 200, 429]
            await limiter.close()

        uvloop.run(scenario())
        holding = [int(node.cli("dbsize")) for node in cluster.nodes]
        assert sum(holding) == 60 + 3 + 1  # 60 IPs; 3 phones and 1 IP of the OTP group (phone 4 was denied)
        assert sum(1 for n in holding if n) >= 2  # per-IP counters live on several nodes
        otp_keys = sorted(len(node.cli("keys", "fg:rl:otp-*").split()) for node in cluster.nodes)
        assert otp_keys == [0, 0, 4]  # one hash tag for the whole phone+IP group
        assert limiter.stats.redis_round_trips < limiter.stats.redis_checks


def test_sentinel_leads_to_the_primary():
    with RedisServer() as primary, RedisSentinel(primary) as sentinel:
        limiter = limiter_for(RedisSettings(sentinel_nodes=[sentinel.address], sentinel_service=sentinel.service,
                                            timeout=1.0))
        route = limiter.compile_route("sentinel", [Limit(key=["ip"], rate="2/d")])

        async def scenario():
            limiter.attach(asyncio.get_running_loop())
            result = await statuses(route, [(b"10.4.0.1", None)] * 3)
            await limiter.close()
            return result

        assert uvloop.run(scenario()) == [200, 200, 429]
        assert int(primary.cli("dbsize")) == 1


@pytest.mark.parametrize("access", ["password", "acl_user", "tls", "wrong_password"])
def test_authenticated_and_encrypted_connections(access):
    with RedisServer(password="s3cret", tls=access == "tls") as server:
        if access == "acl_user":
            server.cli("acl", "setuser", "fastgate", "on", ">gate-pw", "~fg:rl:*", "+@all")
            redis = RedisSettings(url=f"redis://127.0.0.1:{server.port}", username="fastgate", password="gate-pw")
        elif access == "tls":
            redis = RedisSettings(url=server.url, tls_ca_file=server.ca_file)
        elif access == "wrong_password":
            redis = RedisSettings(url=f"redis://127.0.0.1:{server.port}", password="wrong")
        else:
            redis = RedisSettings(url=server.url)
        limiter = limiter_for(redis)
        route = limiter.compile_route("auth", [Limit(key=["ip"], rate="2/d")])

        async def scenario():
            limiter.attach(asyncio.get_running_loop())
            result = await statuses(route, [(b"10.3.0.1", None)] * 3)
            await limiter.close()
            return result

        result = uvloop.run(scenario())
        if access == "wrong_password":
            assert result == [503] * 3 and limiter.stats.redis_failures == 1
        else:
            assert result == [200, 200, 429]
            assert int(server.cli("dbsize")) == 1
