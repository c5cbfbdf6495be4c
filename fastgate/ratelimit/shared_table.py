"""A fixed-size hash table in shared memory, read and written by every worker process of one machine.

Theory of operation
-------------------
The master creates the table before it forks: an anonymous ``MAP_SHARED``
mapping and a ``multiprocessing.Lock`` (a process-shared semaphore), so all
workers see the same bytes and the same lock. The mapping is read and
written as native int64 words (``words``, a memoryview: one subscript per
word, no struct packing on the hot path). Layout, after an 8-word header
whose word 0 holds the pid of the lock holder, two arrays of ``capacity +
PROBE - 1`` entries::

    fingerprints  1 word    hash(key) of the occupant; 0 = free
    records       3 words   the algorithm's state (algorithms.State), whose
                            first word is its expiry (microseconds, monotonic
                            clock; 0 = no state)

A check of one limit is one call, ``apply``: find the key's record, read
its state (only the words the algorithm uses: GCRA's state is its expiry
alone), let the algorithm decide, store the new state if admitted. A check
of several limits, all counted or none, uses ``record``, ``state`` and
``write`` in two passes.

A key lives in one of the ``PROBE`` slots starting at ``hash & (capacity -
1)``: its home slot is tried first, then the window's fingerprints are
read at once. A new key takes the window's slot that expires first (free
slots expire at 0); if that slot still holds a live key, that key is
evicted (counted in ``evictions``) and its client starts with a fresh
budget, so size the table above the number of keys active within one
period. ``hash()`` of bytes uses the interpreter's random seed, which
forked workers inherit from the master, so they agree; 64-bit fingerprints
of different keys collide with probability about n^2 / 2^65.

The common check (one GCRA limit keyed by the client IP, no headers on
admitted answers) has a C twin, ``gcra_admit`` (ratelimit/_native_table.c):
the same lock, owner word, hash and arithmetic in one call of ~0.7k
instructions instead of ~16k. It only admits; anything else (a busy lock,
a key without a slot yet, a request that does not fit) it leaves untouched
to the Python path, which decides it in full.

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
from array import array
import multiprocessing
import os

from fastgate.native import speedup
from fastgate.ratelimit.algorithms import Algorithm, LimitParams, State

LOCK_WAIT_S = 0.25
"""How long a check waits for the lock before suspecting its holder (a healthy holder needs microseconds)."""
PROBE = 8
"""Slots a key may occupy, starting at its home slot."""
RECORD_WORDS = 3
"""Words of one record: the largest algorithm state."""

_HEADER_WORDS = 8
_OWNER = 0
"""Word index of the lock holder's pid."""

log = logging.getLogger("fastgate")
_native = speedup("ratelimit._native_table")

_pid = os.getpid()


def _refresh_pid() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_refresh_pid)


