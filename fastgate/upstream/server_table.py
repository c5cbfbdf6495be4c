"""The server set of every upstream, in shared memory: written by DNS discovery and the admin API, read by every worker.

Theory of operation
-------------------
The master creates a table each time it loads a config, before it forks the
workers and the helpers, on a memfd mapped ``MAP_SHARED``, so every process
of the gateway sees the same bytes. Layout: a 64-byte header whose first
word is the *version*, then one slot of ``SLOT_BYTES`` per upstream (in
config order): an int64 length and the msgspec JSON of its
``UpstreamServers``::

    base     the servers the upstream has before any admin edit: the config's
             list, or what its DNS name resolved to last (discovery/)
    edits    admin API changes by address: added, removed, weight, drain
    resolved, failed   resolutions of its DNS name that succeeded / failed

What a worker serves is ``effective()``: the base with the edits applied.
The edits last until the next reload (a new config gets a new table); the
base of a discovered upstream is carried over to the new table when its
``discovery`` table did not change, so a reload does not empty it.

Writers (the discovery helper, any worker's admin API) take an exclusive
``lockf`` on the memfd around read-modify-write of one slot (``edit``); a
lock dies with its process, so a writer that crashes frees it. Readers do
not lock (a seqlock): a writer makes the version odd, writes, and makes it
even again; a worker's clock tick reads the version, and only when it is
even and differs from the one it applied reads the slots, then the version
again, and keeps what it read only if the version did not move meanwhile
(else it tries on the next tick). Requests never look at the table.
"""

import fcntl
import mmap
import os
import struct
from contextlib import contextmanager

import msgspec

SLOT_BYTES = 64 * 1024
"""Room for one upstream's servers and edits (about 400 servers)."""
MAX_SERVERS = 256
"""Most servers an upstream may have at run time (discovery keeps the first ones, the admin API refuses more)."""
_HEADER = 64
_WORD = struct.Struct("<q")


class ServerEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One server as workers serve it."""

    address: str
    """host:port ("[v6]:port" for an IPv6 address)."""
    weight: int = 1
    backup: bool = False
    drain: bool = False


class ServerEdit(msgspec.Struct, omit_defaults=True):
    """What the admin API changed of one server."""

    added: bool = False
    """Not in the base: the admin API added it (with ``weight`` and ``backup``)."""
    removed: bool = False
    """In the base, but the admin API removed it."""
    weight: int | None = None
    backup: bool = False
    drain: bool | None = None


class UpstreamServers(msgspec.Struct, omit_defaults=True):
    """One upstream's slot."""

    base: list[ServerEntry] = []
    edits: dict[str, ServerEdit] = {}
    resolved: int = 0
    """Resolutions of the upstream's DNS name that gave servers."""
    failed: int = 0
    """Resolutions that failed (the last good set stayed)."""

    def effective(self) -> list[ServerEntry]:
        """The servers to serve: the base with the admin edits applied, in that order."""
        servers = {entry.address: entry for entry in self.base}
        for address, edit in self.edits.items():
            if edit.removed:
                servers.pop(address, None)
                continue
            entry = servers.get(address)
            if entry is None:
                if not edit.added:
                    continue  # an edit of a server that has left the base since
                entry = ServerEntry(address, backup=edit.backup)
            servers[address] = msgspec.structs.replace(
                entry, weight=entry.weight if edit.weight is None else edit.weight,
                drain=entry.drain if edit.drain is None else edit.drain)
        return list(servers.values())


class TableFull(Exception):
    """An upstream's servers do not fit in its slot (or are more than MAX_SERVERS)."""


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(UpstreamServers).decode


