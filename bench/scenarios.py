"""The scenarios: what wrk asks for, and of which proxy setup."""

from dataclasses import dataclass

from bench.peers.origin import BODIES


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
    limit: str = ""
    """"local" or "redis": fastgate checks a per-IP rate limit that never triggers, kept in that
    store, and runs beside an unlimited fastgate ("fastgate-unlimited") for the ratio between
    the two; nginx and HAProxy run their local limit as the usual reference."""

    @property
    def body_bytes(self) -> int:
        return BODIES[self.path]

    @property
    def headers(self) -> dict[str, str]:
        return {"Connection": "close"} if self.close else {}


SCENARIOS = {s.name: s for s in (
    Scenario("small", "12 B body, keep-alive, 1 worker", "/small"),
    Scenario("16k", "16 KiB body, keep-alive", "/16k"),
    Scenario("1m", "1 MiB body, keep-alive", "/1m"),
    Scenario("close", "12 B body, new connection per request", "/small", close=True),
    Scenario("small-2w", "12 B body, keep-alive, 2 workers", "/small", workers=2),
    Scenario("gateway", "12 B body, gateway route features", "/small", gateway=True),
    Scenario("limit-local", "12 B body, a local per-IP rate limit", "/small", limit="local"),
    Scenario("limit-redis", "12 B body, a per-IP rate limit in Redis", "/small", limit="redis"),
)}

SMOKE = ("small", "16k", "gateway")
"""The scenarios of ``--smoke``."""
