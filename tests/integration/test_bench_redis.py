"""bench/redis.py's ``start_for_limit``: the Redis that bench.run, bench.icount and bench.share start for a
scenario's rate limit, as fastgate then reaches it through the one port it is given."""

import asyncio

import pytest
import uvloop

from bench.redis import start_for_limit
from bench.scenarios import SCENARIOS
from fastgate.runtime.resp_cluster import RespCluster


def cluster_primaries(port: int) -> list[str]:
    async def learn():
        cluster = RespCluster([f"127.0.0.1:{port}"], "", "", None, 2.0, asyncio.get_running_loop())
        try:
            await cluster.learn()
            return cluster.primaries()
        finally:
            await cluster.close()

    return uvloop.run(learn())


@pytest.mark.parametrize("scenario", ["limit-redis-cluster", "limit-redis", "limit-local"])
def test_each_limit_scenario_gets_its_redis(scenario, tmp_path):
    procs, ports = start_for_limit(SCENARIOS[scenario].limit, tmp_path / "redis", None)
    try:
        if scenario == "limit-redis-cluster":  # one node given, the whole cluster found through it
            assert sorted(cluster_primaries(ports[0])) == sorted(f"127.0.0.1:{port}" for port in ports)
            assert len(ports) == 3
        elif scenario == "limit-redis":
            assert len(procs) == len(ports) == 1
        else:
            assert (procs, ports) == ([], [])
    finally:
        for proc in procs:
            proc.stop()
