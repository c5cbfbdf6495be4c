"""Retry policy: whether a failed attempt may go again, to which server, and after how long.

Theory of operation
-------------------
A request gets a second attempt in two cases, each time on a server of the
group it has not been tried on yet:

- **Connect retries.** No connection could be made to the chosen server
  (refused, unreachable, timed out). Nothing reached the upstream, and the
  client connection still holds every byte it was going to send, so any
  request may go again, body and all, up to ``connect_retries`` times.
- **Retries.** The request was sent and its attempt failed: the server
  reset or closed the connection, sent garbage, timed out before the
  response head, or answered a status in ``retry_on_status``. Only an
  idempotent request without a body (nothing was buffered to replay), that
  is not an upgrade, may go again, up to ``retries`` times, after a random
  back-off (full jitter, between 0 and base x 2^(attempt-1)), and only
  while nothing of the response reached the client (the caller checks
  that: it owns the response).

Neither goes to a group whose circuit breaker is not closed (upstream/breaker.py).
Both kinds stop when the request's total timeout (upstream/timeouts.py) has
less than ``MIN_RETRY_TIME_S`` left: an attempt that cannot get an answer
in time is not worth its load. The back-off is cut to leave that much.
The attempt cap is per route (a route's ``retries``, else its upstream's).

Retries are bounded by a budget, one per upstream in each worker: the first
retry of a request takes a place in it and the request gives the place back
when it ends; a request may start retrying only while the retries in flight
are fewer than ``retry_budget`` x the group's requests in flight (but
``MIN_RETRY_CONCURRENCY`` are always allowed). When every server struggles,
most failing requests then fail at once instead of multiplying the load.

The mechanics (dropping the failed exchange, the back-off timer, sending
again) belong to the client connection (transport/h1_server.py); this
module only decides.
"""

import random

IDEMPOTENT = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"))
"""Methods whose request may be sent twice (RFC 9110 9.2.2)."""
MIN_RETRY_CONCURRENCY = 3
"""Retries always allowed at once, whatever the budget (as Envoy's min_retry_concurrency)."""
MIN_RETRY_TIME_S = 0.05
"""No further attempt starts with less than this left of the request's total timeout."""
NO_DEADLINE = float("inf")
"""The time left of a request without a total timeout."""


class RetryBudget:
    """Retries in flight to one upstream from one worker, bounded by a share of its requests in flight."""

    __slots__ = ("ratio", "in_flight")

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio
        self.in_flight = 0
        """Requests of this worker that are on a retry now."""

    def allows(self, requests_in_flight: int) -> bool:
        """Whether one more request may start retrying now."""
        return self.in_flight < max(MIN_RETRY_CONCURRENCY, self.ratio * requests_in_flight)

    def take(self) -> None:
        self.in_flight += 1

    def give_back(self) -> None:
        self.in_flight -= 1


class RetryPolicy:
    """How a route's requests go again within their group; built once at load (a route that sets
    no ``retries`` shares its upstream's), shared by the worker's requests."""

    __slots__ = ("group", "connect_retries", "retries", "backoff_s")

    def __init__(self, group, connect_retries: int, retries: int, backoff_s: float) -> None:
        self.group = group
        self.connect_retries = connect_retries
        self.retries = retries
        """Further attempts after the request was sent (the attempt cap is retries + 1)."""
        self.backoff_s = backoff_s
        """Base of the back-off before a retry."""

    def with_retries(self, retries: int | None) -> "RetryPolicy":
        """This policy with a route's attempt cap (``self`` when the route sets none or the same)."""
        if retries is None or retries == self.retries:
            return self
        return RetryPolicy(self.group, self.connect_retries, retries, self.backoff_s)

    def server_after_connect_failure(self, head, client_ip: bytes, tried: list, left_s: float):
        """The pool to connect to instead, or None. ``tried`` holds every pool tried, the failed one
        last; ``left_s`` is what is left of the total timeout (NO_DEADLINE without one)."""
        if len(tried) > self.connect_retries or left_s < MIN_RETRY_TIME_S or self.group.tripped:
            return None
        return self.group.pick_other(head, client_ip, tried)

    def server_for_retry(self, head, client_ip: bytes, tried: list, attempt: int, left_s: float,
                         replayable: bool = False):
        """The pool to send the request to again, or None when it may not go again.

        ``attempt`` is the number of retries it had so far; its first retry
        also needs room in the budget (take it with ``budget.take()``).
        ``replayable``: the request may go again whatever its method and body
        (a gRPC call its route marks retryable, read whole).
        """
        group = self.group
        if (not replayable and (head.has_body or head.upgrade or head.method not in IDEMPOTENT)
                or attempt >= self.retries or left_s < MIN_RETRY_TIME_S or group.tripped):
            return None
        if not attempt and not group.budget.allows(group.in_flight()):
            return None
        return group.pick_other(head, client_ip, tried)

    def backoff(self, attempt: int, left_s: float) -> float:
        """Seconds to wait before retry number ``attempt`` (1 for the first), leaving
        MIN_RETRY_TIME_S of the ``left_s`` the request has."""
        return min(random.uniform(0.0, self.backoff_s * 2 ** (attempt - 1)), left_s - MIN_RETRY_TIME_S)
