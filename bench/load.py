"""What one run of a load generator (wrk for HTTP/1.1, h2load for HTTP/2) measured, in one shape."""

from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    requests: int
    """Responses received, whatever their status."""
    duration_s: float
    rps: float
    p50_ms: float
    p99_ms: float
    socket_errors: dict[str, int]
    """Requests that got no response, by cause as the tool counts them (wrk: connect, read,
    write, timeout; h2load: connection, timeout, incomplete)."""
    non_2xx: int
    """Responses with a status of 400 or more: what wrk reports as "Non-2xx or 3xx responses"."""

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values()) + self.non_2xx
