"""Run one scenario: start every proxy, probe it, warm it up, then run the load
(wrk, or h2load for HTTP/2) against them interleaved (A B C A B C ...) and
record each run.

A proxy that does not start, answers the probe wrongly, or crashes during a
run is reported in ``failures`` and left out of the rest of the scenario, as
is an access log whose line count is off by more than the requests in flight
at the ends of the runs. In an HTTP/2 scenario, a proxy built without HTTP/2
is a failure if it is required (nginx), else skipped with the reason.
"""

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench import procfs, pyspy
from bench.h2load import run_h2load
from bench.load import LoadResult
from bench.peers import Proxy, ProxySpec, Running
from bench.loglines import LogLines
from bench.peers.fastgate import SUPPORTED
from bench.probe import ProbeError, probe
from bench.procs import Pinning, ProcError, free_port
from bench.redis import script_calls, start_for_limit
from bench.scenarios import Scenario
from bench.tls import self_signed
from bench.wrk import run_wrk

MAX_CONNECTIONS = 1024
"""Client connections a proxy is sized for beyond wrk's (nginx's own default is 512)."""


@dataclass(frozen=True)
class Settings:
    reps: int
    duration_s: int
    """Length of a measured load run (wrk takes whole seconds)."""
    warmup_s: int
    """Length of the unmeasured load run each proxy gets first."""
    connections: int
    """Requests in flight: wrk's connections; h2load's connections times the scenario's streams."""
    threads: int
    """wrk and h2load threads: one per load CPU."""
    pin: Pinning | None
    profile: str | None
    """Name of the scenario in which to profile fastgate with py-spy."""
    results_dir: Path


def scenario_pinning(scenario: Scenario, pin: Pinning | None) -> Pinning | None:
    """The pinning for ``scenario``: none when its workers need more CPUs than the proxy side has."""
    return pin if pin and scenario.workers <= len(pin.proxy) else None


def _cpu_us(pids: list[int]) -> tuple[float, float]:
    times = [procfs.cpu_us(pid) for pid in pids]
    return sum(t[0] for t in times), sum(t[1] for t in times)


def _measure(server: Running, load: Callable[[], LoadResult]) -> dict:
    """One ``load()`` run against ``server``, with the CPU its workers used per request."""
    user0, sys0 = _cpu_us(server.worker_pids)
    result = load()
    server.check_workers()
    user1, sys1 = _cpu_us(server.worker_pids)
    n = max(result.requests, 1)
    return {
        "rps": round(result.rps, 1),
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "requests": result.requests,
        "socket_errors": result.socket_errors,
        "non_2xx": result.non_2xx,
        "cpu_user_us_per_request": round((user1 - user0) / n, 2),
        "cpu_system_us_per_request": round((sys1 - sys0) / n, 2),
        # Near 1.0 per worker: the proxy was the bottleneck; well below: the load side was.
        "cpu_cores_busy": round((user1 - user0 + sys1 - sys0) / 1e6 / result.duration_s, 3),
    }


LOCAL_STAND_INS = {"rate_limit_redis": "rate_limit", "rate_limit_redis_cluster": "rate_limit"}
"""What nginx and HAProxy run for a scenario feature only fastgate has."""


def scenario_features(scenario: Scenario, proxy: Proxy) -> frozenset[str]:
    """The gateway features ``proxy`` runs with in ``scenario``."""
    features = SUPPORTED if scenario.gateway else frozenset()
    if scenario.baseline and proxy.name == scenario.baseline.peer.name:
        return features
    if proxy.name == "fastgate":
        return features | scenario.features
    return features | {LOCAL_STAND_INS.get(f, f) for f in scenario.features}


def _start(proxy: Proxy, scenario: Scenario, origin_port: int, max_connections: int,
           pin: Pinning | None, workdir: Path, stack: ExitStack, redis_port: int) -> tuple[Running, str]:
    spec = ProxySpec(workdir / f"{scenario.name}-{proxy.name}", free_port(), origin_port,
                     scenario.workers, scenario_features(scenario, proxy), max_connections, redis_port,
                     self_signed(workdir / "tls") if scenario.tls else None, scenario.http2)
    server = proxy.start(spec, pin.proxy if pin else None)
    stack.callback(server.proc.stop)
    probe(spec.port, scenario, server.features)
    return server, f"{'https' if scenario.tls else 'http'}://127.0.0.1:{spec.port}{scenario.path}"


