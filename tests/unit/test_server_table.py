"""The shared server table: admin edits over the base, the seqlock snapshot, slot bounds, carrying a
discovered base over a reload; and a worker group following it (upstream/membership.py)."""

import os

import pytest

from fastgate.config.schema import DnsDiscovery, Upstream
from fastgate.upstream.group import UpstreamGroup
from fastgate.upstream.membership import MembershipView
from fastgate.upstream.server_table import (MAX_SERVERS, ServerEdit, ServerEntry, ServerTable, TableFull,
                                            UpstreamServers, create_table)


def test_edits_apply_over_the_base_in_order():
    servers = UpstreamServers(base=[ServerEntry("a:1"), ServerEntry("b:1", weight=2)], edits={
        "a:1": ServerEdit(removed=True), "b:1": ServerEdit(drain=True), "c:1": ServerEdit(added=True, weight=4),
        "gone:1": ServerEdit(weight=9)})  # an edit of a server that left the base is not a server
    assert servers.effective() == [ServerEntry("b:1", weight=2, drain=True), ServerEntry("c:1", weight=4)]


def test_a_write_is_seen_by_a_forked_reader_and_a_failed_edit_writes_nothing():
    table = ServerTable({"up": [ServerEntry("a:1")]})
    version = table.version
    pid = os.fork()
    if pid == 0:  # another process of the gateway (a worker's admin API)
        with table.edit("up") as servers:
            servers.edits["b:1"] = ServerEdit(added=True)
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    seen, slots = table.snapshot()
    assert seen > version and seen % 2 == 0
    assert [e.address for e in slots["up"].effective()] == ["a:1", "b:1"]
    with pytest.raises(KeyError), table.edit("up") as servers:
        servers.edits.clear()
        raise KeyError("refused")
    assert table.version == seen and len(table.read("up").effective()) == 2


def test_a_snapshot_during_a_write_is_refused():
    table = ServerTable({"up": []})
    table._mem[0:8] = (table.version + 1).to_bytes(8, "little")  # a writer died mid-write
    assert table.snapshot() is None
    with table.edit("up") as servers:  # the next writer repairs the version
        servers.base = [ServerEntry("a:1")]
    assert table.snapshot() is not None


def test_too_many_servers_are_refused():
    table = ServerTable({"up": []})
    with pytest.raises(TableFull), table.edit("up") as servers:
        servers.base = [ServerEntry(f"10.0.{i // 250}.{i % 250}:80") for i in range(MAX_SERVERS + 1)]
    assert table.read("up").base == []


def test_a_reload_keeps_the_discovered_servers_of_an_unchanged_discovery_table_only():
    same = DnsDiscovery(name="a.test", port=80)
    old_configs = [Upstream(name="kept", discovery=same), Upstream(name="changed", discovery=same),
                   Upstream(name="fixed", servers=["x:1"])]
    old = create_table(old_configs)
    for name in ("kept", "changed"):
        with old.edit(name) as servers:
            servers.base, servers.resolved = [ServerEntry("10.0.0.1:80")], 3
            servers.edits["10.0.0.2:80"] = ServerEdit(added=True)
    new_configs = [Upstream(name="kept", discovery=same),
                   Upstream(name="changed", discovery=DnsDiscovery(name="a.test", port=81)),
                   Upstream(name="fixed", servers=["y:1"])]
    new = create_table(new_configs, old, old_configs)
    assert new.read("kept") == UpstreamServers(base=[ServerEntry("10.0.0.1:80")], resolved=3)  # no admin edits
    assert new.read("changed") == UpstreamServers()
    assert new.read("fixed").base == [ServerEntry("y:1")]


class _Pool:
    def __init__(self, group, spec) -> None:
        self.host, self.port, self.label = spec.host, spec.port, spec.address
        self.weight, self.backup, self.drain = spec.weight, spec.backup, spec.drain
        self.ejected = self.down = False
        self.active = 0
        self.idle = ["conn"]

    def close_idle(self) -> None:
        self.idle.clear()


def test_a_group_keeps_the_pools_of_servers_that_stay_and_drains_those_that_leave():
    group = UpstreamGroup(Upstream(name="up", servers=["127.0.0.1:1", "127.0.0.1:2"]))
    group.attach_pools(_Pool, clock=None)
    stays, leaves = group.pools
    table = ServerTable({"up": [ServerEntry("127.0.0.1:1"), ServerEntry("127.0.0.1:2")]})
    changes = []
    view = MembershipView(table, {"up": group}, lambda g, added, retired: changes.append((added, retired)))
    view.refresh()
    assert changes == []  # the table says what the config said: nothing to do
    with table.edit("up") as servers:
        servers.base = [ServerEntry("127.0.0.1:1", weight=5), ServerEntry("127.0.0.1:3")]
    view.on_tick()
    (added,), (retired,) = changes[0]
    assert group.pools == (stays, added) and stays.weight == 5 and retired is leaves
    assert leaves.drain and leaves.idle == [] and stays.idle == ["conn"]
    assert group.balancer.candidates == (stays, added)
    view.on_tick()
    assert len(changes) == 1  # the version did not move
