"""fastgate's Redis Cluster client (runtime/resp_cluster.py) and the rate limiter over it, against a
real 3-primary cluster: key slots as Redis computes them, calls grouped by node, MOVED and ASK
followed without running a call twice, a dead primary failing its own calls only."""

import asyncio

import pytest
import uvloop

from fastgate.ratelimit import Limit, RateLimiter, RateLimitSettings, RedisSettings
from fastgate.runtime.resp import encode
from fastgate.runtime.resp_cluster import RespCluster, key_slot
from tests.support.redis_server import RedisClusterServers

KEYS = [b"", b"a", b"foo", b"somekey", b"123456789", b"{user1000}.following", b"{user1000}.followers",
        b"foo{}{bar}", b"foo{{bar}}zap", b"foo{bar}{zap}", b"{}", b"{", b"}", b"}{", b"a{b", b"{a}", b"x{a}y",
        b"fg:rl:otp-phone:{3q2+7w}:0", "caf\u00e9-\u2603".encode(), bytes(range(256)), b"k" * 1000]


def cluster_client(cluster: RedisClusterServers) -> RespCluster:
    return RespCluster(cluster.addresses[:1], "", "", None, 2.0, asyncio.get_running_loop())


def incr(key: str) -> tuple[int, bytes]:
    return key_slot(key.encode()), encode([b"INCR", key.encode()])


def key_on(cluster: RedisClusterServers, node, prefix: str) -> str:
    """A key whose slot ``node`` serves now."""
    ranges = cluster.slot_ranges()[node]
    return next(key for n in range(100_000) if any(key_slot((key := f"{prefix}-{n}").encode()) in part
                                                     for part in ranges))


def test_key_slots_are_those_of_cluster_keyslot():
    with RedisClusterServers(masters=3) as cluster:
        async def slots_by_redis():
            client = cluster_client(cluster)
            try:  # CLUSTER KEYSLOT has no key: any node answers it (slot 0's here)
                return await client.execute([0] * len(KEYS), [encode([b"CLUSTER", b"KEYSLOT", k]) for k in KEYS])
            finally:
                await client.close()

        assert uvloop.run(slots_by_redis()) == [key_slot(key) for key in KEYS]


def test_calls_go_to_the_node_of_their_slot_and_a_dead_primary_fails_its_own_only():
    with RedisClusterServers(masters=3) as cluster:
        primaries = cluster.primaries()
        keys = [key_on(cluster, node, f"k{i}") for i, node in enumerate(primaries)]

        async def scenario():
            client = cluster_client(cluster)
            try:
                calls = [incr(key) for key in keys * 3]
                first = await client.execute(*zip(*calls))
                names = [client.node_of_slot(key_slot(key.encode())) for key in keys]
                primaries[2].kill()
                second = await client.execute(*zip(*calls))
                return first, names, second
            finally:
                await client.close()

        first, names, second = uvloop.run(scenario())
        assert first == [1, 1, 1, 2, 2, 2, 3, 3, 3]
        assert names == [f"127.0.0.1:{node.port}" for node in primaries]
        assert second[:2] == [4, 4] and second[3:5] == [5, 5] and second[6:8] == [6, 6]
        assert all(isinstance(second[i], (ConnectionError, OSError)) for i in (2, 5, 8)), second
        for node, key in zip(primaries[:2], keys[:2]):
            assert node.cli("get", key).strip() == "6"


def slots_asked(cluster: RedisClusterServers) -> int:
    """CLUSTER SLOTS calls the nodes have answered (each is one learning of the map)."""
    return sum(node.command_calls("cluster|slots") for node in cluster.live())


def test_moved_is_followed_once_the_map_takes_the_slot_and_is_learned_again():
    with RedisClusterServers(masters=3) as cluster:
        source, target, _ = cluster.primaries()
        key = key_on(cluster, source, "moved")
        slot = key_slot(key.encode())

        async def scenario():
            client = cluster_client(cluster)
            try:
                before = await client.execute(*zip(incr(key)))
                learned = slots_asked(cluster)
                cluster.start_migration(slot, source, target, [key])
                cluster.assign_slot(slot, target)
                after = await client.execute(*zip(incr(key), incr(key)))
                owner = client.node_of_slot(slot)
                await client.execute(*zip(incr(key)))  # waits for the learning MOVED started
                return before, after, owner, slots_asked(cluster) - learned
            finally:
                await client.close()

        before, after, owner, learnings = uvloop.run(scenario())
        assert (before, after) == ([1], [2, 3])  # each INCR ran exactly once, on the new owner
        assert owner == f"127.0.0.1:{target.port}"
        assert learnings == 1
        assert target.cli("get", key).strip() == "4"
        assert source.command_calls("incr") == 1  # the first INCR; MOVED ones did not run there


