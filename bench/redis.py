"""A redis-server for the Redis-backed rate-limit scenario, and its count of script calls."""

import subprocess
from pathlib import Path

from bench.procs import Proc, free_port, start_listening


def start_redis(workdir: Path, cpus: tuple[int, ...] | None) -> tuple[Proc, int]:
    """Start redis-server (no persistence) under ``workdir``; return it and its port once it listens."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "redis.log"
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(workdir)]
    return start_listening("redis", argv, log, cpus, port), port


def script_calls(port: int) -> int:
    """EVALSHA and EVAL calls the server has answered: fastgate sends one per batch of checks."""
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "commandstats"], capture_output=True,
                         text=True, timeout=10, check=True).stdout
    calls = 0
    for line in out.splitlines():
        if line.startswith(("cmdstat_evalsha:", "cmdstat_eval:")):
            calls += int(line.split("calls=", 1)[1].split(",", 1)[0])
    return calls
