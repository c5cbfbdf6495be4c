"""The servers of a benchmark: the origin and the proxies compared side by side."""

from bench.peers.base import GATEWAY_FEATURES, Proxy, ProxySpec, Running
from bench.peers.fastgate import Fastgate
from bench.peers.haproxy import HAProxy
from bench.peers.nginx import Nginx

PROXIES: dict[str, Proxy] = {p.name: p for p in (Fastgate(), Nginx(), HAProxy())}
"""Every proxy the harness knows, in the order they are run and reported."""

__all__ = ["GATEWAY_FEATURES", "PROXIES", "Proxy", "ProxySpec", "Running"]
