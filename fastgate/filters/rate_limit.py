"""A route's rate limits (``[[routes.limits]]``) as the first filter of its access phase.

The local store decides at once: the hook returns None (admitted) or the
429 answer. With Redis the decision comes from the event loop later: the
hook returns a Deferred (proxy/deferred.py) of the same, resolved by the
limiter's ``on_decision`` callback, so the request goes on inside the
callback that delivers Redis's reply, with no Future and no extra loop turn
per request (``RouteLimits.check`` may still decide at once, e.g. while the
Redis breaker is open; then the session takes the result at once). A limit
keyed by a body field asks for the body's first ``body_read_limit`` bytes
(``body_bytes``) before the hook runs.

An admitted request's rate-limit headers (``RateLimit-*`` when
configured) go on its response; the outcome goes in its log record.
"""

from fastgate.filters.base import Answer, Deferred, Filter
from fastgate.observe.record import LIMIT_ALLOWED, LIMIT_LIMITED, LIMIT_UNAVAILABLE


class RateLimitFilter(Filter):
    __slots__ = ("limits", "body_bytes")

    def __init__(self, limits) -> None:
        self.limits = limits
        """The route's ratelimit.RouteLimits."""
        self.body_bytes = limits.body_read_limit if limits.needs_body else 0

    def request(self, session):
        limits = self.limits
        admit_ip = limits.admit_ip
        if admit_ip is not None and admit_ip(session.client_ip):
            session.limit_outcome = LIMIT_ALLOWED
            return None
        head = session.head
        body = session.body_prefix(limits.body_read_limit) if self.body_bytes else None
        keys = limits.keys(session.client_ip, session.header, head.query[1:], body,
                           session.header(b"content-type") if body is not None else None)
        if keys is None:
            return None
        check_now = limits.check_now
        if check_now is not None:
            return _applied(session, check_now(keys))
        waiting = _Waiting()
        waiting.session = session
        limits.check(keys, waiting.decided)
        return waiting


class _Waiting(Deferred):
    """A request's wait for its decision from Redis; ``decided`` is the limiter's on_decision."""

    __slots__ = ("session",)

    def decided(self, decision) -> None:
        if self.wanted:  # not cancelled: the client is still there
            self.resolve(_applied(self.session, decision))


def _applied(session, decision) -> Answer | None:
    """None for an admitted request (its headers kept for the response), else the 429 (or 503
    when the limiter is unavailable)."""
    if decision.allowed:
        session.limit_outcome = LIMIT_ALLOWED
        session.response_fields = decision.headers
        return None
    status = decision.status
    session.limit_outcome = LIMIT_LIMITED if status == 429 else LIMIT_UNAVAILABLE
    return Answer.failure(status, "rate limit exceeded" if status == 429 else "rate limiter unavailable",
                          decision.headers)
