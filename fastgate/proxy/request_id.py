"""X-Request-ID values: unique across workers and restarts, cheap to make."""

import os


class RequestIds:
    """A random per-worker prefix and a counter: 16 + 8 hex digits.

    Create one in each worker after fork, so workers never share a prefix.
    """

    __slots__ = ("_prefix", "_count")

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex().encode()
        self._count = 0

    def next(self) -> bytes:
        self._count = count = self._count + 1
        return b"%s%08x" % (self._prefix, count & 0xFFFFFFFF)
