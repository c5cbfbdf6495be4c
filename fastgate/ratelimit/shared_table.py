"""A fixed-size hash table in shared memory, read and written by every worker process of one machine.

Theory of operation
-------------------
The master creates the table before it forks: an anonymous ``MAP_SHARED``
mapping and a ``multiprocessing.Lock`` (a process-shared semaphore), so all
workers see the same bytes and the same lock. Layout, after a 64-byte
header holding the pid of the lock holder, two arrays of ``capacity +
PROBE - 1`` entries::

    fingerprints  int64      hash(key) of the occupant; 0 = free
    records       4 x int64  expiry (microseconds, monotonic clock; 0 = no
                             state), then the algorithm's state (algorithms.State)

A key lives in one of the ``PROBE`` slots starting at ``hash & (capacity -
1)``; the window's fingerprints are read with one unpack. A new key takes
the window's slot that expires first (free slots expire at 0); if that slot
still holds a live key, that key is evicted (counted in ``evictions``) and
its client starts with a fresh budget, so size the table above the number
of keys active within one period. ``hash()`` of bytes uses the
interpreter's random seed, which forked workers inherit from the master, so
they agree; 64-bit fingerprints of different keys collide with probability
about n^2 / 2^65.

Locking: one check reads and writes all its limits under the lock, so a
check is atomic. The lock is held for microseconds, but a worker can still
be killed inside (SIGKILL, the OOM killer) and would leave it taken for
ever. So the holder writes its pid into the header, and a process that
waited ``LOCK_WAIT_S`` in vain looks at it:

- holder dead (or a zombie): the waiter inherits the lock: it now holds it
  and releases it as usual, so the lock is never released twice;
- pid 0 (the holder died just after acquiring or just before releasing, or
  the lock was changing hands): wait once more, then inherit;
- holder alive (stopped, or starved of CPU): give up; the caller admits the
  request and counts it in ``lock_timeouts``.
"""

import logging
import mmap
import multiprocessing
import os
import struct

from fastgate.ratelimit.algorithms import State

LOCK_WAIT_S = 0.25
"""How long a check waits for the lock before suspecting its holder (a healthy holder needs microseconds)."""
PROBE = 8
"""Slots a key may occupy, starting at its home slot."""

_HEADER = 64
_OWNER = struct.Struct("<q")
_WINDOW = struct.Struct(f"<{PROBE}q")
_INT = struct.Struct("<q")
_RECORD = struct.Struct("<4q")
_RECORD_WINDOW = struct.Struct(f"<{4 * PROBE}q")

log = logging.getLogger("fastgate")

_pid = os.getpid()


def _refresh_pid() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_refresh_pid)


class SharedTable:
    """Create in the master before forking; use ``acquire``/``lookup``/``store``/``release`` in workers."""

    def __init__(self, capacity: int) -> None:
        self.capacity = self.rounded(capacity)
        slots = self.capacity + PROBE - 1
        self._mask = self.capacity - 1
        self._fp_off = _HEADER
        self._record_off = _HEADER + 8 * slots
        self._mem = mmap.mmap(-1, self._record_off + _RECORD.size * slots)
        self._lock = multiprocessing.Lock()
        self._takeover_lock = multiprocessing.Lock()
        self.evictions = 0
        """Live keys dropped to make room (this process)."""
        self.lock_takeovers = 0
        """Times this process inherited the lock from a holder that died holding it."""
        self.lock_timeouts = 0
        """Checks this process admitted because a live holder kept the lock too long."""

    @staticmethod
    def rounded(capacity: int) -> int:
        """The capacity a table asked for ``capacity`` keys has: a power of two, at least 64."""
        return 1 << max(6, (capacity - 1).bit_length())

    def acquire(self) -> bool:
        """Take the lock; False (after about LOCK_WAIT_S) when a live process keeps it."""
        if self._lock.acquire(True, LOCK_WAIT_S) or self._take_over():
            _OWNER.pack_into(self._mem, 0, _pid)
            return True
        self.lock_timeouts += 1
        return False

    def release(self) -> None:
        _OWNER.pack_into(self._mem, 0, 0)
        self._lock.release()

    def _take_over(self) -> bool:
        """The lock was not released in time: inherit it if its holder is dead (see the module doc)."""
        if not self._takeover_lock.acquire(False):
            return False
        try:
            holder = _OWNER.unpack_from(self._mem, 0)[0]
            if holder and _alive(holder):
                return False
            if not holder and self._lock.acquire(True, LOCK_WAIT_S):
                return True
            self.lock_takeovers += 1
            log.error("rate limit: process %d died holding the local rate-limit table lock; "
                      "process %d took the lock over", holder, _pid)
            return True
        finally:
            self._takeover_lock.release()

    def lookup(self, key: bytes, now: int) -> tuple[int, State | None]:
        """The slot of ``key`` and its state (None if absent or expired). Hold the lock.

        A key not in the table is given a slot at once (claimed with no state),
        so two keys of one check never pick the same free slot.
        """
        h = hash(key) or 1
        home = h & self._mask
        mem = self._mem
        window = _WINDOW.unpack_from(mem, self._fp_off + 8 * home)
        if h in window:
            slot = home + window.index(h)
            record = _RECORD.unpack_from(mem, self._record_off + 32 * slot)
            return slot, (record[1:] if record[0] > now else None)
        expiries = _RECORD_WINDOW.unpack_from(mem, self._record_off + 32 * home)[0::4]
        soonest = min(expiries)
        slot = home + expiries.index(soonest)
        if soonest > now:
            self.evictions += 1
        _INT.pack_into(mem, self._fp_off + 8 * slot, h)
        _INT.pack_into(mem, self._record_off + 32 * slot, 0)
        return slot, None

    def store(self, slot: int, state: State, expires: int) -> None:
        """Write a slot's state and expiry (absolute, microseconds). Hold the lock."""
        _RECORD.pack_into(self._mem, self._record_off + 32 * slot, expires, *state)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] not in (b"Z", b"X")
