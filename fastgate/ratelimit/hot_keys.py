"""Hot keys: rate-limit keys that take a large share of a Redis node's calls, shown to the operator.

Theory of operation
-------------------
One client (or one phone number, one API key) can make one Redis key, and so
the one node that holds its slot, carry much of a gateway's load. Each
worker counts the checks it sends per key (``HotKeyCounter.count``: a batch's
keys counted in one call into C, at most ``TRACKED_KEYS`` keys per window;
later new keys count only in their node's total). At the end of each ``window`` it groups
the counts by node (the link knows which node holds a key: ``node_of``),
writes its ``TOP_KEYS`` busiest keys with their node's total into its
section of ``HotKeyBoard``, and logs every key above ``share`` of its node's
calls (with at least ``min_calls``) as a warning.

``HotKeyBoard`` is shared memory made by the master before it forks: one
section per worker process (claimed by pid, taken back from dead ones), each
``TOP_KEYS`` rows of (key, node, calls, node calls, window end). /metrics
reads every section written in the last two windows, adds the workers' rows
by key and node, and shows the ``TOP_KEYS`` busiest keys of the gateway:
``fastgate_ratelimit_hot_key_calls`` and ``fastgate_ratelimit_hot_key_share``,
labelled by the Redis key name (its values hashed, as Redis stores it) and
the node, so the number of series stays bounded.
"""

import asyncio
import heapq
import logging
import mmap
import multiprocessing
import os
import struct
import time
from collections import Counter
from collections.abc import Callable

from fastgate.ratelimit.shared_table import process_alive

log = logging.getLogger("fastgate")

TOP_KEYS = 10
"""Keys each worker publishes, and keys /metrics shows."""
TRACKED_KEYS = 10_000
"""Distinct keys a worker counts per window."""
SECTIONS = 256
"""Worker processes the board has room for."""

_KEY_BYTES = 120
_NODE_BYTES = 48
_ROW = struct.Struct(f"<{_KEY_BYTES}s{_NODE_BYTES}sqqq")  # key, node, calls, node calls, window end (us)
_SECTION_HEADER = struct.Struct("<q")  # owner pid
_SECTION_BYTES = _SECTION_HEADER.size + TOP_KEYS * _ROW.size


def _now_us() -> int:
    return time.monotonic_ns() // 1000


class HotKeyBoard:
    """The workers' busiest keys, in shared memory; create in the master before forking."""

    def __init__(self, window_s: float) -> None:
        self.window_us = int(window_s * 1_000_000)
        self._mem = mmap.mmap(-1, SECTIONS * _SECTION_BYTES)
        self._lock = multiprocessing.Lock()

    def claim_section(self) -> int:
        """A worker's own section (one that is free or whose process is gone); -1 when none is left."""
        pid = os.getpid()
        with self._lock:
            for section in range(SECTIONS):
                (owner,) = _SECTION_HEADER.unpack_from(self._mem, section * _SECTION_BYTES)
                if owner in (0, pid) or not process_alive(owner):
                    offset = section * _SECTION_BYTES
                    self._mem[offset : offset + _SECTION_BYTES] = bytes(_SECTION_BYTES)
                    _SECTION_HEADER.pack_into(self._mem, offset, pid)
                    return section
        return -1

    def publish(self, section: int, rows: list[tuple[bytes, bytes, int, int]], window_end_us: int) -> None:
        """Replace a section's rows with (key, node, calls, node calls) of the window ending then."""
        offset = section * _SECTION_BYTES + _SECTION_HEADER.size
        packed = b"".join(_ROW.pack(key[:_KEY_BYTES], node[:_NODE_BYTES], calls, node_calls, window_end_us)
                          for key, node, calls, node_calls in rows[:TOP_KEYS])
        self._mem[offset : offset + _ROW.size * TOP_KEYS] = packed.ljust(_ROW.size * TOP_KEYS, b"\0")

    def top(self) -> list[tuple[str, str, int, float]]:
        """The gateway's busiest keys of the last windows: (key, node, calls, share of the node's calls)."""
        recent = _now_us() - 2 * self.window_us
        calls: dict[tuple[bytes, bytes], list[int]] = {}
        for section in range(SECTIONS):
            base = section * _SECTION_BYTES
            (owner,) = _SECTION_HEADER.unpack_from(self._mem, base)
            if not owner:
                continue
            for row in range(TOP_KEYS):
                key, node, count, node_count, window_end = _ROW.unpack_from(
                    self._mem, base + _SECTION_HEADER.size + row * _ROW.size)
                if not count or window_end < recent:
                    continue
                total = calls.setdefault((key.rstrip(b"\0"), node.rstrip(b"\0")), [0, 0])
                total[0] += count
                total[1] += node_count
        busiest = heapq.nlargest(TOP_KEYS, calls.items(), key=lambda item: item[1][0])
        return [(key.decode("latin-1"), node.decode("latin-1"), count, count / node_count)
                for (key, node), (count, node_count) in busiest]

    def exposition(self) -> bytes:
        """The hot-key families in the Prometheus text format, to follow the other metrics."""
        top = self.top()
        lines = ["# HELP fastgate_ratelimit_hot_key_calls Redis calls of the busiest rate-limit keys in the "
                 f"last hot-key window, by Redis key and node (the {TOP_KEYS} busiest).",
                 "# TYPE fastgate_ratelimit_hot_key_calls gauge"]
        lines += [f'fastgate_ratelimit_hot_key_calls{{key="{_label(k)}",node="{_label(n)}"}} {c}'
                  for k, n, c, _ in top]
        lines += ["# HELP fastgate_ratelimit_hot_key_share Share of its node's calls from this gateway that "
                  "the key took in the last hot-key window.",
                  "# TYPE fastgate_ratelimit_hot_key_share gauge"]
        lines += [f'fastgate_ratelimit_hot_key_share{{key="{_label(k)}",node="{_label(n)}"}} {s:.4f}'
                  for k, n, _, s in top]
        lines.append("")
        return "\n".join(lines).encode()


