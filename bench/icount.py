"""``python -m bench.icount``: instructions per request of a whole fastgate worker, per scenario.

wrk's req/s on a shared 2-CPU machine moves by 10% from run to run, too much
to judge a 5% budget such as issue 6's (metrics and the access log cost at
most 5% of throughput). This counts instructions instead: fastgate (one
worker, the scenario's config, the bench's nginx origin) runs under
``valgrind --tool=callgrind``; a client sends N, then in a second run 2N,
keep-alive GETs of the scenario's path, one after another; the worker's
instructions of the two runs differ by the cost of N requests, start-up and
shut-down excluded. The same figure comes out of every run, so two commits,
or a scenario and its baseline, can be compared to the per cent.

It counts the worker's user-space instructions only: the system calls
(about two reads and a write per request) are not in it, so a feature's
share of the real CPU time is smaller than its share here.

    python -m bench.icount                          # observe and limit-local, each with its baseline
    python -m bench.icount --scenarios small --requests 2000
    python -m bench.icount --scenarios h2c,https --requests 2000
    python -m bench.icount --scenarios limit-redis --connections 32

The client is http.client for HTTP/1.1 (over TLS for an https scenario), and
h2load on one connection with the scenario's streams in flight for HTTP/2
(h2 over TLS, h2c in cleartext). With ``--connections C`` (C > 1) h2load
sends HTTP/1.1 on C connections at once instead, one request in flight on
each: the worker then serves several requests per loop turn, as under load,
so what is paid per batch (a Redis round trip, a write per turn) is shared
as it is in production. That figure moves a little from run to run (how
many requests a turn finds depends on timing), so compare it with the same
C and run it twice.
"""

import argparse
import http.client
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
from pathlib import Path

from bench.peers.base import ProxySpec
from bench.peers.fastgate import Fastgate
from bench.peers.origin import start_origin
from bench.procs import Proc, ProcError, free_port, make_workdir
from bench.redis import start_for_limit
from bench.run import scenario_features
from bench.scenarios import SCENARIOS, Scenario
from bench.tls import self_signed

START_TIMEOUT_S = 180.0
"""fastgate starts in a few seconds, under valgrind in tens of them."""
STOP_TIMEOUT_S = 120.0
"""Valgrind writes its counts when the worker exits; a kill before that loses them."""
WARMUP_REQUESTS = 300
"""Sent before the counted ones, so that the code paths are warm (specialised bytecode, pools filled)."""
USER_AGENT = "bench-icount/1.0"
"""Clients send one, and the access log records it."""


def _send(port: int, scenario: Scenario, requests: int, connections: int) -> None:
    """``requests`` GETs of the scenario's path in the scenario's protocol, on one connection
    (HTTP/1.1 on ``connections`` when there are several)."""
    if scenario.http2:
        _h2load(port, scenario, requests, ["-c", "1", "-m", str(scenario.streams)])
    elif connections > 1:
        _h2load(port, scenario, requests, ["--h1", "-c", str(connections), "-m", "1"])
    else:
        _get(port, scenario.path, requests, scenario.tls)


def _h2load(port: int, scenario: Scenario, requests: int, shape: list[str]) -> None:
    """h2load with ``shape`` (its connection and stream options); RuntimeError unless all are 2xx."""
    url = f"{'https' if scenario.tls else 'http'}://127.0.0.1:{port}{scenario.path}"
    argv = ["h2load", "-n", str(requests), *shape, "-H", f"user-agent: {USER_AGENT}", url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600).stdout
    if f"status codes: {requests} 2xx" not in out:
        raise RuntimeError(f"h2load did not get {requests} 2xx answers:\n{out}")


