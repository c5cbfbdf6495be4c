"""redis-servers for the Redis-backed rate-limit scenarios (one server, or a 3-node cluster),
and their count of script calls."""

import subprocess
import time
from pathlib import Path

from bench.procs import Proc, free_port, start_listening


def start_redis(workdir: Path, cpus: tuple[int, ...] | None, cluster: bool = False) -> tuple[Proc, int]:
    """Start redis-server (no persistence) under ``workdir``, in cluster mode if asked; return it
    and its port once it listens."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "redis.log"
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(workdir)]
    if cluster:  # its own bus port: the default, port + 10000, fails for a port above 55535
        argv += ["--cluster-enabled", "yes", "--cluster-config-file", str(workdir / "nodes.conf"),
                 "--cluster-port", str(free_port())]
    return start_listening("redis", argv, log, cpus, port), port


def start_redis_cluster(workdir: Path, cpus: tuple[int, ...] | None, nodes: int = 3) -> tuple[list[Proc], list[int]]:
    """Start ``nodes`` cluster-mode redis-servers and join them into one cluster (no replicas, all
    slots covered); return them and their ports once the cluster reports ok."""
    started = [start_redis(workdir / f"node{i}", cpus, cluster=True) for i in range(nodes)]
    procs, ports = [proc for proc, _ in started], [port for _, port in started]
    try:
        subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{port}" for port in ports],
                        "--cluster-replicas", "0", "--cluster-yes"], capture_output=True, text=True,
                       timeout=30, check=True)
        deadline = time.monotonic() + 20
        while not all("cluster_state:ok" in _cli(port, "CLUSTER", "INFO") for port in ports):
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis cluster did not report cluster_state:ok within 20 s")
            time.sleep(0.1)
    except BaseException:
        for proc in procs:
            proc.stop()
        raise
    return procs, ports


def start_for_limit(limit: str, workdir: Path, cpus: tuple[int, ...] | None) -> tuple[list[Proc], list[int]]:
    """The Redis that a scenario's ``limit`` (Scenario.limit) keeps its counters in: one server for
    "redis", a 3-node cluster for "redis-cluster", none otherwise. Its processes (the caller stops
    them) and ports; fastgate is given the first port (a cluster's other nodes it discovers)."""
    if limit == "redis":
        proc, port = start_redis(workdir, cpus)
        return [proc], [port]
    if limit == "redis-cluster":
        return start_redis_cluster(workdir, cpus)
    return [], []


def _cli(port: int, *command: str) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), *command], capture_output=True, text=True, timeout=10,
                          check=True).stdout


def script_calls(ports: list[int]) -> int:
    """EVALSHA and EVAL calls the servers have answered: fastgate sends one per batch of checks
    (per hash tag in a cluster)."""
    calls = 0
    for port in ports:
        for line in _cli(port, "INFO", "commandstats").splitlines():
            if line.startswith(("cmdstat_evalsha:", "cmdstat_eval:")):
                calls += int(line.split("calls=", 1)[1].split(",", 1)[0])
    return calls
