"""``python -m bench``: fastgate against nginx and HAProxy, in one run.

Starts an nginx origin, then per scenario every proxy; loads them with wrk (or
h2load for HTTP/2) in turn; measures memory with many idle connections; prints tables; writes
bench/results/latest.json (and latest.png when matplotlib is installed).
Exits 1 if a proxy did not start, answered wrongly or produced errors,
2 if a tool the harness needs is missing.
"""

import argparse
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from bench import chart, machine, pyspy, report
from bench.memory import measure_memory
from bench.peers import GATEWAY_FEATURES, PROXIES, Proxy
from bench.peers.origin import start_origin
from bench.h2load import h2load_version
from bench.probe import ProbeError
from bench.procs import Pinning, ProcError, cpu_list, fd_limit, make_workdir, raise_fd_limit
from bench.run import Settings, run_scenario, scenario_pinning
from bench.scenarios import SCENARIOS, SMOKE, Scenario
from bench.wrk import wrk_version

RESULTS_DIR = Path(__file__).with_name("results")


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description="Benchmark fastgate against nginx and HAProxy.")
    p.add_argument("--smoke", action="store_true",
                   help=f"quick check for CI: 1 repetition of 2 s, scenarios {', '.join(SMOKE)}, "
                        "500 idle connections; no timing assertions, fails on errors")
    p.add_argument("--reps", type=int, help="load runs per proxy and scenario (default 5, smoke 1)")
    p.add_argument("--duration", type=int, help="seconds per load run (default 5, smoke 2)")
    p.add_argument("--connections", type=int, default=64,
                   help="requests in flight: wrk connections; h2load keeps as many streams open over "
                        "connections / the scenario's streams per connection (default 64)")
    p.add_argument("--scenarios", help=f"comma-separated subset of: {', '.join(SCENARIOS)}")
    p.add_argument("--proxies", default=",".join(PROXIES), help="comma-separated (default: %(default)s)")
    p.add_argument("--idle-connections", type=int,
                   help="idle keep-alive connections for the memory figures (default 10000, smoke 500; 0: skip)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the proxy and the load to separate CPUs")
    p.add_argument("--profile", nargs="?", const="small", metavar="SCENARIO",
                   help="record a py-spy flame graph of a fastgate worker in SCENARIO (default small)")
    args = p.parse_args(argv)
    names = args.scenarios.split(",") if args.scenarios else list(SMOKE if args.smoke else SCENARIOS)
    for name in names + ([args.profile] if args.profile else []):
        if name not in SCENARIOS:
            p.error(f"unknown scenario {name!r}")
    for name in args.proxies.split(","):
        if name not in PROXIES:
            p.error(f"unknown proxy {name!r}")
    args.scenarios = [SCENARIOS[n] for n in names]
    args.proxies = [PROXIES[n] for n in args.proxies.split(",")]
    return args


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # so that every started process is stopped on the way out


def _missing_tool(scenarios: list[Scenario]) -> str | None:
    tools = [("nginx", "the origin and the reference proxy", "apt-get install -y nginx-light"),
             ("wrk", "the load generator", "apt-get install -y wrk"),
             ("taskset", "CPU pinning", "apt-get install -y util-linux")]
    if any(s.http2 for s in scenarios):
        tools.append(("h2load", "the HTTP/2 load generator", "apt-get install -y nghttp2-client"))
    for tool, why, hint in tools:
        if not shutil.which(tool):
            return f"{tool} ({why}) is not installed; install it with: {hint}"
    return None


def _runnable(requested: list[Proxy], failures: list[str], skipped: dict[str, str]) -> list[Proxy]:
    """The requested proxies that are installed; a missing required one is a failure,
    a missing optional one is skipped."""
    proxies = []
    for proxy in requested:
        why = proxy.missing()
        if why is None:
            proxies.append(proxy)
        elif proxy.required:
            failures.append(f"{proxy.name}: {why}")
        else:
            skipped[proxy.name] = why
            print(f"skipping {proxy.name}: {why}")
    return proxies


