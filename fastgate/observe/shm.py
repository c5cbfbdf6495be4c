"""The instance's shared metrics memory: one seat per worker process, plus the master's totals.

Theory of operation
-------------------
The master maps one anonymous shared region before it forks anything, and
keeps it for its whole life (across reloads). The region holds:

- a header: the instance state (starting, ready, stopping), the number of
  seats, and a sequence number that is odd while the master rewrites the
  totals;
- seat 0, the *totals*: counters of workers that have exited, folded in by
  the master when it reaps them, plus the master's own counters (reloads,
  worker restarts);
- seats 1..N, one per live worker process. The master gives a worker a
  free seat when it forks it. The worker writes its series *layout* (the
  names and labels of its values, msgpack) once, then updates its values
  in place: a float64 array the request path increments directly, so a
  request costs no system call and no copy for metrics.

Pages of an anonymous shared mapping are backed only once touched, so
generous seat sizes cost address space, not memory.

A reader (the admin endpoint in any worker) sums the totals and every live
seat by series; it retries if the sequence number moved while it read, so
a fold never counts a worker twice or not at all.
"""

import mmap
import os
import struct

import msgspec

STARTING, READY, STOPPING = 0, 1, 2
"""Instance states, for /readyz."""

FREE, LIVE = 0, 1

_REGION_HEADER = struct.Struct("<4sIIIQ")  # magic, state, seats, seat_bytes, sequence
_SEAT_HEADER = struct.Struct("<IIiIdII")  # status, pid, worker index, generation, started, layout bytes, values
_SEAT_HEADER_BYTES = 64
_MAGIC = b"FGM1"
SEAT_BYTES = 8 * 1024 * 1024
"""Room for the layout and values of one process (about 100k series)."""

Layout = list  # of (family, labels, part): see observe/metrics.py


class SeatTooSmall(Exception):
    """The config has more series than a seat holds."""


class MetricsRegion:
    """The shared region; created once by the master, used by every process it forks."""

    def __init__(self, seats: int, seat_bytes: int = SEAT_BYTES) -> None:
        self.seats = seats
        self.seat_bytes = seat_bytes
        self.map = mmap.mmap(-1, _REGION_HEADER.size + (seats + 1) * seat_bytes)
        self._seen: dict[int, tuple] = {}
        """This process's decoded layouts by seat, with what identifies them (pid, sizes)."""
        _REGION_HEADER.pack_into(self.map, 0, _MAGIC, STARTING, seats, seat_bytes, 0)

    # -- instance state ------------------------------------------------------
    @property
    def state(self) -> int:
        return _REGION_HEADER.unpack_from(self.map, 0)[1]

    def set_state(self, state: int) -> None:
        struct.pack_into("<I", self.map, 4, state)

    @property
    def sequence(self) -> int:
        return _REGION_HEADER.unpack_from(self.map, 0)[4]

    def _set_sequence(self, sequence: int) -> None:
        struct.pack_into("<Q", self.map, 16, sequence)

    # -- seats ---------------------------------------------------------------
    def _seat_offset(self, seat: int) -> int:
        return _REGION_HEADER.size + seat * self.seat_bytes

    def seat_header(self, seat: int) -> tuple:
        return _SEAT_HEADER.unpack_from(self.map, self._seat_offset(seat))

    def claim_seat(self, index: int, generation: int, started: float) -> int:
        """Master, before a fork: a free worker seat (0 when every seat is taken)."""
        for seat in range(1, self.seats + 1):
            if self.seat_header(seat)[0] == FREE:
                offset = self._seat_offset(seat)
                self.map[offset:offset + _SEAT_HEADER_BYTES] = bytes(_SEAT_HEADER_BYTES)
                _SEAT_HEADER.pack_into(self.map, offset, LIVE, 0, index, generation, started, 0, 0)
                return seat
        return 0

    def publish_layout(self, seat: int, layout: Layout) -> memoryview:
        """Worker: write the layout of ``seat`` and return its values, zeroed, as float64s."""
        encoded = msgspec.msgpack.encode(layout)
        offset = self._seat_offset(seat)
        values_at = _SEAT_HEADER_BYTES + (len(encoded) + 7) // 8 * 8
        if values_at + 8 * len(layout) > self.seat_bytes:
            raise SeatTooSmall(f"{len(layout)} series do not fit in a metrics seat of {self.seat_bytes} bytes")
        self.map[offset + _SEAT_HEADER_BYTES:offset + _SEAT_HEADER_BYTES + len(encoded)] = encoded
        values = memoryview(self.map)[offset + values_at:offset + values_at + 8 * len(layout)].cast("d")
        for i in range(len(layout)):
            values[i] = 0.0
        status, _, index, generation, started, _, _ = self.seat_header(seat)
        _SEAT_HEADER.pack_into(self.map, offset, status, os.getpid(), index, generation, started, len(encoded),
                               len(layout))
        return values

    def read_seat(self, seat: int) -> tuple[Layout, list[float]]:
        """The layout and a copy of the values of a seat (empty while its worker starts)."""
        offset = self._seat_offset(seat)
        _, pid, _, _, _, layout_bytes, count = self.seat_header(seat)
        if not count:
            return [], []
        start = offset + _SEAT_HEADER_BYTES
        known = (seat, pid, layout_bytes, count)
        layout = self._seen.get(seat)
        if layout is None or layout[0] != known:
            layout = self._seen[seat] = (known, _decode_layout(bytes(self.map[start:start + layout_bytes])))
        values_at = start + (layout_bytes + 7) // 8 * 8
        return layout[1], memoryview(self.map)[values_at:values_at + 8 * count].cast("d").tolist()

    def free_seat(self, seat: int) -> None:
        struct.pack_into("<I", self.map, self._seat_offset(seat), FREE)

    def live_seats(self) -> list[int]:
        return [s for s in range(1, self.seats + 1) if self.seat_header(s)[0] == LIVE]

    # -- totals (seat 0), written by the master only -------------------------------
    def write_totals(self, totals: dict, free: int = 0) -> None:
        """Replace seat 0 with ``totals`` ({series: value}) and free seat ``free``, as one change for readers."""
        sequence = self.sequence
        self._set_sequence(sequence + 1)
        values = self.publish_layout(0, list(totals))
        for i, value in enumerate(totals.values()):
            values[i] = value
        values.release()
        if free:
            self.free_seat(free)
        self._set_sequence(sequence + 2)

    def close(self) -> None:
        self.map.close()


_layouts: dict[bytes, Layout] = {}


def _decode_layout(encoded: bytes) -> Layout:
    """Layouts repeat (one per config): decode each once."""
    layout = _layouts.get(encoded)
    if layout is None:
        if len(_layouts) > 64:
            _layouts.clear()
        layout = _layouts[encoded] = [tuple(key) for key in msgspec.msgpack.decode(encoded)]
    return layout