class SharedTable:
    """Create in the master before forking; use ``acquire``/``record``/``words``/``release`` in workers."""

    def __init__(self, capacity: int) -> None:
        self.capacity = self.rounded(capacity)
        slots = self.capacity + PROBE - 1
        self._mask = self.capacity - 1
        self._fingerprints = _HEADER_WORDS
        self._records = _HEADER_WORDS + slots
        self._mem = mmap.mmap(-1, 8 * (self._records + RECORD_WORDS * slots))
        self.words = memoryview(self._mem).cast("q")
        """The whole table as int64 words (see the module doc for the layout)."""
        self._lock = multiprocessing.Lock()
        self._takeover_lock = multiprocessing.Lock()
        self.evictions = 0
        """Live keys dropped to make room (this process)."""
        self.lock_takeovers = 0
        """Times this process inherited the lock from a holder that died holding it."""
        self.lock_timeouts = 0
        """Checks this process admitted because a live holder kept the lock too long."""
        self._fast_admitted = array("Q", [0])
        """Counted by the C checks (``gcra_admit``), in this process."""

    @staticmethod
    def rounded(capacity: int) -> int:
        """The capacity a table asked for ``capacity`` keys has: a power of two, at least 64."""
        return 1 << max(6, (capacity - 1).bit_length())

    def acquire(self) -> bool:
        """Take the lock; False (after about LOCK_WAIT_S) when a live process keeps it."""
        lock = self._lock
        if lock.acquire(False) or lock.acquire(True, LOCK_WAIT_S) or self._take_over():
            self.words[_OWNER] = _pid
            return True
        self.lock_timeouts += 1
        return False

    def release(self) -> None:
        self.words[_OWNER] = 0
        self._lock.release()

    def _take_over(self) -> bool:
        """The lock was not released in time: inherit it if its holder is dead (see the module doc)."""
        if not self._takeover_lock.acquire(False):
            return False
        try:
            holder = self.words[_OWNER]
            if holder and process_alive(holder):
                return False
            if not holder and self._lock.acquire(True, LOCK_WAIT_S):
                return True
            self.lock_takeovers += 1
            log.error("rate limit: process %d died holding the local rate-limit table lock; "
                      "process %d took the lock over", holder, _pid)
            return True
        finally:
            self._takeover_lock.release()

    def gcra_admit(self, prefix: bytes, params: LimitParams):
        """``admit(ip)``: one GCRA limit keyed by ``prefix + ip``, checked in C (ratelimit/_native_table.c),
        True when it counted the request, False when the caller must check it the Python way.
        None without the C speedups."""
        if _native is None:
            return None
        return _native.GcraAdmit(
            table=self._mem, lock=self._lock._semlock.handle, mask=self._mask, fingerprints=self._fingerprints,
            records=self._records, owner=_OWNER, prefix=prefix, interval_us=params.interval_us,
            tolerance_us=params.tolerance_us, admitted=self._fast_admitted).admit

    def fast_admitted(self) -> int:
        """Requests this process admitted through ``gcra_admit`` checks."""
        return self._fast_admitted[0]

    def apply(self, key: bytes, now: int, algorithm: Algorithm, params: LimitParams) -> tuple[State | None, bool]:
        """Check one request against one limit and count it if admitted. Hold the lock.

        Returns the key's state before the request and whether it was admitted.
        """
        words = self.words
        h = hash(key) or 1
        home = h & self._mask
        if words[self._fingerprints + home] == h:
            record = self._records + RECORD_WORDS * home
        else:
            record = self._place(h, home, now)
        expiry = words[record]
        if expiry <= now:
            state = None
        elif algorithm.size == 1:
            state = (expiry,)
        else:
            state = self.state(record, algorithm.size, now)
        new = algorithm.admit(params, state, now)
        if new is None:
            return state, False
        words[record] = new[0]
        if len(new) > 1:
            self.write(record, new)
        return state, True

    def record(self, key: bytes, now: int) -> int:
        """The index in ``words`` of the record of ``key``. Hold the lock."""
        h = hash(key) or 1
        home = h & self._mask
        if self.words[self._fingerprints + home] == h:
            return self._records + RECORD_WORDS * home
        return self._place(h, home, now)

    def _place(self, h: int, home: int, now: int) -> int:
        """The record of fingerprint ``h`` when it is not in its home slot: another slot of its window,
        or the window's slot that expires first, claimed at once with no state (so two keys of one
        check never pick the same free slot)."""
        words = self.words
        first = self._fingerprints + home
        window = words[first : first + PROBE].tolist()
        if h in window:
            return self._records + RECORD_WORDS * (home + window.index(h))
        base = self._records + RECORD_WORDS * home
        expiries = words[base : base + RECORD_WORDS * PROBE : RECORD_WORDS].tolist()
        soonest = min(expiries)
        slot = expiries.index(soonest)
        if soonest > now:
            self.evictions += 1
        words[first + slot] = h
        record = base + RECORD_WORDS * slot
        words[record] = 0
        return record

    def state(self, record: int, size: int, now: int) -> State | None:
        """The state of ``size`` words in a record, or None when it expired. Hold the lock."""
        words = self.words
        expiry = words[record]
        if expiry <= now:
            return None
        return (expiry,) if size == 1 else tuple(words[record : record + size].tolist())

    def write(self, record: int, state: State) -> None:
        """Store a state in a record. Hold the lock."""
        self.words[record : record + len(state)] = array("q", state)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] not in (b"Z", b"X")
