"""The timeouts a route's requests have with its upstream: the route's own, else the upstream's.

Theory of operation
-------------------
Four bounds, all kept as deadlines on the worker's coarse clock
(runtime/clock.py), never as a timer per request:

- ``connect_s``: one TCP connect; past it the connect failed (504, or a
  connect retry on another server).
- ``try_s``: one attempt, from the moment its request is completely sent
  (written on a pooled connection, or on a new one once it is made, and
  for a request with a body, once its last byte came from the client) to
  its complete response head. Past it the attempt failed as timed out
  (504) and may be retried. 0.0: no bound but ``idle_s``.
- ``total_s``: the whole request, from the moment the gateway had all of it
  (head and body) to the final response head, across every attempt,
  connect and back-off. Each attempt's head is due by the earlier of its
  try deadline and the total deadline; no retry starts when less than
  retry.MIN_RETRY_TIME_S of it is left. Past it the answer is 504. The
  response body after the head is bounded by ``idle_s`` only, so a long
  download is not cut. 0.0: no bound.
- ``idle_s``: the longest pause between two reads from the server while a
  response is awaited or relayed (the upstream's read_timeout).
"""

from fastgate.config.schema import Route as RouteConfig
from fastgate.config.schema import Upstream


class UpstreamTimeouts:
    """Seconds; immutable after load and shared by every request of the routes that use it."""

    __slots__ = ("connect_s", "try_s", "total_s", "idle_s")

    def __init__(self, connect_s: float, try_s: float, total_s: float, idle_s: float) -> None:
        self.connect_s = connect_s
        self.try_s = try_s
        self.total_s = total_s
        self.idle_s = idle_s

    @classmethod
    def of_upstream(cls, config: Upstream) -> "UpstreamTimeouts":
        return cls(float(config.connect_timeout), float(config.try_timeout), float(config.total_timeout),
                   float(config.read_timeout))

    def for_route(self, config: RouteConfig) -> "UpstreamTimeouts":
        """These timeouts with the route's overrides; ``self`` when the route sets none."""
        fields = (config.connect_timeout, config.try_timeout, config.total_timeout, config.idle_timeout)
        if fields == (None, None, None, None):
            return self
        return UpstreamTimeouts(*(float(own) if own is not None else default for own, default in zip(
            fields, (self.connect_s, self.try_s, self.total_s, self.idle_s))))

    def head_deadline(self, now: float, total_deadline: float) -> float:
        """When the head of an attempt whose request is sent at ``now`` is due; 0.0: no bound."""
        try_s = self.try_s
        if not try_s:
            return total_deadline
        deadline = now + try_s
        return total_deadline if total_deadline and total_deadline < deadline else deadline