def run_scenario(scenario: Scenario, proxies: list[Proxy], origin_port: int,
                 settings: Settings, workdir: Path, failures: list[str]) -> dict:
    """Every run of every proxy in ``scenario``: {proxy: {"features", "runs"}}, and
    "access_log" {"lines", "requests"} over the measured runs of a proxy whose log is counted;
    {proxy: {"skipped", "runs": []}} for an optional proxy that cannot serve the scenario."""
    pin = scenario_pinning(scenario, settings.pin)
    tool = "h2load" if scenario.http2 else "wrk"

    def load(url: str, duration_s: int) -> Callable[[], LoadResult]:
        cpus = pin.load if pin else None
        if scenario.http2:
            return lambda: run_h2load(url, duration_s, max(settings.connections // scenario.streams, 1),
                                      scenario.streams, settings.threads, cpus)
        return lambda: run_wrk(url, duration_s, settings.connections, settings.threads, scenario.headers, cpus)

    results: dict[str, dict] = {}
    with ExitStack() as stack:
        if scenario.baseline and any(p.name == "fastgate" for p in proxies):
            proxies = [*proxies, scenario.baseline.peer]
        redis, redis_ports = start_for_limit(scenario.limit, workdir / f"{scenario.name}-redis",
                                             pin.load if pin else None)
        for server in redis:
            stack.callback(server.stop)
        redis_port = redis_ports[0] if redis_ports else 0
        running: dict[str, tuple[Running, str]] = {}
        for proxy in proxies:
            if scenario.http2 and (why := proxy.http2_missing()):
                if proxy.required:
                    failures.append(f"{scenario.name}/{proxy.name}: {why}")
                else:
                    print(f"  skipping {proxy.name}: {why}")
                    results[proxy.name] = {"skipped": why, "runs": []}
                continue
            try:
                server, url = _start(proxy, scenario, origin_port, MAX_CONNECTIONS + settings.connections,
                                     pin, workdir, stack, redis_port)
                load(url, settings.warmup_s)()
            except (ProcError, ProbeError, RuntimeError) as exc:
                failures.append(f"{scenario.name}/{proxy.name}: {exc}")
                continue
            running[proxy.name] = server, url
            results[proxy.name] = {"features": server.features, "runs": []}
        logs = {name: LogLines(server.access_log) for name, (server, _) in running.items() if server.access_log}
        for log in logs.values():
            log.settled()  # the probe's and the warm-up's lines are not counted
        for _ in range(settings.reps):
            for name, (server, url) in list(running.items()):
                calls = script_calls(redis_ports) if redis_ports and name == "fastgate" else 0
                try:
                    run = _measure(server, load(url, settings.duration_s))
                except (ProcError, RuntimeError) as exc:
                    failures.append(f"{scenario.name}/{name}: {exc}")
                    del running[name]
                    continue
                if redis_ports and name == "fastgate":
                    run["redis_round_trips_per_request"] = round(
                        (script_calls(redis_ports) - calls) / max(run["requests"], 1), 4)
                results[name]["runs"].append(run)
        for name, log in logs.items():
            results[name]["access_log"] = {"lines": log.settled(),
                                           "requests": sum(r["requests"] for r in results[name]["runs"])}
        if settings.profile == scenario.name and "fastgate" in running:
            server, url = running["fastgate"]
            svg = settings.results_dir / f"profile-{scenario.name}.svg"
            try:
                pyspy.record(server.worker_pids[0], svg, settings.duration_s, load(url, settings.duration_s))
                print(f"  py-spy flame graph of a fastgate worker: {svg}")
            except RuntimeError as exc:  # a failed profile says nothing about the proxy
                print(f"  profiling failed: {exc}")
    for name, entry in results.items():
        errors = sum(sum(r["socket_errors"].values()) + r["non_2xx"] for r in entry["runs"])
        if errors:
            failures.append(f"{scenario.name}/{name}: {errors} errors or non-2xx responses under {tool}")
        if "access_log" in entry:
            lines, requests = entry["access_log"]["lines"], entry["access_log"]["requests"]
            # Requests in flight when wrk stops may be logged without wrk counting them, at most
            # one per connection and run; anything beyond that is a line lost or made up.
            if abs(lines - requests) > settings.connections * len(entry["runs"]):
                failures.append(f"{scenario.name}/{name}: {lines} access log lines for {requests} requests")
    return results
