"""A worker's view of the health table: servers found down leave its balancers, and come back.

The worker clock calls ``on_tick`` once per tick. It reads one word, the table's generation, and only when that changed reads the
servers' states, sets ``pool.down`` and rebuilds the candidates of the
groups whose servers changed. Requests never look at the table.
"""

from fastgate.health.state import HealthTable
from fastgate.runtime.clock import Clock
from fastgate.upstream.balancer import candidate_pools


class HealthView:
    __slots__ = ("table", "checked", "seen")

    def __init__(self, table: HealthTable, groups) -> None:
        self.table = table
        self.checked = [
            (group, [(pool, spec.health_slot) for pool, spec in zip(group.pools, group.servers)])
            for group in groups if group.health is not None
        ]
        """(group, [(pool, slot)]) for each group with health checks; its pools must be attached."""
        self.seen = -1
        """The table generation the pools reflect."""

    @classmethod
    def attach(cls, table: HealthTable, groups, clock: Clock) -> "HealthView | None":
        """Apply the table to the worker's pools now and on every tick; None when nothing is checked."""
        if not table.slots:
            return None
        view = cls(table, groups)
        view.refresh()
        clock.on_tick.append(view.on_tick)
        return view

    def on_tick(self) -> None:
        if self.table.generation != self.seen:
            self.refresh()

    def refresh(self) -> None:
        table = self.table
        self.seen = table.generation  # read before the states: a change after this is seen next tick
        for group, pools in self.checked:
            changed = False
            for pool, slot in pools:
                down = not table.is_up(slot)
                if pool.down != down:
                    pool.down = down
                    changed = True
            if changed:
                group.balancer.set_candidates(candidate_pools(group.pools))
