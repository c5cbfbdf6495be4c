"""The /status document: the instance's numbers, per route, upstream server and worker.

Everything is a total since the instance started (counters) or a value now (gauges); the status
page draws its charts over time from the differences between two reads.
"""

import os
import re
import time

from fastgate.observe.collect import Snapshot
from fastgate.observe.metrics import LATENCY_BUCKETS_S, LIMIT_OUTCOMES, STATUS_CLASSES
from fastgate.observe.prometheus import quantiles
from fastgate.observe.shm import READY, STARTING
from fastgate.ratelimit.stats import ROUND_TRIP_BUCKETS_S

_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_STATES = {STARTING: "starting", READY: "ready"}
_ROUND_TRIP = "fastgate_ratelimit_redis_round_trip_seconds"
_FRACTIONAL = frozenset(("fastgate_request_duration_seconds", "fastgate_upstream_duration_seconds", _ROUND_TRIP))


def labels_of(text: str) -> dict[str, str]:
    return dict(_LABEL.findall(text))


def status_document(snapshot: Snapshot, state: int, started: float, version: str) -> dict:
    totals = snapshot.totals
    routes: dict[str, dict] = {}
    durations: dict[str, dict[int, float]] = {}
    servers: dict[tuple[str, str], dict] = {}
    limits = dict.fromkeys(LIMIT_OUTCOMES, 0)
    redis = {"round_trips": 0, "failures": 0, "timeouts": 0, "fallback": 0, "breaker_open_workers": 0}
    round_trip: dict[int, float] = {}
    for (family, text, part), value in totals.items():
        if family not in _FRACTIONAL:
            value = int(value)
        if family == "fastgate_requests_total":
            labels = labels_of(text)
            route = routes.setdefault(labels["route"], _empty_route())
            route["requests"] += value
            route["status"][labels["status"]] += value
        elif family == "fastgate_request_duration_seconds":
            durations.setdefault(labels_of(text)["route"], {})[part] = value
        elif family == _ROUND_TRIP:
            round_trip[part] = value
        elif family == "fastgate_ratelimit_decisions_total":
            limits[labels_of(text)["outcome"]] += value
        elif family.startswith("fastgate_upstream_") and 'server="' in text:
            labels = labels_of(text)
            server = servers.setdefault((labels["upstream"], labels["server"]), _empty_server())
            name = family[len("fastgate_upstream_"):].removesuffix("_total")
            if name == "responses":
                server["responses"][labels["status"]] += value
            else:
                server[name] = value
        elif family.startswith("fastgate_ratelimit_"):
            name = family[len("fastgate_ratelimit_"):].removesuffix("_total").removeprefix("redis_")
            if name == "breaker_open":
                name = "breaker_open_workers"
            if name in redis:
                redis[name] = value
    overall: dict[int, float] = {}
    for name, parts in durations.items():
        route = routes.setdefault(name, _empty_route())
        route["latency_s"] = _percentiles(parts, LATENCY_BUCKETS_S)
        route["latency_buckets"] = _bucket_counts(parts)
        for part, value in parts.items():
            overall[part] = overall.get(part, 0.0) + value
    upstreams: dict[str, list] = {}
    for (upstream, server), numbers in sorted(servers.items()):
        upstreams.setdefault(upstream, []).append({"server": server, **numbers})
    return {
        "version": version,
        "state": _STATES.get(state, "stopping"),
        "master_pid": os.getppid(),
        "uptime_s": round(time.time() - started, 3),
        "requests": sum(r["requests"] for r in routes.values()),
        "status": {c: sum(r["status"][c] for r in routes.values()) for c in STATUS_CLASSES},
        "latency_s": _percentiles(overall, LATENCY_BUCKETS_S),
        "latency_bounds_s": LATENCY_BUCKETS_S,
        "routes": [{"route": name, **numbers} for name, numbers in sorted(routes.items())],
        "upstreams": [{"upstream": name, "servers": items} for name, items in upstreams.items()],
        "ratelimit": {"decisions": limits,
                      "redis": {**redis, "round_trip_s": _percentiles(round_trip, ROUND_TRIP_BUCKETS_S)}},
        "workers": [_worker(*worker) for worker in snapshot.workers],
    }