class ServerTable:
    """One slot per upstream, by name; create in the master, before forking."""

    def __init__(self, bases: dict[str, list[ServerEntry]]) -> None:
        self.slots = {name: i for i, name in enumerate(bases)}
        """Slot number of each upstream."""
        fd = os.memfd_create("fastgate-servers", os.MFD_CLOEXEC)
        self._file = os.fdopen(fd, "r+b", buffering=0)
        """Closed when the table is dropped; workers forked meanwhile keep their copy of the descriptor."""
        size = _HEADER + SLOT_BYTES * max(1, len(self.slots))
        os.ftruncate(fd, size)
        self._mem = mmap.mmap(fd, size)
        for name, base in bases.items():
            self._write(self.slots[name], UpstreamServers(base=base))

    @property
    def version(self) -> int:
        """Even when no write is under way; changes with every write."""
        return _WORD.unpack_from(self._mem, 0)[0]

    def read(self, name: str) -> UpstreamServers:
        """One upstream's slot, read under the lock (for the admin API and the master; workers use snapshot)."""
        with self._locked():
            return self._read(self.slots[name])

    def snapshot(self) -> tuple[int, dict[str, UpstreamServers]] | None:
        """(version, every upstream's slot) as of one moment, without locking; None while a write is under way."""
        version = self.version
        if version & 1:
            return None
        raw = {name: self._raw(slot) for name, slot in self.slots.items()}
        if self.version != version:
            return None
        return version, {name: _decode(data) for name, data in raw.items()}

    @contextmanager
    def edit(self, name: str):
        """Yield the upstream's slot to change in place; it is written back when the block ends without
        an exception. Raise TableFull (nothing written) when it grew past the slot."""
        slot = self.slots[name]
        with self._locked():
            servers = self._read(slot)
            yield servers
            self._write(slot, servers)

    def carry_discovered(self, previous: "ServerTable", names) -> None:
        """Take over the base and counts of the discovered upstreams ``names`` from ``previous`` (a reload)."""
        for name in names:
            if name in previous.slots and name in self.slots:
                old = previous.read(name)
                with self.edit(name) as servers:
                    servers.base, servers.resolved, servers.failed = old.base, old.resolved, old.failed

    # -- internals --------------------------------------------------------------
    @contextmanager
    def _locked(self):
        fd = self._file.fileno()
        fcntl.lockf(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)

    def _raw(self, slot: int) -> bytes:
        start = _HEADER + SLOT_BYTES * slot
        length = _WORD.unpack_from(self._mem, start)[0]
        return self._mem[start + 8 : start + 8 + length]

    def _read(self, slot: int) -> UpstreamServers:
        return _decode(self._raw(slot))

    def _write(self, slot: int, servers: UpstreamServers) -> None:
        """Store a slot (the caller holds the lock, or no other process exists yet)."""
        if len(servers.effective()) > MAX_SERVERS:
            raise TableFull(f"more than {MAX_SERVERS} servers")
        data = _encode(servers)
        if len(data) > SLOT_BYTES - 8:
            raise TableFull(f"the servers and their edits take more than {SLOT_BYTES - 8} bytes")
        version = self.version
        writing = version + 1 if version % 2 == 0 else version  # odd: a writer died mid-write
        _WORD.pack_into(self._mem, 0, writing)
        start = _HEADER + SLOT_BYTES * slot
        self._mem[start + 8 : start + 8 + len(data)] = data
        _WORD.pack_into(self._mem, start, len(data))
        _WORD.pack_into(self._mem, 0, writing + 1)


def entries_of(servers) -> list[ServerEntry]:
    """The config's servers of an upstream (strings or UpstreamServer tables) as entries."""
    return [ServerEntry(s) if isinstance(s, str) else ServerEntry(s.address, s.weight, s.backup, s.drain)
            for s in servers]


def create_table(configs, previous: ServerTable | None = None, previous_configs=()) -> ServerTable:
    """The table for the upstream configs (schema Upstream), each seeded with its config servers.

    With ``previous`` (the running config's table, on reload) an upstream whose ``discovery``
    table is the same in ``previous_configs`` starts with the servers it has discovered so far.
    """
    table = ServerTable({c.name: entries_of(c.servers) for c in configs})
    if previous is not None:
        before = {c.name: c.discovery for c in previous_configs}
        table.carry_discovered(previous, [c.name for c in configs
                                          if c.discovery is not None and before.get(c.name) == c.discovery])
    return table
