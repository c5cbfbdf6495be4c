"""A worker gives the memory it freed back to the operating system once a crowd of connections left.

Theory of operation
-------------------
Every open connection holds memory in the worker: its objects, its
transports and, while its client reads slower than the upstream sends, a
read or two of the answer (upstream/connection.py bounds that). When
hundreds of them close, Python frees all of it, but glibc's malloc keeps the
freed blocks in the process for later: it returns only a free stretch at the
top of its heap (past M_TRIM_THRESHOLD), and one live object above the freed
ones pins them all. Measured with bench/slow_readers.py: 500 stalled readers
grew the worker by 17 MiB, and it kept every byte after they left (with
uvloop's 256 KB reads it grew by 55 MiB and kept 48).

``malloc_trim(0)`` returns the free pages in the middle of the heap too
(madvise), so the resident size falls back to what is in use: after those 500
readers left, to within 1.5 MiB of the size from before they came. It walks
the heap's free blocks, 2 to 6 ms after those 500, so it runs from the clock
tick, and only when the count of open client connections fell by
TRIM_AFTER_CLOSED or more below its highest since the last trim: after a
crowd left, never per request or per connection. A worker whose connections
come and go at a steady count reuses what it freed and is never trimmed.

Fixing glibc's thresholds instead (mallopt M_TRIM_THRESHOLD,
M_MMAP_THRESHOLD) would not free the pinned middle of the heap, and sending
mid-sized blocks to mmap would cost system calls and page faults on every
large read. Where the C library has no malloc_trim (musl, macOS),
``malloc_trim()`` is None and MemoryGiveBack does nothing.
"""

import ctypes
import ctypes.util
from collections.abc import Callable

TRIM_AFTER_CLOSED = 64
"""Open client connections that must have gone, below the most open at once since the last trim,
before a tick trims."""


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim(pad)``, or None where the C library has none."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return trim


class MemoryGiveBack:
    """Told the worker's count of open client connections on every clock tick; trims after a fall."""

    __slots__ = ("_trim", "_peak", "trims")

    def __init__(self, trim: Callable[[int], int] | None) -> None:
        self._trim = trim
        """malloc_trim, or None: do nothing."""
        self._peak = 0
        """The most connections open at once since the last trim."""
        self.trims = 0

    def on_tick(self, open_connections: int) -> None:
        if open_connections >= self._peak:
            self._peak = open_connections
        elif self._peak - open_connections >= TRIM_AFTER_CLOSED and self._trim is not None:
            self._peak = open_connections
            self.trims += 1
            self._trim(0)
