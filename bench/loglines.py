"""Count the lines an access log gains, once the proxy has written what it buffered.

fastgate (like nginx with ``buffer=``) holds log lines in memory and writes
them on a clock tick, at least once a second, so a count taken right after a
wrk run misses its last lines. ``settled()`` waits until the file has stopped
growing for longer than a tick.
"""

import time
from pathlib import Path

QUIET_S = 1.5
"""No new line for this long: everything buffered was written (a tick is at most 1 s)."""
MAX_WAIT_S = 30.0
_CHUNK = 1 << 20


class LogLines:
    """The lines appended to one file, read from where the last count stopped."""

    def __init__(self, path: Path):
        self.path = path
        self._offset = 0

    def _new(self) -> int:
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:  # nothing written yet
            return 0
        count = 0
        with f:
            f.seek(self._offset)
            while chunk := f.read(_CHUNK):
                count += chunk.count(b"\n")
                self._offset += len(chunk)
        return count

    def settled(self) -> int:
        """Lines appended since the last call, counted once the file has been quiet for QUIET_S."""
        total = self._new()
        deadline = time.monotonic() + MAX_WAIT_S
        quiet_since = time.monotonic()
        while (now := time.monotonic()) - quiet_since < QUIET_S and now < deadline:
            time.sleep(0.25)
            if n := self._new():
                total += n
                quiet_since = time.monotonic()
        return total
