"""The rate-limit phase of a request: check the route's limits, then go on or answer.

``LimitPhase`` is a part of ``ProxySession`` (proxy/session.py), kept in its
own file: it runs after routing and before a request is answered or
forwarded (DESIGN's access-filter phase). It reads the session's request
(``head``, ``route``, ``client_ip``) and hands over through ``_dispatch``
(go on) and ``_answer`` (429/503).

- A local-store decision is taken synchronously.
- A Redis decision may come later: the session waits (``limiting``) while
  the downstream adapter holds whatever the client sends meanwhile, and
  ``_limit_decided`` resumes it.
- A limit keyed by a body field is checked once the adapter has read the
  body's first bytes (``body_prefix``; see ``ProxySession.body_ready``).
"""

from fastgate.observe.record import LIMIT_ALLOWED, LIMIT_LIMITED, LIMIT_UNAVAILABLE
from fastgate.proxy.errors import gateway_error
from fastgate.wire.h1 import header_value


class LimitPhase:
    __slots__ = ()

    def _check_limits(self, body_prefix: bytes | None) -> None:
        head = self.head
        limits = self.route.limits
        admit_ip = limits.admit_ip
        if admit_ip is not None and admit_ip(self.client_ip):
            self.limit_outcome = LIMIT_ALLOWED
            self.limit_headers = b""
            self._dispatch()
            return
        raw = head.raw
        keys = limits.keys(
            self.client_ip, lambda name: header_value(raw, name), head.query[1:], body_prefix,
            header_value(raw, b"content-type") if body_prefix is not None else None)
        if keys is None:
            self._dispatch()
            return
        decision = limits.check_now(keys)
        if decision is not None:  # the local store decides at once: no callback
            self._limit_applied(decision)
            return
        self.limiting = True
        self.checking = True
        try:
            limits.check(keys, self._limit_decided)
        finally:
            self.checking = False

    def _limit_decided(self, decision) -> None:
        """The limiter's answer for a check that may take a Redis round trip."""
        if not self.limiting:
            return  # the client went away while Redis was asked
        self.limiting = False
        if self.checking:  # decided synchronously, inside limits.check
            self._limit_applied(decision)
            return
        try:
            self._limit_applied(decision)
        except Exception:
            self.internal_error()

    def _limit_applied(self, decision) -> None:
        """Go on with an admitted request, or answer 429 (503 when the limiter is unavailable)."""
        if decision.allowed:
            self.limit_outcome = LIMIT_ALLOWED
            self.limit_headers = decision.headers
            self._dispatch()
            return
        status = decision.status
        self.limit_outcome = LIMIT_LIMITED if status == 429 else LIMIT_UNAVAILABLE
        self._answer(status, *gateway_error(
            self.head, status, "rate limit exceeded" if status == 429 else "rate limiter unavailable",
            self.request_id, decision.headers))