def test_ask_sends_asking_and_the_call_to_the_target_once_and_keeps_the_map():
    with RedisClusterServers(masters=3) as cluster:
        source, target, _ = cluster.primaries()
        tag = key_on(cluster, source, "asked")
        moved_key, staying_key = f"{{{tag}}}.moved", f"{{{tag}}}.staying"  # one slot
        slot = key_slot(tag.encode())

        async def scenario():
            client = cluster_client(cluster)
            try:
                await client.execute(*zip(incr(moved_key), incr(staying_key)))
                cluster.start_migration(slot, source, target, [moved_key])
                during = await client.execute(*zip(incr(moved_key), incr(staying_key), incr(moved_key)))
                return during, client.node_of_slot(slot)
            finally:
                await client.close()

        during, owner = uvloop.run(scenario())
        assert during == [2, 2, 3]  # the moved key counted on the target, the other still on the source
        assert owner == f"127.0.0.1:{source.port}"  # ASK does not change the map
        assert [int(node.cli("cluster", "countkeysinslot", str(slot))) for node in (source, target)] == [1, 1]
        assert target.command_calls("asking") == 2
        assert target.command_calls("incr") == 2  # each redirected INCR ran once


def test_a_rate_limit_check_whose_slot_moved_is_decided_by_redis():
    """Through the limiter with the deny policy: a redirection not followed would answer 503."""
    with RedisClusterServers(masters=3) as cluster:
        source, target, other = cluster.primaries()
        limiter = RateLimiter.create_shared(RateLimitSettings(
            store="redis", on_redis_failure="deny", redis=RedisSettings(cluster_nodes=cluster.addresses[:1],
                                                                        timeout=2.0)))
        route = limiter.compile_route("api", [Limit(key=["ip"], rate="3/d")])
        ips = [b"10.9.0.%d" % n for n in range(200)]

        def keys_of(ip: bytes) -> list[bytes]:
            return route.keys(ip, lambda name: None, b"", None, None)

        moved_ip = next(ip for ip in ips if cluster.owner_of(keys_of(ip)[0].decode()) is source)
        asked_ip = next(ip for ip in ips if ip != moved_ip and cluster.owner_of(keys_of(ip)[0].decode()) is source
                        and key_slot(keys_of(ip)[0]) != key_slot(keys_of(moved_ip)[0]))

        async def statuses(requests: list[bytes]) -> list[int]:
            loop = asyncio.get_running_loop()
            futures = []
            for ip in requests:
                future = loop.create_future()
                route.check(keys_of(ip), future.set_result)
                futures.append(future)
            async with asyncio.timeout(10):
                return [d.status for d in await asyncio.gather(*futures)]

        async def scenario():
            limiter.attach(asyncio.get_running_loop())
            try:
                spent = await statuses([moved_ip, asked_ip] * 2)
                moved_slot, asked_slot = key_slot(keys_of(moved_ip)[0]), key_slot(keys_of(asked_ip)[0])
                cluster.start_migration(moved_slot, source, target, [keys_of(moved_ip)[0].decode()])
                cluster.assign_slot(moved_slot, target)
                cluster.start_migration(asked_slot, source, other, [keys_of(asked_ip)[0].decode()])
                return spent, await statuses([moved_ip, asked_ip] * 2)
            finally:
                await limiter.close()

        spent, after = uvloop.run(scenario())
        assert spent == [200] * 4
        assert after == [200, 200, 429, 429]  # the third request of each: 200; the fourth: the budget of 3 is spent
        assert other.command_calls("asking") == 1  # one script call for the asked key's two checks
        assert limiter.stats.redis_failures == 0


@pytest.mark.parametrize("access", ["password", "acl_user", "wrong_password"])
def test_a_cluster_that_wants_credentials(access):
    with RedisClusterServers(masters=3, password="s3cret") as cluster:
        if access == "acl_user":
            for node in cluster.nodes:
                node.cli("acl", "setuser", "fastgate", "on", ">gate-pw", "~fg:rl:*", "+@all")
        username, password = {"password": ("", "s3cret"), "acl_user": ("fastgate", "gate-pw"),
                              "wrong_password": ("", "wrong")}[access]
        limiter = RateLimiter.create_shared(RateLimitSettings(
            store="redis", on_redis_failure="deny",
            redis=RedisSettings(cluster_nodes=cluster.addresses[:1], username=username, password=password,
                                timeout=2.0)))
        route = limiter.compile_route("auth", [Limit(key=["ip"], rate="2/d")])

        async def scenario():
            limiter.attach(asyncio.get_running_loop())
            loop = asyncio.get_running_loop()
            statuses = []
            try:
                for ip in [b"10.8.0.%d" % n for n in range(4)] * 3:  # 4 keys, most likely on 3 nodes
                    future = loop.create_future()
                    route.check(route.keys(ip, lambda name: None, b"", None, None), future.set_result)
                    statuses.append(future)
                async with asyncio.timeout(10):
                    return [d.status for d in await asyncio.gather(*statuses)]
            finally:
                await limiter.close()

        result = uvloop.run(scenario())
        if access == "wrong_password":
            assert result == [503] * 12
        else:
            assert result == [200] * 8 + [429] * 4
            assert sum(int(node.cli("dbsize")) for node in cluster.nodes) == 4