class HotKeyCounter:
    """One worker's counts of the current window, and its report at the window's end."""

    def __init__(self, board: HotKeyBoard, share: float, min_calls: int, node_of: Callable[[bytes], str],
                 loop: asyncio.AbstractEventLoop) -> None:
        self._board = board
        self._share = share
        self._min_calls = min_calls
        self._node_of = node_of
        """The node ("host:port") that holds a key now."""
        self._loop = loop
        self.calls: Counter[bytes] = Counter()
        """Checks sent per key in this window (at most TRACKED_KEYS keys)."""
        self._untracked: dict[str, int] = {}
        """Checks of keys beyond TRACKED_KEYS, by node."""
        self._section = -1
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._section = self._board.claim_section()
        self._timer = self._loop.call_later(self._board.window_us / 1_000_000, self._roll)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def count(self, keys: list[bytes]) -> None:
        """Count one check for each of ``keys`` (a batch's)."""
        calls = self.calls
        if len(calls) + len(keys) <= TRACKED_KEYS:  # room for each, even if all are new
            calls.update(keys)
            return
        untracked = self._untracked
        for key in keys:
            if key in calls:
                calls[key] += 1
            elif len(calls) < TRACKED_KEYS:
                calls[key] = 1
            else:
                node = self._node_of(key)
                untracked[node] = untracked.get(node, 0) + 1

    def _roll(self) -> None:
        """End of a window: publish the busiest keys, log the hot ones, start counting anew."""
        self._timer = self._loop.call_later(self._board.window_us / 1_000_000, self._roll)
        calls, untracked = self.calls, self._untracked
        self.calls, self._untracked = Counter(), {}
        try:
            self.report(calls, untracked)
        except Exception as exc:  # the topology may be unknown for a moment (no client yet)
            log.debug("rate limit: hot keys not reported: %r", exc)

    def report(self, calls: dict[bytes, int], untracked: dict[str, int]) -> None:
        node_calls = dict(untracked)
        nodes: dict[bytes, str] = {}
        for key, count in calls.items():
            node = nodes[key] = self._node_of(key)
            node_calls[node] = node_calls.get(node, 0) + count
        busiest = heapq.nlargest(TOP_KEYS, calls.items(), key=lambda item: item[1])
        rows = [(key, nodes[key].encode(), count, node_calls[nodes[key]]) for key, count in busiest]
        if self._section >= 0:
            self._board.publish(self._section, rows, _now_us())
        for key, node, count, total in rows:
            if count >= self._min_calls and count > self._share * total:
                log.warning("rate limit: hot key %s took %d of %d calls (%.0f%%) to Redis node %s in %.0fs",
                            key.decode("latin-1"), count, total, 100 * count / total, node.decode(),
                            self._board.window_us / 1_000_000)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
