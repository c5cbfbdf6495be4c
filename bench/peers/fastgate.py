"""fastgate, the proxy under test, its baseline twins, and the one place that
says which gateway features it has."""

import importlib.util
import shutil
import sys
from pathlib import Path

from bench import tomlwrite
from bench.peers.base import Proxy, ProxySpec

SUPPORTED = frozenset({"request_id", "forwarded_headers", "rate_limit", "json_access_log"})
"""Gateway features fastgate has; the gateway scenario asks every proxy for exactly these."""

OWN = frozenset({"rate_limit_redis", "rate_limit_redis_cluster"})
"""Features only fastgate has; only a scenario that names one asks for it."""

DEFAULTS = frozenset({"forwarded_headers", "metrics"})
"""What fastgate does on every route, plain scenarios included, unless a peer switches it off."""


def gateway_settings(features: frozenset[str], redis_port: int = 0,
                     access_log: Path | None = None) -> tuple[dict, dict]:
    """Route keys and top-level tables that turn on the gateway ``features``.

    The one place to extend when fastgate gains another of GATEWAY_FEATURES:
    add its config here and its name to SUPPORTED, and the gateway scenario
    asks nginx and HAProxy for it too.
    """
    route: dict = {"request_id": "request_id" in features}
    tables: dict = {}
    if features & {"rate_limit", "rate_limit_redis", "rate_limit_redis_cluster"}:
        # A per-IP limit that never triggers; no RateLimit headers on admitted answers, like nginx's limit_req.
        route["limits"] = [{"key": ["ip"], "rate": "1000000/s"}]
        tables["ratelimit"] = {"headers_on_allowed": False}
    if "rate_limit_redis" in features:
        tables["ratelimit"].update(store="redis", redis={"url": f"redis://127.0.0.1:{redis_port}", "timeout": "100ms"})
    if "rate_limit_redis_cluster" in features:  # one node given: the others are discovered
        tables["ratelimit"].update(store="redis", redis={"cluster_nodes": [f"127.0.0.1:{redis_port}"],
                                                         "timeout": "100ms"})
    if "json_access_log" in features and access_log:
        tables["access_log"] = {"path": str(access_log), "format": "json"}
    return route, tables


def fastgate_command() -> list[str]:
    """The installed ``fastgate`` command, else ``python -m fastgate``."""
    exe = shutil.which("fastgate")
    return [exe] if exe else [sys.executable, "-m", "fastgate"]


class Fastgate(Proxy):
    name = "fastgate"
    binary = "fastgate"
    install_hint = "pip install -e .  (from the repository root)"
    required = True
    multiprocess = True
    switched_off: frozenset[str] = frozenset()
    """DEFAULTS this peer runs without."""

    def missing(self) -> str | None:
        if shutil.which("fastgate") or importlib.util.find_spec("fastgate.cli"):
            return None
        return f"neither the fastgate command nor the fastgate.cli module is found; install with: {self.install_hint}"

    def version(self) -> str:
        import fastgate

        return fastgate.__version__

    def access_log(self, spec: ProxySpec) -> Path | None:
        return spec.workdir / "access.log" if "json_access_log" in spec.features else None

    def routes(self, spec: ProxySpec) -> list[dict]:
        """The ``[[routes]]``: everything to the origin, with the gateway features of ``spec``."""
        route, _ = gateway_settings(spec.features & (SUPPORTED | OWN), spec.redis_port)
        return [{"path_prefix": "/", "upstream": "origin", **route}]

    def configure(self, spec: ProxySpec, log: Path) -> tuple[list[str], list[str]]:
        features = spec.features & (SUPPORTED | OWN)
        on = features | (DEFAULTS - self.switched_off)
        _, tables = gateway_settings(features, spec.redis_port, self.access_log(spec))
        config = {
            "server": {
                "workers": spec.workers,
                "pid_file": str(spec.workdir / "fastgate.pid"),
                "error_log": "stderr",  # the harness sends stderr to ``log``
                "log_level": "warning",
            },
            "listeners": [_listener(spec)],
            # No admin listener: two fastgates run side by side. Metrics count without it.
            "admin": {"address": "", "metrics": "metrics" in on},
            "tracing": {"enabled": "tracing" in on},
            "upstreams": [{
                "name": "origin",
                "servers": [f"127.0.0.1:{spec.origin_port}"],
                "max_idle_connections": 256,
                "max_requests_per_connection": 0,
            }],
            "routes": self.routes(spec),
            **tables,
        }
        conf = spec.workdir / "fastgate.toml"
        conf.write_text(tomlwrite.dumps(config))
        return [*fastgate_command(), "-c", str(conf)], sorted(on)


def _listener(spec: ProxySpec) -> dict:
    """The ``[[listeners]]`` entry: TLS with the run's certificate, and ``http2 = true`` for HTTP/2
    (h2c with prior knowledge on a plain listener; on TLS, where ALPN offers h2 by default, it
    only says so)."""
    listener: dict = {"address": f"127.0.0.1:{spec.port}"}
    if spec.tls is not None:
        cert, key = spec.tls
        listener["tls"] = {"certificates": [{"cert": str(cert), "key": str(key)}]}
    if spec.http2:
        listener["http2"] = True
    return listener


class UnlimitedFastgate(Fastgate):
    """fastgate without the limit, the baseline of a limit-* scenario."""

    name = "fastgate-unlimited"


class BareFastgate(Fastgate):
    """fastgate with no metrics and no access log, the baseline of the observe scenario."""

    name = "fastgate-bare"
    switched_off = frozenset({"metrics"})