def _idle_connections(args: argparse.Namespace, proxies: list[Proxy]) -> int:
    wanted = args.idle_connections if args.idle_connections is not None else (500 if args.smoke else 10_000)
    cap = min((p.max_client_connections() for p in proxies), default=wanted)
    if wanted > cap:
        print(f"idle connections capped to {cap:,}: the open-file limit is {fd_limit():,} "
              "(raise the hard limit with `ulimit -Hn` as root)")
    return min(wanted, cap)


def _run_all(scenarios: list[Scenario], proxies: list[Proxy], settings: Settings,
             idle_connections: int, failures: list[str]) -> tuple[list[dict], dict | None]:
    """Every scenario, then the memory figures: (scenario entries, memory entry)."""
    pin = settings.pin
    entries, memory = [], None
    workdir = make_workdir("fastgate-bench-")
    try:
        origin, origin_port = start_origin(workdir / "origin", pin.load if pin else None)
        with origin:
            for scenario in scenarios:
                s_pin = scenario_pinning(scenario, pin)
                where = (f"proxy on CPU {cpu_list(s_pin.proxy)}, load on CPU {cpu_list(s_pin.load)}"
                         if s_pin else "not pinned")
                print(f"== {scenario.name}: {scenario.title} ({where})", flush=True)
                results = run_scenario(scenario, proxies, origin_port, settings, workdir, failures)
                entries.append(report.scenario_entry(scenario, s_pin.describe() if s_pin else None, results))
            if idle_connections:
                print(f"== memory: {idle_connections:,} idle keep-alive connections", flush=True)
                held = {}
                for proxy in proxies:
                    try:
                        held[proxy.name] = measure_memory(proxy, origin_port, idle_connections, pin,
                                                          workdir / f"memory-{proxy.name}")
                    except (ProcError, ProbeError) as exc:
                        failures.append(f"memory/{proxy.name}: {exc}")
                memory = report.memory_entry(idle_connections, held)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return entries, memory


def main(argv: list[str]) -> int:
    args = _parse(argv)
    if why := _missing_tool(args.scenarios):
        print(why)
        return 2
    if args.profile and not pyspy.available():
        print("py-spy is not installed (pip install py-spy): no profile")
        args.profile = None
    failures: list[str] = []
    skipped: dict[str, str] = {}
    proxies = _runnable(args.proxies, failures, skipped)
    raise_fd_limit()
    pin = Pinning.split(not args.no_pin)
    settings = Settings(
        reps=args.reps or (1 if args.smoke else 5),
        duration_s=args.duration or (2 if args.smoke else 5),
        warmup_s=1 if args.smoke else 2,
        connections=args.connections,
        threads=len(pin.load) if pin else max(1, (os.cpu_count() or 1) // 2),
        pin=pin,
        profile=args.profile,
        results_dir=RESULTS_DIR,
    )
    idle_connections = _idle_connections(args, proxies)
    RESULTS_DIR.mkdir(exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupt)
    versions = {"wrk": wrk_version(), **{p.name: p.version() for p in proxies}}
    if any(s.http2 for s in args.scenarios):
        versions["h2load"] = h2load_version()
    started = time.time()
    try:
        scenarios, memory = _run_all(args.scenarios, proxies, settings, idle_connections, failures)
    except KeyboardInterrupt:
        print("interrupted; every process the harness started was stopped")
        return 130
    document = {
        "mode": "smoke" if args.smoke else "full",
        "ok": not failures,
        "failures": failures,
        "skipped": skipped,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "elapsed_s": round(time.time() - started, 1),
        "machine": machine.describe(versions),
        "settings": {
            "reps": settings.reps,
            "duration_s": settings.duration_s,
            "warmup_s": settings.warmup_s,
            "connections": settings.connections,
            "wrk_threads": settings.threads,
            "pinning": pin.describe() if pin else None,
            "origin_cpus": cpu_list(pin.load) if pin else None,
        },
        "gateway_features": GATEWAY_FEATURES,
        "scenarios": scenarios,
        "memory": memory,
    }
    report.write_json(document, RESULTS_DIR / "latest.json")
    report.print_tables(document)
    if scenarios and chart.draw(scenarios, RESULTS_DIR / "latest.png"):
        print(f"\nchart: {RESULTS_DIR / 'latest.png'}")
    print(f"figures: {RESULTS_DIR / 'latest.json'}")
    for failure in failures:
        print(f"FAILED {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