def _empty_route() -> dict:
    return {"requests": 0, "status": dict.fromkeys(STATUS_CLASSES, 0), "latency_s": _NO_LATENCY,
            "latency_buckets": [0] * (len(LATENCY_BUCKETS_S) + 1)}


def _bucket_counts(parts: dict[int, float]) -> list[int]:
    """Requests per latency bucket (not cumulated), the last one past the last bound: a page that
    reads the document twice gets the quantiles of the time between the two from the differences."""
    return [int(parts.get(i, 0)) for i in range(len(LATENCY_BUCKETS_S) + 1)]


def _empty_server() -> dict:
    return {"responses": dict.fromkeys(STATUS_CLASSES, 0), "connect_errors": 0, "timeouts": 0, "failures": 0,
            "connections_opened": 0, "connections_reused": 0, "idle_connections": 0, "active_requests": 0,
            "ejected": 0, "health_down": 0}


def _percentiles(parts: dict[int, float], bounds: tuple[float, ...]) -> dict[str, float]:
    """p50, p90 and p99 of a histogram's parts, in seconds, to the microsecond."""
    found = quantiles(parts, (0.5, 0.9, 0.99), bounds)
    return {name: round(value, 6) for name, value in zip(("p50", "p90", "p99"), found)}


_NO_LATENCY = {"p50": 0.0, "p90": 0.0, "p99": 0.0}
_worker_plans: dict[int, tuple] = {}


class _WorkerPlan:
    """Where a worker's numbers are in its layout: the indices to add up for each figure.

    A thousand routes make tens of thousands of series per worker: sums run
    over index lists in C (``_sum``), not over the series in Python.
    """

    __slots__ = ("statuses", "durations", "decisions", "connections", "breaker")

    def __init__(self, layout: list) -> None:
        self.statuses: dict[str, list[int]] = {name: [] for name in STATUS_CLASSES}
        self.durations: dict[int, list[int]] = {}
        self.decisions: dict[str, list[int]] = {name: [] for name in LIMIT_OUTCOMES}
        self.connections: list[int] = []
        self.breaker: list[int] = []
        for i, (family, text, part) in enumerate(layout):
            if family == "fastgate_requests_total":
                self.statuses[labels_of(text)["status"]].append(i)
            elif family == "fastgate_request_duration_seconds":
                self.durations.setdefault(part, []).append(i)
            elif family == "fastgate_ratelimit_decisions_total":
                self.decisions[labels_of(text)["outcome"]].append(i)
            elif family == "fastgate_connections_active":
                self.connections.append(i)
            elif family == "fastgate_ratelimit_breaker_open":
                self.breaker.append(i)


def _sum(values: list, indices: list[int]) -> float:
    return sum(map(values.__getitem__, indices))


def _plan(layout: list) -> _WorkerPlan:
    """The plan of ``layout`` (layouts are long-lived: cached by identity)."""
    known = _worker_plans.get(id(layout))
    if known is None or known[0] is not layout:
        if len(_worker_plans) > 64:
            _worker_plans.clear()
        known = _worker_plans[id(layout)] = (layout, _WorkerPlan(layout))
    return known[1]


def _worker(header: dict, layout: list, values: list) -> dict:
    """One worker's own numbers: what it served, how fast, its limit decisions and its Redis breaker."""
    plan = _plan(layout)
    status = {name: int(_sum(values, indices)) for name, indices in plan.statuses.items()}
    durations = {part: _sum(values, indices) for part, indices in plan.durations.items()}
    return {**header,
            "requests": sum(status.values()),
            "status": status,
            "latency_s": _percentiles(durations, LATENCY_BUCKETS_S),
            "ratelimit_decisions": {name: int(_sum(values, indices)) for name, indices in plan.decisions.items()},
            "redis_breaker_open": bool(_sum(values, plan.breaker)),
            "active_connections": int(_sum(values, plan.connections))}
