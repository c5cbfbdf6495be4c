"""The verdicts of the active health checks, in shared memory: the checker writes, every worker reads.

Theory of operation
-------------------
The master creates a table each time it loads a config, before it forks the
workers and the checker, as an anonymous ``MAP_SHARED`` mapping, so every
process of the gateway sees the same bytes. Layout: a 64-byte header whose
first word is the *generation*, then one slot of four int64 words per
checked (upstream, server address)::

    state    UNPROVEN (up, never passed a check yet), UP, or DOWN
    passed   checks passed in a row
    failed   checks failed in a row
    checks   checks done in all

A server starts UNPROVEN: it takes requests, and its first failed check
takes it out (HAProxy's default ``init-state up``); once it has passed a
check it is UP and only ``fall`` failures in a row take it out; a DOWN
server needs ``rise`` passes in a row to be UP again.

One writer at a time, so there is no lock: the checker process (``record``),
or the master while no checker runs (``carry_over`` on reload). A writer
stores a slot (its state word is one aligned 8-byte word, never seen half
written) and then bumps the generation when a server went up or down. A
worker compares the generation with the one it saw last, on its clock tick,
and only when it changed reads the state words and rebuilds its balancers'
candidates (health/view.py), so requests pay nothing for health checks.
"""

import mmap
import struct
from typing import NamedTuple

DOWN, UP, UNPROVEN = 0, 1, 2

_HEADER = 64
_WORD = struct.Struct("<q")
_SLOT = struct.Struct("<4q")


class SlotState(NamedTuple):
    state: int
    passed: int
    failed: int
    checks: int


class HealthTable:
    """One slot per checked server, keyed by (upstream name, server address)."""

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        self.slots: dict[tuple[str, str], int] = {}
        """Slot number of each key (a key listed twice has one slot)."""
        for key in keys:
            self.slots.setdefault(key, len(self.slots))
        self._mem = mmap.mmap(-1, _HEADER + _SLOT.size * max(1, len(self.slots)))
        for slot in self.slots.values():
            _SLOT.pack_into(self._mem, _HEADER + _SLOT.size * slot, UNPROVEN, 0, 0, 0)

    @property
    def generation(self) -> int:
        """Bumped every time a server goes up or down."""
        return _WORD.unpack_from(self._mem, 0)[0]

    def is_up(self, slot: int) -> bool:
        return _WORD.unpack_from(self._mem, _HEADER + _SLOT.size * slot)[0] != DOWN

    def read(self, slot: int) -> SlotState:
        return SlotState(*_SLOT.unpack_from(self._mem, _HEADER + _SLOT.size * slot))

    def record(self, slot: int, passed: bool, rise: int, fall: int) -> bool:
        """Count one check of the server in ``slot``; True when it went up or down because of it."""
        state, passes, failures, checks = self.read(slot)
        was_up = state != DOWN
        if passed:
            passes, failures = passes + 1, 0
            if state == UNPROVEN or state == DOWN and passes >= rise:
                state = UP
        else:
            passes, failures = 0, failures + 1
            if state == UNPROVEN or state == UP and failures >= fall:
                state = DOWN
        _SLOT.pack_into(self._mem, _HEADER + _SLOT.size * slot, state, passes, failures, checks + 1)
        changed = was_up != (state != DOWN)
        if changed:
            self._bump()
        return changed

    def carry_over(self, previous: "HealthTable") -> None:
        """Copy the slots of the servers ``previous`` also checks (a reload keeps their verdicts).

        Call only while no process writes either table.
        """
        size = _SLOT.size
        for key, slot in self.slots.items():
            old = previous.slots.get(key)
            if old is not None:
                start = _HEADER + size * old
                self._mem[_HEADER + size * slot : _HEADER + size * (slot + 1)] = previous._mem[start : start + size]
        self._bump()

    def _bump(self) -> None:
        _WORD.pack_into(self._mem, 0, self.generation + 1)


def create_table(groups, previous: HealthTable | None = None) -> HealthTable:
    """The table for every server of the groups (UpstreamGroup) that have health checks.

    Sets each such server's ``health_slot``. With ``previous`` (the running
    config's table, on reload), servers checked in both start with their
    verdicts as they are now.
    """
    checked = [group for group in groups if group.health is not None]
    table = HealthTable([(group.name, spec.address) for group in checked for spec in group.servers])
    for group in checked:
        for spec in group.servers:
            spec.health_slot = table.slots[(group.name, spec.address)]
    if previous is not None:
        table.carry_over(previous)
    return table
