"""Memory of a proxy: RSS of its master and workers idle, then holding many idle
keep-alive client connections (opened by idle_conns.py)."""

import sys
import time
from pathlib import Path

from bench import procfs
from bench.peers import Proxy, ProxySpec, Running
from bench.probe import probe
from bench.procs import Pinning, Proc, ProcError, free_port
from bench.scenarios import SCENARIOS

OPEN_TIMEOUT_S = 120.0
_CLIENT = Path(__file__).with_name("idle_conns.py")


def _rss(server: Running) -> dict:
    return {
        "master_kib": procfs.rss_kib(server.master_pid) if server.master_pid else None,
        "workers_kib": [procfs.rss_kib(pid) for pid in server.worker_pids],
    }


def total_kib(rss: dict) -> int:
    """Master and workers together."""
    return (rss["master_kib"] or 0) + sum(rss["workers_kib"])


def _wait_ready(client: Proc) -> tuple[int, int]:
    """(opened, failed) once the client printed its ``ready`` line."""
    deadline = time.monotonic() + OPEN_TIMEOUT_S
    while True:
        for line in client.log_path.read_text().splitlines():
            if line.startswith("ready "):
                _, opened, failed = line.split()
                return int(opened), int(failed)
        if not client.alive() or time.monotonic() > deadline:
            raise ProcError(f"idle_conns.py did not get its connections open\n{client.log_tail()}")
        time.sleep(0.1)


def measure_memory(proxy: Proxy, origin_port: int, connections: int,
                   pin: Pinning | None, workdir: Path) -> dict:
    """RSS idle and loaded, and KiB per held connection, of ``proxy`` with one worker.

    Raises ProcError if the proxy does not start, crashes, or does not keep
    every connection.
    """
    spec = ProxySpec(workdir, free_port(), origin_port, 1, frozenset(), connections)
    server = proxy.start(spec, pin.proxy if pin else None)
    with server.proc:
        scenario = SCENARIOS["small"]
        probe(spec.port, scenario, server.features)
        idle = _rss(server)
        argv = [sys.executable, str(_CLIENT), "--port", str(spec.port),
                "--connections", str(connections), "--path", scenario.path]
        with Proc("idle_conns", argv, workdir / "idle_conns.log", pin.load if pin else None) as client:
            opened, failed = _wait_ready(client)
            loaded = _rss(server)
        server.check_workers()
    if failed:
        raise ProcError(f"{proxy.name} kept {opened} of {connections} idle connections")
    return {
        "idle": idle,
        "loaded": loaded,
        "kib_per_connection": (total_kib(loaded) - total_kib(idle)) / connections,
    }
