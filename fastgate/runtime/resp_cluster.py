"""Redis Cluster over fastgate's RESP2 client (resp.py): a slot map, one pipelined client per node.

Theory of operation
-------------------
A key lives in one of 16384 slots (``key_slot``: CRC16 of the key, or of
its hash tag, the part between the first "{" and the next "}" when that is
not empty), and each slot is served by one primary. ``RespCluster`` learns
which from the nodes (CLUSTER SLOTS, asked of the known primaries, then of
the startup nodes, until one answers) and keeps the map as a list of 16384
node names, replaced whole when learned again.

``execute(slots, commands)`` takes commands already encoded, each with the
slot of its keys, and groups them by the node that serves the slot: each
node's commands go in one write, every node's write leaves before any reply
is awaited, so the nodes work concurrently, and the replies come back in the
callers' order. A node that cannot be reached fails its own commands only
(their reply is the exception) and has the map learned again.

Redirections are replies too (the command did not run there, so sending it
elsewhere is safe; nothing else is ever resent):

- ``MOVED slot host:port``: the slot has a new primary for good. The map
  takes it at once, the command goes there, and the whole map is learned
  again (a reshard or failover moves more than one slot).
- ``ASK slot host:port``: the slot is migrating and this key is already on
  the target: the command goes there once, preceded by ASKING; the map is
  unchanged.

A command is redirected at most ``MAX_REDIRECTIONS`` times; after that its
redirection reply stays its answer. While the map is being learned, new
calls wait for it (it is one round trip to one node; the callers bound their
wait with their own deadline).
"""

import asyncio
import binascii
import ssl
from collections.abc import Sequence

from fastgate.runtime.resp import Reply, ReplyError, RespClient, ServerAddress, encode

SLOTS = 16384
MAX_REDIRECTIONS = 3
"""MOVED or ASK followed per command in one ``execute`` (a reshard moves a slot once; more means a loop)."""

_CLUSTER_SLOTS = encode([b"CLUSTER", b"SLOTS"])
_ASKING = encode([b"ASKING"])
_UNREACHABLE = (ConnectionError, OSError, TimeoutError)
"""What a node that cannot be reached raises (refused, reset, connect timeout)."""
_NOT_ASKED: frozenset[int] = frozenset()


