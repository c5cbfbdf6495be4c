"""The error-ratio circuit breaker of one upstream in one worker.

Theory of operation
-------------------
The group counts the outcome of every exchange with its servers:
``answered`` for a response head that is not a failure, ``failed`` for a
failure (no connection, a reset, a timeout, garbage, or a status in
``retry_on_status``). Requests only bump those two counters; the breaker
looks at them on the worker's clock tick (``tick``), never per request.

States:

- CLOSED: requests pass. On each tick the counts of the last ``window_s``
  are taken from a short history of snapshots (one per tick); when at
  least ``min_requests`` exchanges ended in it and the share that failed is
  ``ratio`` or more, the breaker opens.
- OPEN: the group's ``tripped`` flag is set and requests are answered 503
  at once (with ``Retry-After``) without contacting a server, for
  ``open_s``; then it half-opens.
- HALF_OPEN: ``PROBES`` requests are let through. The first failure
  reopens it at once (``failed_while_tripped``); a success closes it on the
  next tick, with a fresh window. If the probes end without an outcome
  (e.g. no server could be chosen), new probes are allowed after ``open_s``.

The request path tests one attribute while all is well: ``group.tripped``.
Each worker has its own breaker, as it has its own pools: sharing the
counts across workers would cost a shared-memory write per request, and a
worker that sees its share of the traffic fail sees the same ratio.
Transitions are logged at WARNING.
"""

import math
from collections import deque

from fastgate.observe.errorlog import log

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
PROBES = 3
"""Requests let through while half-open."""


class ErrorRatioBreaker:
    __slots__ = ("group", "ratio", "min_requests", "window_s", "open_s", "state", "until", "history",
                 "probes_left", "mark_answered")

    def __init__(self, group, ratio: float, min_requests: int, window_s: float, open_s: float) -> None:
        self.group = group
        self.ratio = ratio
        self.min_requests = min_requests
        self.window_s = window_s
        self.open_s = open_s
        self.state = CLOSED
        self.until = 0.0
        """OPEN: when it half-opens. HALF_OPEN: when unused probes are granted again."""
        self.history: deque[tuple[float, int, int]] = deque(((0.0, 0, 0),))
        """(time, answered, failed) snapshots, one per tick; the first is the base the window's counts
        are taken from (at or before its start, or the counters' start)."""
        self.probes_left = 0
        self.mark_answered = 0
        """The group's answered count when it half-opened: a larger one is a probe's success."""

    def tick(self, now: float) -> None:
        """Called on every clock tick: roll the window and move between states."""
        group = self.group
        history = self.history
        history.append((now, group.answered, group.failed))
        start = now - self.window_s
        while len(history) > 1 and history[1][0] <= start:
            history.popleft()
        state = self.state
        if state == CLOSED:
            _, answered, failed = history[0]
            failed = group.failed - failed
            total = group.answered - answered + failed
            if total >= self.min_requests and failed >= self.ratio * total:
                self._open(now, f"{failed} of {total} exchanges failed in the last {self.window_s:g}s")
        elif state == OPEN:
            if now >= self.until:
                self.state = HALF_OPEN
                self.probes_left = PROBES
                self.until = now + self.open_s
                self.mark_answered = group.answered
                log.warning("upstream %s: circuit breaker half-open: letting %d probe requests through",
                            group.name, PROBES)
        elif group.answered > self.mark_answered:
            self.state = CLOSED
            group.tripped = False
            history.clear()
            history.append((now, group.answered, group.failed))
            log.warning("upstream %s: circuit breaker closed: a probe request succeeded", group.name)
        elif now >= self.until:
            self.probes_left = PROBES
            self.until = now + self.open_s

    def admit(self) -> bool:
        """While tripped: whether this request may go (a half-open probe)."""
        if self.state == HALF_OPEN and self.probes_left > 0:
            self.probes_left -= 1
            return True
        return False

    def retry_after(self, now: float) -> int:
        """Seconds a refused client should wait before trying again."""
        return max(1, math.ceil(self.until - now)) if self.state == OPEN else 1

    def failed_while_tripped(self, now: float) -> None:
        """An exchange failed while the breaker is not closed: a half-open breaker opens again."""
        if self.state == HALF_OPEN:
            self._open(now, "a probe request failed")

    def _open(self, now: float, why: str) -> None:
        self.state = OPEN
        self.until = now + self.open_s
        self.group.tripped = True
        log.warning("upstream %s: circuit breaker open for %gs: %s", self.group.name, self.open_s, why)
