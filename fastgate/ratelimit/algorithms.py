"""GCRA, sliding-window counter and fixed window as pure functions of (state, now).

Theory of operation
-------------------
Time is an integer count of microseconds and a limit admits ``count``
requests per ``period_us``. Each algorithm keeps at most three integers of
state per key. The first is always the state's expiry: the instant (absolute
time) from which it means the same as no state, so a store can forget it.
An algorithm is two functions of the stored state (None when there is none)
and the current time:

- ``admit(params, state, now)``: whether one more request fits now. Returns
  the state to store if it is counted, or None when the request does not
  fit. This runs on every check, so it does no more arithmetic than the
  decision needs.
- ``show(params, state, now, admitted)``: what the client is told, for the
  rate-limit headers: (remaining, reset_us, retry_us). ``remaining`` is the
  requests still admitted after this one (0 when it was denied),
  ``reset_us`` the time until the budget is full again (after counting this
  request when admitted), ``retry_us`` the time until a request fits (0
  when admitted). Only computed when headers are sent.

The local store calls these functions under its lock. The Redis store runs
the same formulas in Lua (lua.py), with Redis's clock, and its script
returns the same three numbers; the unit tests pin these functions to exact
numbers and the store tests check the Lua against the same admitted counts.

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
from collections.abc import Callable
from typing import NamedTuple

State = tuple[int, ...]
"""One to three integers per key: the expiry, then what the algorithm needs (see each admit function)."""
Shown = tuple[int, int, int]
"""remaining, reset_us, retry_us (see the module doc)."""


class LimitParams(NamedTuple):
    """What the algorithms need to know about a limit, in microseconds."""

    count: int
    period_us: int
    capacity: int
    """GCRA bucket size: count + burst."""
    interval_us: int
    """GCRA emission interval: ceil(period_us / count)."""
    tolerance_us: int
    """GCRA: how far ahead of now the theoretical arrival time may be for a request to fit,
    (capacity - 1) * interval_us."""

    @classmethod
    def of(cls, count: int, period_us: int, burst: int) -> "LimitParams":
        interval = -(-period_us // count)
        return cls(count, period_us, count + burst, interval, (count + burst - 1) * interval)


Admit = Callable[[LimitParams, State | None, int], State | None]
Show = Callable[[LimitParams, State | None, int, bool], Shown]


class Algorithm(NamedTuple):
    admit: Admit
    show: Show
    size: int
    """Integers in its state."""


def gcra_admit(p: LimitParams, state: State | None, now: int) -> State | None:
    """State: (tat,): the theoretical arrival time is also the expiry (the bucket is full again)."""
    tat = state[0] if state is not None and state[0] > now else now
    if tat - now > p.tolerance_us:
        return None
    return (tat + p.interval_us,)


def gcra_show(p: LimitParams, state: State | None, now: int, admitted: bool) -> Shown:
    t = p.interval_us
    tat = state[0] if state is not None and state[0] > now else now
    if admitted:
        return (now + p.capacity * t - tat) // t - 1, tat + t - now, 0
    return 0, tat - now, tat + t - p.capacity * t - now


def _sliding_counts(p: LimitParams, state: State | None, now: int) -> tuple[int, int, int, int]:
    """(window index, time elapsed in it, count of the previous window, count of this one)."""
    period = p.period_us
    index = now // period
    previous = current = 0
    if state is not None and state[0] > now:
        state_index = state[0] // period - 2
        if state_index == index:
            previous, current = state[1], state[2]
        elif state_index == index - 1:
            previous = state[2]
    return index, now - index * period, previous, current


def sliding_window_admit(p: LimitParams, state: State | None, now: int) -> State | None:
    """State: (end of the next window, count of the previous window, count of this window)."""
    period = p.period_us
    index, elapsed, previous, current = _sliding_counts(p, state, now)
    if previous * (period - elapsed) / period + current + 1 > p.count:
        return None
    return ((index + 2) * period, previous, current + 1)


def sliding_window_show(p: LimitParams, state: State | None, now: int, admitted: bool) -> Shown:
    period, count = p.period_us, p.count
    index, elapsed, previous, current = _sliding_counts(p, state, now)
    if admitted:
        estimate = previous * (period - elapsed) / period + current
        return (max(0, math.floor(count - estimate)) - 1, _sliding_reset(period, elapsed, previous, current + 1), 0)
    if current + 1 <= count:
        # The previous window's weight has to fall until previous * weight <= count - 1 - current.
        retry = math.ceil(period * (1 - (count - 1 - current) / previous)) - elapsed
    else:
        # Wait for the next window, where this window's count decays instead.
        retry = period - elapsed + math.ceil(period * (1 - (count - 1) / current))
    return 0, _sliding_reset(period, elapsed, previous, current), max(1, retry)


def _sliding_reset(period: int, elapsed: int, previous: int, current: int) -> int:
    if current:
        return 2 * period - elapsed
    if previous:
        return period - elapsed
    return 0


def _fixed_count(p: LimitParams, state: State | None, now: int) -> tuple[int, int]:
    """(end of the current window, count in it)."""
    end = (now // p.period_us + 1) * p.period_us
    return end, state[1] if state is not None and state[0] == end else 0


def fixed_window_admit(p: LimitParams, state: State | None, now: int) -> State | None:
    """State: (end of the window, count of this window)."""
    end, current = _fixed_count(p, state, now)
    if current >= p.count:
        return None
    return (end, current + 1)


def fixed_window_show(p: LimitParams, state: State | None, now: int, admitted: bool) -> Shown:
    end, current = _fixed_count(p, state, now)
    window_left = end - now
    if admitted:
        return p.count - current - 1, window_left, 0
    return 0, window_left if current else 0, window_left


ALGORITHMS = {
    "gcra": Algorithm(gcra_admit, gcra_show, 1),
    "sliding_window": Algorithm(sliding_window_admit, sliding_window_show, 3),
    "fixed_window": Algorithm(fixed_window_admit, fixed_window_show, 2),
}
