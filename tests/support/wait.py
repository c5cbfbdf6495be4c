"""Waiting for a condition another process or thread brings about, with a generous bound.

The bound is a safety net against a hang, never a performance threshold: tests
wait for a state, and fail only when the state never comes.
"""

import time
from typing import Callable, TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 20.0


def wait_until(predicate: Callable[[], T], message: str, timeout_s: float = DEFAULT_TIMEOUT_S,
               interval_s: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting until {message}")
        time.sleep(interval_s)


def wait_stable(read: Callable[[], int], settle_s: float = 1.0, timeout_s: float = 60.0) -> int:
    """Wait until the counter ``read()`` stops growing for ``settle_s``; return its value.

    Used to detect that a transfer has stalled on back-pressure: the value is
    not compared to any speed, only observed to stop.
    """
    deadline = time.monotonic() + timeout_s
    last = read()
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= settle_s:
            return now
    raise AssertionError(f"counter kept changing for {timeout_s}s (last value {last})")
