"""GCRA, sliding-window counter and fixed window as pure functions of (state, now).

Theory of operation
-------------------
Time is an integer count of microseconds and a limit admits ``count``
requests per ``period_us``. Each algorithm keeps at most three integers of
state per key and, given the stored state (None when there is none) and the
current time, returns a ``Verdict``: whether one more request fits now, the
state to store if it is counted, and what a client is told (remaining
requests, time until the budget is full again, time until a request fits).

The local store calls these functions under its lock. The Redis store runs
the same formulas in Lua (lua.py), with Redis's clock; the unit tests pin
these functions to exact numbers and the store tests check the Lua against
the same admitted counts.

GCRA (generic cell rate algorithm): a token bucket of ``count + burst``
requests refilled at ``count / period``, kept as one number, the theoretical
arrival time ``tat``: the instant at which the bucket would be full again.
Each admitted request moves ``tat`` by the emission interval
``T = ceil(period_us / count)`` (rounded up so that integer arithmetic is
exact; the rate is at most 1 us per request lower than configured). A
request fits while ``tat - now <= (capacity - 1) * T``.

Sliding-window counter: counts per clock-aligned window of ``period``; the
estimate for the last ``period`` is ``previous * (time left in the current
window / period) + current``, and a request fits while ``estimate + 1 <=
count``. Within one window without history it is exact; across windows it
is the usual approximation (it assumes the previous window's requests were
spread evenly).

Fixed window: a counter per clock-aligned window; a request fits while
``counter < count``. Up to twice the count can pass around a window boundary.
"""

import math
from typing import NamedTuple

State = tuple[int, int, int]
"""Three integers per key; their meaning depends on the algorithm (see each function)."""


class Verdict(NamedTuple):
    """Built with ``tuple.__new__(Verdict, (...))``: the generated ``__new__`` costs more than the check."""

    allowed: bool
    """One more request fits now."""
    remaining: int
    """Requests that would be admitted now, before this one is counted."""
    reset_us: int
    """Time until the budget is full again, as the state is now (0: it is full)."""
    retry_us: int
    """Time until one request fits (0 when it fits now)."""
    state: State | None
    """The state to store if this request is counted (None when it does not fit)."""
    expires_us: int
    """When that stored state may be forgotten (absolute time): it then means the same as no state."""
    reset_after_us: int
    """Time until the budget is full again once this request is counted."""


_new = tuple.__new__


class LimitParams(NamedTuple):
    """What the algorithms need to know about a limit, in microseconds."""

    count: int
    period_us: int
    capacity: int
    """GCRA bucket size: count + burst."""
    interval_us: int
    """GCRA emission interval: ceil(period_us / count)."""

    @classmethod
    def of(cls, count: int, period_us: int, burst: int) -> "LimitParams":
        return cls(count, period_us, count + burst, -(-period_us // count))


def gcra(p: LimitParams, state: State | None, now: int) -> Verdict:
    """State: (tat, 0, 0)."""
    t = p.interval_us
    tat = state[0] if state is not None and state[0] > now else now
    remaining = (now + p.capacity * t - tat) // t
    if remaining >= 1:
        new_tat = tat + t
        return _new(Verdict, (True, remaining, tat - now, 0, (new_tat, 0, 0), new_tat, new_tat - now))
    return _new(Verdict, (False, 0, tat - now, tat + t - p.capacity * t - now, None, 0, 0))


def sliding_window(p: LimitParams, state: State | None, now: int) -> Verdict:
    """State: (window index, count of the previous window, count of this window)."""
    period, count = p.period_us, p.count
    index = now // period
    elapsed = now - index * period
    previous = current = 0
    if state is not None:
        if state[0] == index:
            previous, current = state[1], state[2]
        elif state[0] == index - 1:
            previous = state[2]
    estimate = previous * (period - elapsed) / period + current
    remaining = max(0, math.floor(count - estimate))
    reset = _sliding_reset(period, elapsed, previous, current)
    if estimate + 1 <= count:
        return _new(Verdict, (True, remaining, reset, 0, (index, previous, current + 1), (index + 2) * period,
                              _sliding_reset(period, elapsed, previous, current + 1)))
    if current + 1 <= count:
        # The previous window's weight has to fall until previous * weight <= count - 1 - current.
        retry = math.ceil(period * (1 - (count - 1 - current) / previous)) - elapsed
    else:
        # Wait for the next window, where this window's count decays instead.
        retry = period - elapsed + math.ceil(period * (1 - (count - 1) / current))
    return _new(Verdict, (False, 0, reset, max(1, retry), None, 0, 0))


def _sliding_reset(period: int, elapsed: int, previous: int, current: int) -> int:
    if current:
        return 2 * period - elapsed
    if previous:
        return period - elapsed
    return 0


def fixed_window(p: LimitParams, state: State | None, now: int) -> Verdict:
    """State: (window index, count of this window, 0)."""
    index = now // p.period_us
    current = state[1] if state is not None and state[0] == index else 0
    window_left = (index + 1) * p.period_us - now
    reset = window_left if current else 0
    if current < p.count:
        return _new(Verdict, (True, p.count - current, reset, 0, (index, current + 1, 0),
                              (index + 1) * p.period_us, window_left))
    return _new(Verdict, (False, 0, reset, window_left, None, 0, 0))


ALGORITHMS = {"gcra": gcra, "sliding_window": sliding_window, "fixed_window": fixed_window}