def _get(port: int, path: str, requests: int, tls: bool) -> None:
    """``requests`` GETs on one keep-alive connection; RuntimeError unless each is a 200."""
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection("127.0.0.1", port, timeout=60,
                                                                        context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for _ in range(requests):
            conn.request("GET", path, headers={"User-Agent": USER_AGENT})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {path} answered {response.status}")
    finally:
        conn.close()


def _worker_instructions(out_dir: Path) -> int:
    """The largest total among the callgrind files of one run: the worker's (it serves every request)."""
    totals = []
    for path in out_dir.glob("callgrind.out.*"):
        found = re.search(r"^(?:summary|totals): (\d+)", path.read_text(errors="replace"), re.MULTILINE)
        if found:
            totals.append(int(found.group(1)))
    if not totals:
        raise ProcError(f"no callgrind output in {out_dir}")
    return max(totals)


def _instructions(peer: Fastgate, scenario: Scenario, requests: int, connections: int, origin_port: int,
                  redis_port: int, workdir: Path) -> int:
    """Instructions of ``peer``'s worker in one run that serves WARMUP_REQUESTS + ``requests``."""
    workdir.mkdir(parents=True)
    spec = ProxySpec(workdir, free_port(), origin_port, 1, scenario_features(scenario, peer), 256, redis_port,
                     self_signed(workdir / "tls") if scenario.tls else None, scenario.http2)
    log = workdir / "server.log"
    argv, _ = peer.configure(spec, log)
    # a fixed hash seed: dicts and sets lay out the same in every run
    argv = ["env", "PYTHONHASHSEED=0", "valgrind", "--tool=callgrind", "--trace-children=yes",
            f"--callgrind-out-file={workdir}/callgrind.out.%p", *argv]
    proc = Proc(peer.name, argv, log)
    try:
        proc.wait_for_port(spec.port, START_TIMEOUT_S)
        _send(spec.port, scenario, WARMUP_REQUESTS, connections)
        _send(spec.port, scenario, requests, connections)
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(STOP_TIMEOUT_S)
    finally:
        proc.stop()
    return _worker_instructions(workdir)


def per_request(peer: Fastgate, scenario: Scenario, requests: int, connections: int, origin_port: int,
                redis_port: int, workdir: Path) -> float:
    """Instructions of one request: (run of 2N - run of N) / N."""
    one = _instructions(peer, scenario, requests, connections, origin_port, redis_port, workdir / f"{peer.name}-1")
    two = _instructions(peer, scenario, 2 * requests, connections, origin_port, redis_port,
                        workdir / f"{peer.name}-2")
    return (two - one) / requests


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.icount", description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", default="observe,limit-local",
                   help="comma-separated scenarios; a scenario with a baseline measures both (default %(default)s)")
    p.add_argument("--requests", type=int, default=3000, help="N (default %(default)s)")
    p.add_argument("--connections", type=int, default=1,
                   help="HTTP/1.1 connections sending at once (default %(default)s; more than 1: through h2load)")
    args = p.parse_args(argv)
    scenarios = []
    for name in args.scenarios.split(","):
        if name not in SCENARIOS:
            p.error(f"unknown scenario {name!r}")
        if SCENARIOS[name].workers != 1:
            p.error(f"{name}: only one-worker scenarios can be counted")
        scenarios.append(SCENARIOS[name])
    tools = [("valgrind", "valgrind"), ("nginx", "nginx-light")]
    if args.connections > 1 or any(scenario.http2 for scenario in scenarios):
        tools.append(("h2load", "nghttp2-client"))
    for tool, package in tools:
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (apt-get install -y {package})")
            return 2
    workdir = make_workdir("fastgate-icount-")
    try:
        origin, origin_port = start_origin(workdir / "origin", None)
        with origin:
            for scenario in scenarios:
                _count(scenario, args.requests, args.connections, origin_port, workdir / scenario.name)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _count(scenario: Scenario, requests: int, connections: int, origin_port: int, workdir: Path) -> None:
    redis, redis_ports = start_for_limit(scenario.limit, workdir / "redis", None)
    try:
        peers = [Fastgate()] + ([scenario.baseline.peer] if scenario.baseline else [])
        counts = {peer.name: per_request(peer, scenario, requests, connections, origin_port,
                                         redis_ports[0] if redis else 0, workdir)
                  for peer in peers}
    finally:
        for server in redis:
            server.stop()
    for name, count in counts.items():
        print(f"{scenario.name:12} {name:20} {count:10,.0f} instructions per request")
    if scenario.baseline:
        base = counts[scenario.baseline.peer.name]
        print(f"{scenario.name:12} {scenario.baseline.label}: {counts['fastgate'] / base:.3f}x the instructions "
              f"(+{counts['fastgate'] - base:,.0f} per request)", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
