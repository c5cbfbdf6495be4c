"""``python -m bench.share``: a scenario's fastgate against its baseline, both on one CPU at once.

``python -m bench`` runs a proxy and its baseline one after the other, so a
pair of runs meets two different machines: on a shared 2-CPU machine one
run's req/s differs from the next one's by ±7% (A/A: fastgate against an
identical fastgate), too much to judge a 5% budget such as issue 6's. Here
both run at the same time, pinned to the same CPU, each loaded by its own
wrk (the origin and both wrk on the other CPUs). The kernel shares that CPU
between the two workers, and whatever slows the machine slows both alike,
so their ratio of requests (and of CPU time per request) says how much more
one costs than the other. ``--control`` runs the baseline against an
identical copy of itself instead (A/A): its ratio is the method's own error,
1.00 ± 0.01 here.

The proxy started first measured ~1% slower in A/A runs (the order of start
matters, through where the kernel and the allocator put things), so every
scenario runs twice, in both orders, and the figure is the median over
both. It is a measure of relative CPU cost, not of throughput alone: a
feature that only waited (without using the CPU) would not show.

    python -m bench.share                          # observe and limit-local
    python -m bench.share --scenarios observe --rounds 12 --duration 3
    python -m bench.share --scenarios observe --control
"""

import argparse
import shutil
import statistics
import sys
import threading
from contextlib import ExitStack
from pathlib import Path

from bench.peers.base import ProxySpec
from bench.peers.fastgate import Fastgate
from bench.peers.origin import start_origin
from bench.procfs import cpu_us
from bench.procs import Pinning, free_port, make_workdir, raise_fd_limit
from bench.redis import start_for_limit
from bench.run import scenario_features
from bench.scenarios import SCENARIOS, Scenario
from bench.wrk import run_wrk


def _worker_cpu_us(pid: int) -> float:
    return sum(cpu_us(pid))


def _rounds(scenario: Scenario, peers: list[tuple[Fastgate, frozenset[str]]], test: str, base: str, rounds: int,
            duration_s: int, connections: int, pin: Pinning, origin_port: int, redis_port: int,
            workdir: Path) -> list[tuple[float, float]]:
    """(requests ratio, CPU-per-request ratio) of peer ``test`` / peer ``base`` for each round; ``peers``
    (each with its gateway features) are started in order."""
    with ExitStack() as stack:
        urls, pids = {}, {}
        for peer, features in peers:
            spec = ProxySpec(workdir / peer.name, free_port(), origin_port, 1, features, connections * 2, redis_port)
            server = peer.start(spec, pin.proxy[:1])
            stack.callback(server.proc.stop)
            urls[peer.name] = f"http://127.0.0.1:{spec.port}{scenario.path}"
            pids[peer.name] = server.worker_pids[0]
        results = []
        for number in range(rounds + 1):  # round 0 warms both up
            before = {name: _worker_cpu_us(pid) for name, pid in pids.items()}
            done = {}

            def load(name: str) -> None:
                done[name] = run_wrk(urls[name], duration_s, connections, 1, {}, pin.load)

            threads = [threading.Thread(target=load, args=(name,)) for name in urls]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if len(done) != len(urls) or any(result.errors for result in done.values()):
                raise RuntimeError(f"{scenario.name}: wrk failed or counted errors: {done}")
            if number == 0:
                continue
            cost = {name: (_worker_cpu_us(pids[name]) - before[name]) / done[name].requests for name in pids}
            results.append((done[test].requests / done[base].requests, cost[test] / cost[base]))
        return results


def _describe(values: list[float]) -> str:
    low, _, high = statistics.quantiles(values, n=4)
    return f"{statistics.median(values):.3f} (IQR {low:.3f}-{high:.3f})"


def measure(scenario: Scenario, control: bool, rounds: int, duration_s: int, connections: int, pin: Pinning,
            origin_port: int, workdir: Path) -> None:
    base = scenario.baseline.peer
    base_features = scenario_features(scenario, base)
    if control:  # a twin of the baseline under another name (names key the workdirs and the results)
        test = type("Twin", (type(base),), {"name": f"{base.name}-twin"})()
        test_features, label = base_features, f"A/A control, {test.name} / {base.name}"
    else:
        test = Fastgate()
        test_features, label = scenario_features(scenario, test), scenario.baseline.label
    tested, baseline = (test, test_features), (base, base_features)
    redis, redis_ports = start_for_limit(scenario.limit, workdir / "redis", pin.load)
    redis_port = redis_ports[0] if redis else 0
    try:
        both = []
        for order, peers in (("tested first", [tested, baseline]), ("baseline first", [baseline, tested])):
            results = _rounds(scenario, peers, test.name, base.name, rounds, duration_s, connections, pin,
                              origin_port, redis_port, workdir / order.replace(" ", "-"))
            both += results
            print(f"{scenario.name:12} {order:15} requests {_describe([r for r, _ in results])}, "
                  f"CPU per request {_describe([c for _, c in results])}", flush=True)
        print(f"{scenario.name:12} {label}: requests {_describe([r for r, _ in both])}, "
              f"CPU per request {_describe([c for _, c in both])}", flush=True)
    finally:
        for server in redis:
            server.stop()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.share", description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", default="observe,limit-local",
                   help="comma-separated scenarios with a baseline (default %(default)s)")
    p.add_argument("--rounds", type=int, default=8, help="measured rounds per order (default %(default)s)")
    p.add_argument("--duration", type=int, default=3, help="seconds per round (default %(default)s)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections per proxy (default %(default)s)")
    p.add_argument("--control", action="store_true",
                   help="A/A: the baseline against an identical copy of itself, for the method's own error")
    args = p.parse_args(argv)
    scenarios = []
    for name in args.scenarios.split(","):
        scenario = SCENARIOS.get(name)
        if scenario is None or scenario.baseline is None or scenario.workers != 1:
            p.error(f"{name!r}: not a one-worker scenario with a baseline")
        scenarios.append(scenario)
    if args.rounds < 2:
        p.error("--rounds must be at least 2")
    for tool, package in (("wrk", "wrk"), ("nginx", "nginx-light")):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (apt-get install -y {package})")
            return 2
    pin = Pinning.split(True)
    if pin is None:
        print("bench.share needs at least 2 CPUs: one for both proxies, the rest for the load")
        return 2
    raise_fd_limit()
    workdir = make_workdir("fastgate-share-")
    try:
        origin, origin_port = start_origin(workdir / "origin", pin.load)
        with origin:
            for scenario in scenarios:
                measure(scenario, args.control, args.rounds, args.duration, args.connections, pin, origin_port,
                        workdir / scenario.name)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
