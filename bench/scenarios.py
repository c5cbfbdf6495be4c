"""The scenarios: what the load generator (wrk, or h2load for HTTP/2) asks for, and of which proxy setup."""

from dataclasses import dataclass

from bench.peers.fastgate import BareFastgate, Fastgate, UnlimitedFastgate
from bench.peers.origin import BODIES


@dataclass(frozen=True)
class Baseline:
    """A second fastgate, without the scenario's ``features``, measured in the same
    interleaved rounds as fastgate: their ratio is what the scenario is for."""

    peer: Fastgate
    ratio_key: str
    """The latest.json key of fastgate / baseline (req/s, p50, p99, CPU per request)."""
    label: str
    """What the ratio compares, for the text report."""


UNLIMITED = Baseline(UnlimitedFastgate(), "ratio_limited_unlimited", "with the limit / without")
BARE = Baseline(BareFastgate(), "ratio_observed_bare",
                "with metrics and a JSON access log / with neither")


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    path: str
    """Origin path requested; its body size is BODIES[path]."""
    workers: int = 1
    """Worker processes (threads for HAProxy) of every proxy."""
    close: bool = False
    """A new connection per request (wrk sends ``Connection: close``)."""
    gateway: bool = False
    """The proxies run the gateway route features (see peers.base.GATEWAY_FEATURES)."""
    features: frozenset[str] = frozenset()
    """Gateway features every proxy runs with besides those of ``gateway``; the baseline runs
    without them. nginx and HAProxy run a local rate limit for "rate_limit_redis" and "rate_limit_redis_cluster"."""
    baseline: Baseline | None = None
    tls: bool = False
    """Clients speak HTTPS to the proxy (one self-signed certificate, bench/tls.py); the origin stays plain."""
    http2: bool = False
    """Clients speak HTTP/2 to the proxy, and h2load is the load instead of wrk: over TLS (with ``tls``)
    as ALPN picks it, else cleartext with prior knowledge (h2c). The origin stays HTTP/1.1."""
    streams: int = 1
    """Requests in flight on each client connection: 1 with wrk (HTTP/1.1); an HTTP/2 scenario keeps
    this many streams open on each of connections / streams connections (h2load ``-m``), so the
    requests in flight are as many as wrk's."""

    @property
    def body_bytes(self) -> int:
        return BODIES[self.path]

    @property
    def headers(self) -> dict[str, str]:
        return {"Connection": "close"} if self.close else {}

    @property
    def protocol(self) -> str:
        """What clients speak to the proxy: "h2" (HTTP/2 over TLS), "h2c", "https" or "http"."""
        if self.http2:
            return "h2" if self.tls else "h2c"
        return "https" if self.tls else "http"

    @property
    def limit(self) -> str:
        """Where fastgate keeps the scenario's rate limit: "local", "redis" (a redis-server
        the harness starts), "redis-cluster" (a 3-node Redis Cluster it starts), or "" for none."""
        if "rate_limit_redis_cluster" in self.features:
            return "redis-cluster"
        return "redis" if "rate_limit_redis" in self.features else "local" if "rate_limit" in self.features else ""


SCENARIOS = {s.name: s for s in (
    Scenario("small", "12 B body, keep-alive, 1 worker", "/small"),
    Scenario("https", "12 B body, keep-alive over TLS, 1 worker", "/small", tls=True),
    Scenario("h2", "12 B body, HTTP/2 over TLS (ALPN h2), 8 streams per connection, 1 worker", "/small",
             tls=True, http2=True, streams=8),
    Scenario("h2c", "12 B body, HTTP/2 cleartext (prior knowledge), 8 streams per connection, 1 worker",
             "/small", http2=True, streams=8),
    Scenario("16k", "16 KiB body, keep-alive", "/16k"),
    Scenario("1m", "1 MiB body, keep-alive", "/1m"),
    Scenario("close", "12 B body, new connection per request", "/small", close=True),
    Scenario("small-2w", "12 B body, keep-alive, 2 workers", "/small", workers=2),
    Scenario("gateway", "12 B body, gateway route features", "/small", gateway=True),
    Scenario("limit-local", "12 B body, a local per-IP rate limit", "/small",
             features=frozenset({"rate_limit"}), baseline=UNLIMITED),
    Scenario("limit-redis", "12 B body, a per-IP rate limit in Redis", "/small",
             features=frozenset({"rate_limit_redis"}), baseline=UNLIMITED),
    Scenario("limit-redis-cluster", "12 B body, a per-IP rate limit in a 3-node Redis Cluster", "/small",
             features=frozenset({"rate_limit_redis_cluster"}), baseline=UNLIMITED),
    Scenario("observe", "12 B body, metrics and a JSON access log to a file", "/small",
             features=frozenset({"json_access_log"}), baseline=BARE),
)}

SMOKE = ("small", "16k", "gateway", "observe")
"""The scenarios of ``--smoke``."""
