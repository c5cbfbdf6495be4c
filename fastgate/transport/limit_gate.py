"""The rate-limit phase of a client connection: check the route's limits, then go on or answer.

``LimitGate`` is a part of ``ClientConnection`` (transport/h1_server.py),
kept in its own file: it runs after routing and before a request is
answered or forwarded (DESIGN's access-filter phase). It uses the
connection's request state (``head``, ``route``, ``buffer``, ``state``,
``deadline``...) and hands over through ``_dispatch`` (go on) and
``_answer_locally`` (429/503).

- A local-store decision is taken synchronously: no state change.
- A Redis decision may come later: the connection waits in LIMIT, pipelined
  bytes collect in ``buffer``, and ``_limit_decided`` resumes it.
- A limit keyed by a body field is checked once the connection has read the
  body's first bytes (BUFFER, ``transport/body_buffer.py``): ``body_prefix``.
"""

from fastgate.observe.record import LIMIT_ALLOWED, LIMIT_LIMITED, LIMIT_UNAVAILABLE
from fastgate.proxy.errors import error_response
from fastgate.transport.states import HEAD, IDLE, LIMIT
from fastgate.wire.h1 import header_value


class LimitGate:
    __slots__ = ()

    def _check_limits(self, body_prefix: bytes | None, rest: bytes) -> None:
        head = self.head
        limits = self.route.limits
        admit_ip = limits.admit_ip
        if admit_ip is not None and admit_ip(self.client_ip):
            self.state = HEAD
            self.limit_outcome = LIMIT_ALLOWED
            self.limit_headers = b""
            self._dispatch(head, self.route, rest)
            return
        raw = head.raw
        keys = limits.keys(
            self.client_ip, lambda name: header_value(raw, name), head.query[1:], body_prefix,
            header_value(raw, b"content-type") if body_prefix is not None else None)
        if keys is None:
            self.state = HEAD
            self._dispatch(head, self.route, rest)
            return
        decision = limits.check_now(keys)
        if decision is not None:  # the local store decides at once: no LIMIT state, no callback
            self.state = HEAD
            self._limit_applied(decision, rest)
            return
        self.state = LIMIT
        self.buffer = rest
        self.waiting = IDLE
        self.deadline = 0.0  # the limiter decides within its own deadline
        self.checking = True
        try:
            limits.check(keys, self._limit_decided)
        finally:
            self.checking = False

    def _limit_decided(self, decision) -> None:
        """The limiter's answer for a check that may take a Redis round trip."""
        if self.state != LIMIT:
            return  # the connection closed while Redis was asked
        later = not self.checking
        rest = self.buffer
        self.buffer = b""
        self.state = HEAD
        self._limit_applied(decision, rest)
        if later:
            self._resume_reading()
            if self.state == HEAD:
                self._head_bytes(b"")

    def _limit_applied(self, decision, rest: bytes) -> None:
        """Go on with an admitted request, or answer 429 (503 when the limiter is unavailable)."""
        if decision.allowed:
            self.limit_outcome = LIMIT_ALLOWED
            self.limit_headers = decision.headers
            self._dispatch(self.head, self.route, rest)
            return
        status = decision.status
        self.limit_outcome = LIMIT_LIMITED if status == 429 else LIMIT_UNAVAILABLE
        self._answer_locally(status, error_response(
            status, "rate limit exceeded" if status == 429 else "rate limiter unavailable",
            self.request_id, self.ctx.clock.date_header, not self.keep_alive or self.head.has_body,
            decision.headers, self.head.method == b"HEAD"), rest)
