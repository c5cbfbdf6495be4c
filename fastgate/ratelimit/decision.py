"""The answer to one rate-limit check, as the gateway uses it."""

import math
from collections.abc import Callable


class Decision:
    """What to do with a request: pass it on, or answer ``status`` with ``headers``.

    ``headers`` are pre-encoded ``\\r\\nName: value`` pieces to append to the
    response head (the 429/503 body is the gateway's): the rate-limit headers
    in the configured style and, when not allowed, ``Retry-After``.
    """

    __slots__ = ("allowed", "status", "retry_after_s", "headers")

    def __init__(self, allowed: bool, status: int, retry_after_s: float, headers: bytes) -> None:
        self.allowed = allowed
        self.status = status
        """200 admitted, 429 over a limit, 503 Redis unavailable under policy "deny"."""
        self.retry_after_s = retry_after_s
        """Seconds until a retry can succeed (0.0 when allowed); Retry-After carries it rounded up."""
        self.headers = headers

    def __repr__(self) -> str:
        return f"Decision(allowed={self.allowed}, status={self.status}, retry_after_s={self.retry_after_s}, headers={self.headers!r})"


ALLOWED_WITHOUT_HEADERS = Decision(True, 200, 0.0, b"")
"""Admitted, nothing to add (headers off, no limit applied, or Redis failed under policy "allow")."""


def unavailable(retry_after_s: float) -> Decision:
    """503 for policy "deny" while Redis is unavailable."""
    seconds = max(1, math.ceil(retry_after_s))
    return Decision(False, 503, float(seconds), b"\r\nRetry-After: %d" % seconds)


OnDecision = Callable[[Decision], None]
"""The callback ``RouteLimits.check`` calls exactly once with the decision."""