def key_slot(key: bytes) -> int:
    """The Redis Cluster slot of ``key`` (CLUSTER KEYSLOT): CRC16-XMODEM, which binascii.crc_hqx
    computes, of its hash tag if it has a non-empty one, else of the whole key."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return binascii.crc_hqx(key, 0) & (SLOTS - 1)


class RespCluster:
    """Commands to the primaries of one Redis Cluster, routed by slot, redirections followed."""

    def __init__(self, startup_nodes: Sequence[str], username: str, password: str, tls: ssl.SSLContext | None,
                 connect_timeout_s: float, loop: asyncio.AbstractEventLoop) -> None:
        self._startup_nodes = list(startup_nodes)
        self._username = username
        self._password = password
        self._tls = tls
        self._timeout_s = connect_timeout_s
        """Bounds a connect, and each node's CLUSTER SLOTS answer while learning the map."""
        self._loop = loop
        self._clients: dict[str, RespClient] = {}
        """Every node met so far by "host:port" (a cluster has few); those without slots are disconnected."""
        self._slot_nodes: list[str | None] = [None] * SLOTS
        self._known = False
        """The map was learned at least once (it is kept when learning it again fails)."""
        self._learning: asyncio.Task | None = None

    def node_of_slot(self, slot: int) -> str:
        """The primary ("host:port") that serves ``slot`` now, as far as the map knows."""
        return self._slot_nodes[slot] or f"slot {slot}"

    def primaries(self) -> list[str]:
        return list(dict.fromkeys(node for node in self._slot_nodes if node is not None))

    def relearn(self) -> None:
        """Learn the map again, in the background; calls from now on wait for it."""
        if self._learning is None:
            self._learning = self._loop.create_task(self._learn())
            self._learning.add_done_callback(self._learned)

    async def learn(self) -> None:
        """Learn the map now (after any learning under way); raises ConnectionError if no node answered."""
        if self._learning is not None:
            await asyncio.gather(asyncio.shield(self._learning), return_exceptions=True)
        self.relearn()
        await asyncio.shield(self._learning)

    def disconnect(self) -> None:
        """Close every connection: commands waiting on them fail; the next ones reconnect."""
        for client in self._clients.values():
            client.disconnect()

    async def close(self) -> None:
        if self._learning is not None:
            self._learning.cancel()
            await asyncio.gather(self._learning, return_exceptions=True)
        await asyncio.gather(*[client.close() for client in self._clients.values()])

    async def execute(self, slots: Sequence[int], commands: Sequence[bytes]) -> list[object]:
        """Send each encoded command (one reply each) to the primary of its slot, following MOVED and
        ASK; each command's reply in order, or the exception that kept it from its node."""
        if self._learning is not None:
            await asyncio.shield(self._learning)
        elif not self._known:
            await self.learn()
        replies: list[object] = [None] * len(commands)
        targets: dict[str | None, list[int]] = {}
        nodes = self._slot_nodes
        for index, slot in enumerate(slots):
            node = nodes[slot]
            if node in targets:
                targets[node].append(index)
            else:
                targets[node] = [index]
        await self._exchange(targets, commands, replies, _NOT_ASKED)
        for _ in range(MAX_REDIRECTIONS):
            targets, asked = self._redirected(replies)
            if not targets:
                break
            await self._exchange(targets, commands, replies, asked)
        return replies

    async def execute_on_primaries(self, command: bytes) -> list[object]:
        """Send ``command`` to every primary of the map at once; their replies (SCRIPT LOAD)."""
        primaries = self.primaries()
        replies: list[object] = [None] * len(primaries)
        await self._exchange({node: [i] for i, node in enumerate(primaries)}, [command] * len(primaries), replies,
                             _NOT_ASKED)
        return replies

    async def _exchange(self, targets: dict[str | None, list[int]], commands: Sequence[bytes],
                        replies: list[object], asked: frozenset[int]) -> None:
        """One round: each node's commands (by index) in one write, those in ``asked`` preceded by
        ASKING; then every reply into ``replies``."""
        waits = []
        for node, indices in targets.items():
            if node is None:
                for index in indices:
                    replies[index] = ConnectionError("no node serves this slot")
                continue
            if asked:
                payload = b"".join([_ASKING + commands[i] if i in asked else commands[i] for i in indices])
                count = len(indices) + len(asked.intersection(indices))
            else:
                payload, count = b"".join([commands[i] for i in indices]), len(indices)
            waits.append((indices, self._client(node).execute(payload, count)))  # every node's write leaves now
        try:
            for indices, future in waits:
                try:
                    answers = await future
                except (*_UNREACHABLE, ReplyError) as exc:  # a ReplyError raised: AUTH refused while connecting
                    for index in indices:
                        replies[index] = exc
                    self.relearn()
                    continue
                position = 0
                for index in indices:
                    if index in asked:
                        position += 1  # ASKING's +OK
                    replies[index] = answers[position]
                    position += 1
        finally:  # given up (the caller's deadline): the other nodes' late replies are dropped
            for _, future in waits:
                future.cancel()

    def _redirected(self, replies: list[object]) -> tuple[dict[str | None, list[int]], frozenset[int]]:
        """The commands that the last round had redirected, by the node they go to next, and those of
        them that go with ASKING."""
        targets: dict[str | None, list[int]] = {}
        asked = []
        for index, reply in enumerate(replies):
            if type(reply) is not ReplyError:
                continue
            kind, _, rest = str(reply).partition(" ")
            if kind == "ASK":
                asked.append(index)
            elif kind != "MOVED":
                continue
            slot, _, node = rest.partition(" ")
            if kind == "MOVED":
                self._slot_nodes[int(slot)] = node
                self.relearn()
            targets.setdefault(node, []).append(index)
        return targets, frozenset(asked)

    def _client(self, node: str) -> RespClient:
        client = self._clients.get(node)
        if client is None:
            host, _, port = node.rpartition(":")
            host = host.strip("[]")  # a startup node may be written "[::1]:7000"; the map has "::1:7000"
            url = f"redis://[{host}]:{port}" if ":" in host else f"redis://{host}:{port}"
            address = ServerAddress(url, self._username, self._password, self._tls)
            client = self._clients[node] = RespClient(address, self._timeout_s, self._loop)
        return client

    async def _learn(self) -> None:
        failures = []
        for node in dict.fromkeys([*self.primaries(), *self._startup_nodes]):
            try:
                async with asyncio.timeout(self._timeout_s):
                    (reply,) = await self._client(node).execute(_CLUSTER_SLOTS, 1)
                if isinstance(reply, ReplyError):
                    raise reply
                slot_nodes = _slot_map(reply, node)
            except (*_UNREACHABLE, ReplyError, ValueError) as exc:
                failures.append(f"{node}: {type(exc).__name__}: {exc}")
                continue
            self._slot_nodes = slot_nodes
            self._known = True
            serving = set(slot_nodes)
            for name, client in self._clients.items():
                if name not in serving and name not in self._startup_nodes:
                    client.disconnect()
            return
        raise ConnectionError("no Redis Cluster node told its slots (" + "; ".join(failures) + ")")

    def _learned(self, task: asyncio.Task) -> None:
        self._learning = None
        if not task.cancelled():
            task.exception()  # retrieved: the callers that waited for it have it; the next call learns again


def _slot_map(reply: Reply, asked: str) -> list[str | None]:
    """The node of each slot from a CLUSTER SLOTS reply: [[first, last, [host, port, id, ...], replicas...]...].
    An empty host is the asked node's own; "?" is an unknown endpoint (no node for those slots)."""
    if not isinstance(reply, list) or not reply:
        raise ValueError("CLUSTER SLOTS answered no slots")
    slot_nodes: list[str | None] = [None] * SLOTS
    asked_host = asked.rpartition(":")[0]
    for first, last, primary, *_ in reply:
        host = primary[0].decode()
        if host == "?":
            continue
        node = f"{host or asked_host}:{primary[1]}"
        slot_nodes[first : last + 1] = [node] * (last + 1 - first)
    return slot_nodes
