"""Turn recorded runs into figures: summaries, ratios to nginx, the stdout
tables and bench/results/latest.json."""

import json
import statistics
from pathlib import Path

from bench.memory import total_kib
from bench.scenarios import SCENARIOS, Scenario

REFERENCE = "nginx"
"""Every ratio is proxy / this one."""


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs: list[dict]) -> dict:
    """Median, min and max over the runs of one proxy in one scenario; errors summed."""
    user = [r["cpu_user_us_per_request"] for r in runs]
    system = [r["cpu_system_us_per_request"] for r in runs]
    return {
        "rps": _spread([r["rps"] for r in runs]),
        "p50_ms": _spread([r["p50_ms"] for r in runs]),
        "p99_ms": _spread([r["p99_ms"] for r in runs]),
        "cpu_us_per_request": {
            "user": statistics.median(user),
            "system": statistics.median(system),
            "total": round(statistics.median(u + s for u, s in zip(user, system)), 2),
        },
        "cpu_cores_busy": statistics.median(r["cpu_cores_busy"] for r in runs),
        "socket_errors": sum(sum(r["socket_errors"].values()) for r in runs),
        "non_2xx": sum(r["non_2xx"] for r in runs),
        **({"redis_round_trips_per_request": statistics.median(r["redis_round_trips_per_request"] for r in runs)}
           if "redis_round_trips_per_request" in runs[0] else {}),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def ratios(summary: dict, reference: dict | None) -> dict | None:
    """``summary`` / ``reference`` for throughput, latencies and CPU per request."""
    if reference is None:
        return None
    return {
        "rps": _ratio(summary["rps"]["median"], reference["rps"]["median"]),
        "p50_ms": _ratio(summary["p50_ms"]["median"], reference["p50_ms"]["median"]),
        "p99_ms": _ratio(summary["p99_ms"]["median"], reference["p99_ms"]["median"]),
        "cpu_us_per_request": _ratio(summary["cpu_us_per_request"]["total"],
                                     reference["cpu_us_per_request"]["total"]),
    }


def scenario_entry(scenario: Scenario, pinning: dict | None, results: dict) -> dict:
    """The latest.json entry of one scenario: its setup, every run, summaries, ratio."""
    proxies = {name: {**r, **summarize(r["runs"])} for name, r in results.items() if r["runs"]}
    skipped = {name: r["skipped"] for name, r in results.items() if "skipped" in r}
    ref = proxies.get(REFERENCE)
    return {
        "name": scenario.name,
        "title": scenario.title,
        "path": scenario.path,
        "body_bytes": scenario.body_bytes,
        "workers": scenario.workers,
        "protocol": scenario.protocol,
        "streams_per_connection": scenario.streams,
        "connection_close": scenario.close,
        "gateway": scenario.gateway,
        "pinning": pinning,
        "proxies": proxies,
        "skipped": skipped,
        "ratio_fastgate_nginx": ratios(proxies["fastgate"], ref) if "fastgate" in proxies else None,
        "limit": scenario.limit or None,
        **_baseline_entry(scenario, proxies),
    }


def _baseline_entry(scenario: Scenario, proxies: dict) -> dict:
    """The baseline peer's name and fastgate / baseline under the scenario's ratio key."""
    if scenario.baseline is None:
        return {"baseline": None}
    peer = scenario.baseline.peer.name
    return {
        "baseline": peer,
        scenario.baseline.ratio_key: (ratios(proxies["fastgate"], proxies[peer])
                                      if "fastgate" in proxies and peer in proxies else None),
    }


def memory_entry(connections: int, results: dict) -> dict:
    fg, ref = results.get("fastgate"), results.get(REFERENCE)
    return {
        "connections": connections,
        "workers": 1,
        "proxies": results,
        "ratio_fastgate_nginx": {
            "idle_kib": _ratio(total_kib(fg["idle"]), total_kib(ref["idle"])),
            "loaded_kib": _ratio(total_kib(fg["loaded"]), total_kib(ref["loaded"])),
            "kib_per_connection": _ratio(fg["kib_per_connection"], ref["kib_per_connection"]),
        } if fg and ref else None,
    }


def _x(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def _print_scenarios(scenarios: list[dict]) -> None:
    print("\nthroughput, latency and proxy CPU per request (busy: CPU cores the proxy used; "
          "below its worker count, the load side was the limit)\n"
          "'x nginx' = proxy / nginx (req/s: higher is better; p99 and CPU: lower is better)")
    print(f"{'scenario':<11} {'proxy':<18} {'req/s median (min-max)':>25} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'CPU us/req (usr+sys)':>21} {'busy':>5} {'errors':>6} | {'x nginx req/s':>13} {'p99':>6} {'CPU':>6}")
    for s in scenarios:
        ref = s["proxies"].get(REFERENCE)
        for name, p in s["proxies"].items():
            rps, cpu, r = p["rps"], p["cpu_us_per_request"], ratios(p, ref) or {}
            rps_text = f"{rps['median']:,.0f} ({rps['min']:,.0f}-{rps['max']:,.0f})"
            cpu_text = f"{cpu['total']:.1f} ({cpu['user']:.1f}+{cpu['system']:.1f})"
            print(f"{s['name']:<11} {name:<18} {rps_text:>25} {p['p50_ms']['median']:>7.2f} "
                  f"{p['p99_ms']['median']:>7.2f} {cpu_text:>21} {p['cpu_cores_busy']:>5.2f} "
                  f"{p['socket_errors'] + p['non_2xx']:>6} | "
                  f"{_x(r.get('rps')):>13} {_x(r.get('p99_ms')):>6} {_x(r.get('cpu_us_per_request')):>6}")
    for s in scenarios:
        for name, why in s.get("skipped", {}).items():
            print(f"{s['name']}: {name} skipped: {why}")
        scenario = SCENARIOS.get(s["name"])
        ratio = s.get(scenario.baseline.ratio_key) if scenario and scenario.baseline else None
        if ratio:
            trips = s["proxies"]["fastgate"].get("redis_round_trips_per_request")
            print(f"{s['name']}: fastgate {scenario.baseline.label}: req/s {_x(ratio['rps'])}, "
                  f"p99 {_x(ratio['p99_ms'])}, CPU {_x(ratio['cpu_us_per_request'])}"
                  + (f", Redis round trips per request {trips:.4f}" if trips is not None else ""))
        for name, p in s["proxies"].items():
            if log := p.get("access_log"):
                print(f"{s['name']}: {name} access log: {log['lines']:,} lines for {log['requests']:,} "
                      f"requests wrk counted ({log['lines'] - log['requests']:+,}; wrk does not count "
                      "requests in flight when it stops)")


def _print_memory(memory: dict) -> None:
    print(f"\nmemory (RSS KiB) with {memory['workers']} worker: idle, then holding "
          f"{memory['connections']:,} idle keep-alive client connections")
    print(f"{'proxy':<8} {'master idle':>11} {'loaded':>8} {'workers idle':>13} {'loaded':>8} "
          f"{'KiB/conn':>9} | {'x nginx':>7}")
    ref = memory["proxies"].get(REFERENCE)
    for name, m in memory["proxies"].items():
        r = _ratio(m["kib_per_connection"], ref["kib_per_connection"]) if ref else None
        print(f"{name:<8} {m['idle']['master_kib'] or '-':>11} {m['loaded']['master_kib'] or '-':>8} "
              f"{sum(m['idle']['workers_kib']):>13} {sum(m['loaded']['workers_kib']):>8} "
              f"{m['kib_per_connection']:>9.2f} | {_x(r):>7}")


def print_tables(document: dict) -> None:
    _print_scenarios(document["scenarios"])
    if document["memory"]:
        _print_memory(document["memory"])


def write_json(document: dict, path: Path) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n")
