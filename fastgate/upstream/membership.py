"""A worker's view of the server table (upstream/server_table.py): its groups serve the servers the table lists.

The worker clock calls ``on_tick`` once per tick. It reads one word, the
table's version, and only when that changed reads the table and hands each
group whose servers changed its new set (``apply``):

- a server still listed keeps its pool (its idle connections, its passive
  health, its balancer statistics); its weight, backup and drain are updated;
- a new server gets a new pool;
- a server no longer listed is *retired*: it leaves the group and its
  balancer, its idle connections are closed and so is every connection
  that comes back to it, while the exchanges in flight on it finish.

The balancer is rebuilt on the new pools (one rebind, Pingora-style), so a
request picks among the new set from then on. ``on_change(group, added,
retired)`` tells the worker's metrics.
"""

from fastgate.config.schema import UpstreamServer
from fastgate.upstream.balancer import BALANCERS
from fastgate.upstream.group import ServerSpec
from fastgate.upstream.server_table import ServerEntry, ServerTable


class MembershipView:
    __slots__ = ("table", "groups", "on_change", "seen", "served")

    def __init__(self, table: ServerTable, groups: dict, on_change) -> None:
        self.table = table
        self.groups = groups
        """The worker's UpstreamGroups by name, their pools attached."""
        self.on_change = on_change
        self.seen = -1
        """The table version the groups reflect."""
        self.served: dict[str, list[ServerEntry]] = {}
        """What each group serves, as last applied."""

    def on_tick(self) -> None:
        if self.table.version != self.seen:
            self.refresh()

    def refresh(self) -> None:
        """Apply the table now (also right after this worker's admin API changed it)."""
        snapshot = self.table.snapshot()
        if snapshot is None:
            return  # a write is under way: next tick
        self.seen, slots = snapshot
        for name, servers in slots.items():
            group = self.groups.get(name)
            if group is None:
                continue
            entries = servers.effective()
            if (self.served.get(name) or _serving(group)) != entries:
                self.served[name] = entries
                added, retired = apply(group, entries)
                self.on_change(group, added, retired)


def _serving(group) -> list[ServerEntry]:
    """What a group serves before it applied the table: its config's servers."""
    return [ServerEntry(s.address, s.weight, s.backup, s.drain) for s in group.servers]


def apply(group, entries: list[ServerEntry]) -> tuple[list, list]:
    """Make ``group`` serve ``entries``; return (pools created, pools retired)."""
    by_key = {(pool.host, pool.port): pool for pool in group.pools}
    specs, pools, added = [], [], []
    for entry in entries:
        spec = ServerSpec(UpstreamServer(address=entry.address, weight=entry.weight, backup=entry.backup,
                                         drain=entry.drain))
        pool = by_key.pop((spec.host, spec.port), None)
        if pool is None:
            pool = group.make_pool(group, spec)
            added.append(pool)
        else:
            pool.weight, pool.backup, pool.drain = spec.weight, spec.backup, spec.drain
        specs.append(spec)
        pools.append(pool)
    retired = list(by_key.values())
    for pool in retired:
        pool.drain = True  # connections coming back are closed (ServerPool.release)
        pool.close_idle()
        if pool.ejected:
            pool.clock.watched.discard(pool)
    group.servers = tuple(specs)
    group.pools = tuple(pools)
    group.max_ejected = int(group.max_ejected_share * len(pools))
    group.balancer = BALANCERS[group.balance](group.pools)
    return added, retired
