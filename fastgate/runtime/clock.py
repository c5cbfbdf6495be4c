"""The worker's coarse clock: cached time, the Date header, and deadline sweeps.

Theory of operation
-------------------
Creating and cancelling a timer per request costs more than the rest of a
small request's Python work, so connections do not arm timers. Each one
that may time out has a ``deadline`` (a loop time, 0.0 for none) and an
``on_deadline()`` method, and is registered in ``Clock.watched`` while it
is open. One periodic tick (every ``tick_s``, a fraction of the shortest
configured timeout) refreshes ``now`` and the Date header, and calls
``on_deadline()`` on every watched object whose deadline has passed. A
deadline therefore fires between 0 and ``tick_s`` late, and setting one is
a float store: ``conn.deadline = clock.now + timeout``.
"""

import asyncio
import logging
import time
from email.utils import formatdate

log = logging.getLogger("fastgate")
"""The error log (observe/errorlog.py configures it), named here: runtime/ imports nothing of fastgate."""


class Clock:
    __slots__ = ("loop", "tick_s", "now", "date_header", "watched", "on_tick", "_handle", "_second")

    def __init__(self, loop: asyncio.AbstractEventLoop, tick_s: float) -> None:
        self.loop = loop
        self.tick_s = tick_s
        self.now = loop.time()
        self.date_header = b""
        """``\\r\\nDate: ...`` for responses the gateway writes itself."""
        self.watched: set = set()
        self.on_tick: list = []
        """Functions called on every tick, after the deadlines (e.g. flushing buffered logs)."""
        self._second = -1
        self._handle: asyncio.TimerHandle | None = None
        self._refresh_date()

    def start(self) -> None:
        self._handle = self.loop.call_later(self.tick_s, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _refresh_date(self) -> None:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self.date_header = b"\r\nDate: " + formatdate(second, usegmt=True).encode()

    def _tick(self) -> None:
        self._handle = self.loop.call_later(self.tick_s, self._tick)
        self.now = now = self.loop.time()
        self._refresh_date()
        expired = [w for w in self.watched if 0.0 < w.deadline <= now]
        for watched in expired:
            try:
                watched.on_deadline()
            except Exception:
                log.exception("internal error in a timeout handler")
                self.watched.discard(watched)
        for call in self.on_tick:
            try:
                call()
            except Exception:
                log.exception("internal error in a clock tick handler")
