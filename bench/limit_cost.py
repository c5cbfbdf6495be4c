"""``python -m bench.limit_cost``: what one rate-limit check costs, in process, without the network.

Runs N checks through the interface the request path uses (``RouteLimits.keys``
then ``RouteLimits.check`` with a callback, as ``_check_limits`` in
fastgate/transport/h1_server.py calls them) on the bench's limit: one per-IP
limit that never triggers, no headers on admitted answers.

- ``--store local``: the shared-memory table, one check after another.
- ``--store redis``: a redis-server started here (outside valgrind); checks
  are submitted ``--batch`` at a time in one loop iteration, then the loop
  runs until all are decided, so each round trip carries one batch (the
  gateway under bench load sends batches of about 20).

Without ``--callgrind`` it prints wall-clock microseconds per check (noisy on
a shared machine). With ``--callgrind`` it runs itself twice under
``valgrind --tool=callgrind`` (N and 2N checks) and prints the difference in
instructions divided by N: the cost of one check, start-up excluded, the
same on every run. Use that figure to compare two versions of the code.
"""

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fastgate.ratelimit import Limit, RateLimiter, RateLimitSettings, RedisSettings
from fastgate.wire.h1 import header_value

RAW_HEAD = b"GET /small HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\n\r\n"
QUERY = b""
CLIENT_IP = b"127.0.0.1"


class Request:
    """Stands for a client connection: receives the decision like ``_limit_decided``."""

    __slots__ = ("allowed", "wanted", "reached")

    def __init__(self) -> None:
        self.allowed = 0
        self.wanted = 0
        self.reached: asyncio.Future | None = None
        """Resolved once ``wanted`` checks were admitted (Redis: the end of a batch)."""

    def decided(self, decision) -> None:
        if decision.allowed:
            self.allowed += 1
            if self.allowed == self.wanted and self.reached is not None:
                self.reached.set_result(None)


def _limiter(store: str, redis_port: int) -> tuple[RateLimiter, object]:
    settings = RateLimitSettings(headers_on_allowed=False)
    if store == "redis":
        settings = RateLimitSettings(headers_on_allowed=False, store="redis", on_redis_failure="deny",
                                     redis=RedisSettings(url=f"redis://127.0.0.1:{redis_port}", timeout=10.0))
    limiter = RateLimiter.create_shared(settings)
    return limiter, limiter.compile_route("bench", [Limit(key=["ip"], rate="1000000/s")])


def _check(limits, request: Request) -> None:
    raw = RAW_HEAD
    keys = limits.keys(CLIENT_IP, lambda name: header_value(raw, name), QUERY, None, None)
    limits.check(keys, request.decided)


def run_local(checks: int) -> float:
    limiter, limits = _limiter("local", 0)
    request = Request()
    started = time.perf_counter()
    for _ in range(checks):
        _check(limits, request)
    elapsed = time.perf_counter() - started
    assert request.allowed == checks, "a check was not admitted"
    return elapsed


def run_redis(checks: int, batch: int, port: int) -> float:
    import uvloop

    limiter, limits = _limiter("redis", port)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        limiter.attach(loop)
        request = Request()
        _check(limits, request)  # connect and load the script before measuring
        while request.allowed < 1:
            await asyncio.sleep(0.001)
        request.allowed = 0
        started = time.perf_counter()
        for done in range(batch, checks + batch, batch):
            for _ in range(min(batch, checks - done + batch)):
                _check(limits, request)
            while request.allowed < min(done, checks):
                await asyncio.sleep(0)
        elapsed = time.perf_counter() - started
        stats = limiter.stats
        assert stats.unavailable == 0, "Redis did not answer in time"
        await limiter.close()
        return elapsed

    return uvloop.run(main())


def _measure(args: argparse.Namespace, checks: int) -> float:
    if args.store == "local":
        return run_local(checks)
    return run_redis(checks, args.batch, args.redis_port)


def _instructions(args: argparse.Namespace, checks: int) -> int:
    """Instructions of one run of this tool with ``checks`` checks, under callgrind."""
    with tempfile.TemporaryDirectory(prefix="limit-cost-") as tmp:
        out = Path(tmp) / "callgrind.out"
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
                "bench.limit_cost", "--store", args.store, "--checks", str(checks), "--batch", str(args.batch),
                "--redis-port", str(args.redis_port), "--quiet"]
        subprocess.run(argv, check=True, capture_output=True, env=dict(os.environ, PYTHONHASHSEED="0"))
        m = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        assert m, "no total in the callgrind output"
        return int(m.group(1))


def _with_redis(args: argparse.Namespace, run) -> None:
    if args.store != "redis" or args.redis_port:
        run()
        return
    from bench.redis import start_redis

    with tempfile.TemporaryDirectory(prefix="limit-cost-redis-") as tmp:
        redis, args.redis_port = start_redis(Path(tmp), None)
        try:
            run()
        finally:
            redis.stop()


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.limit_cost", description=__doc__.splitlines()[0])
    p.add_argument("--store", choices=("local", "redis"), default="local")
    p.add_argument("--checks", type=int, default=20000, help="checks to run (default %(default)s)")
    p.add_argument("--batch", type=int, default=20, help="redis: checks per round trip (default %(default)s)")
    p.add_argument("--callgrind", action="store_true", help="count instructions per check under valgrind")
    p.add_argument("--redis-port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    def run() -> None:
        if args.callgrind:
            if shutil.which("valgrind") is None:
                sys.exit("valgrind is not installed (apt-get install valgrind)")
            n = args.checks
            one, two = _instructions(args, n), _instructions(args, 2 * n)
            print(f"{args.store}: {(two - one) / n:.0f} instructions per check ({n} checks per run)")
            return
        elapsed = _measure(args, args.checks)
        if not args.quiet:
            print(f"{args.store}: {elapsed / args.checks * 1e6:.2f} us per check ({args.checks} checks)")

    _with_redis(args, run)


if __name__ == "__main__":
    main(sys.argv[1:])
