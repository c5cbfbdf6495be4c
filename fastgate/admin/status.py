"""The /status document: the instance's numbers, per route, upstream server and worker."""

import os
import re
import time

from fastgate.observe.collect import Snapshot
from fastgate.observe.metrics import LATENCY_BUCKETS_S, STATUS_CLASSES
from fastgate.observe.prometheus import quantiles
from fastgate.ratelimit.stats import ROUND_TRIP_BUCKETS_S
from fastgate.observe.shm import READY, STARTING

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
    limits = {"allowed": 0, "limited": 0, "unavailable": 0}
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
        "routes": [{"route": name, **numbers} for name, numbers in sorted(routes.items())],
        "upstreams": [{"upstream": name, "servers": items} for name, items in upstreams.items()],
        "ratelimit": {"decisions": limits,
                      "redis": {**redis, "round_trip_s": _percentiles(round_trip, ROUND_TRIP_BUCKETS_S)}},
        "workers": [_worker(*worker) for worker in snapshot.workers],
    }


def _empty_route() -> dict:
    return {"requests": 0, "status": dict.fromkeys(STATUS_CLASSES, 0), "latency_s": _NO_LATENCY}


def _empty_server() -> dict:
    return {"responses": dict.fromkeys(STATUS_CLASSES, 0), "connect_errors": 0, "timeouts": 0, "failures": 0,
            "connections_opened": 0, "connections_reused": 0, "idle_connections": 0, "active_requests": 0,
            "ejected": 0, "health_down": 0}


def _percentiles(parts: dict[int, float], bounds: tuple[float, ...]) -> dict[str, float]:
    """p50, p90 and p99 of a histogram's parts, in seconds, to the microsecond."""
    found = quantiles(parts, (0.5, 0.9, 0.99), bounds)
    return {name: round(value, 6) for name, value in zip(("p50", "p90", "p99"), found)}


_NO_LATENCY = {"p50": 0.0, "p90": 0.0, "p99": 0.0}
_family_indices: dict[int, tuple] = {}


def _indices(layout: list, family: str) -> list[int]:
    """Where ``family``'s series are in ``layout`` (layouts are long-lived: cached by identity)."""
    key = id(layout), family
    known = _family_indices.get(key)
    if known is None or known[0] is not layout:
        if len(_family_indices) > 64:
            _family_indices.clear()
        known = _family_indices[key] = (layout, [i for i, series in enumerate(layout) if series[0] == family])
    return known[1]


def _worker(header: dict, layout: list, values: list) -> dict:
    return {**header,
            "requests": int(sum(values[i] for i in _indices(layout, "fastgate_requests_total"))),
            "active_connections": int(sum(values[i] for i in _indices(layout, "fastgate_connections_active")))}
