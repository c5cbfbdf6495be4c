"""How the Redis store reaches Redis: the script calls of one round trip, over the right client.

Three links, one interface (``ScriptLink``):

- a single server (``url``, with password, ACL user or TLS): ``RespLink``,
  over fastgate's own pipelined RESP2 client (runtime/resp.py). It costs a
  small part of what a general client costs per round trip, and round trips
  are what the Redis store pays per batch of checks.
- Redis Cluster (``cluster_nodes``): ``ClusterLink``, over the same client
  with a slot map (runtime/resp_cluster.py): each call goes to the primary
  of its hash tag's slot, every node's calls in one write, all nodes at
  once; MOVED and ASK are followed (the call had not run).
- Sentinel (``sentinel_nodes``): ``CoredisLink`` (coredis_link.py), whose
  coredis client (runtime/redis_client.py) asks the sentinels for the
  primary. coredis is imported only then (it costs ~15 MB of RSS).

``eval_groups`` sends one EVALSHA per ``ScriptCall`` in one round trip and
returns an awaitable (a coroutine, or a Future) of each call's reply: the
script's list of integers, or an exception instance (``ReplyError`` of
runtime/resp.py for an error reply such as NOSCRIPT, which answers that
call only; in a cluster also the connection error of the one node that
could not be reached). It raises when the round trip itself failed. The
Redis store makes it a Future (``asyncio.ensure_future``: a coroutine
becomes a Task) and takes the replies in a done callback; at its deadline
it cancels it, and the link must then not send what it has not sent yet.
``RespLink`` returns the RESP client's Future itself: no coroutine, no task
per round trip.
Nothing is retried by a link: a check that may already have been applied
must not be sent twice.
"""

import asyncio
from collections.abc import Awaitable
from typing import Protocol

from fastgate.ratelimit.config import BreakerSettings, RedisSettings
from fastgate.ratelimit.lua import SCRIPT, SHA, ScriptArgs
from fastgate.runtime.resp import RespClient, ServerAddress, encode
from fastgate.runtime.resp_cluster import RespCluster, key_slot

_SCRIPT_LOAD = encode([b"SCRIPT", b"LOAD", SCRIPT.encode()])
_EVALSHA = b"$7\r\nEVALSHA\r\n$40\r\n" + SHA.encode() + b"\r\n"


class ScriptCall:
    """The KEYS and ARGV of one EVALSHA, as the Redis store collects them check by check
    (``keys += check's keys``, ``args.append(check's ScriptArgs)``, ``argc += its argc``)."""

    __slots__ = ("keys", "args", "argc", "slot")

    def __init__(self, slot: int) -> None:
        self.keys: list[bytes] = []
        self.args: list[ScriptArgs] = []
        """Each check's ARGV, in order."""
        self.argc = 0
        """Arguments in ``args`` altogether."""
        self.slot = slot
        """In a cluster, the slot of every key of the call (``key_slot``); 0 otherwise."""


class ScriptLink(Protocol):
    cluster: bool
    """Keys of one EVALSHA must share a hash tag (Redis Cluster)."""

    def start(self) -> None: ...

    async def close(self) -> None: ...

    def drop_connections(self) -> None:
        """Close every connection (calls waiting on them fail); new ones are made on demand."""

    def refresh(self) -> None:
        """Learn the topology again before the next call (a cluster may have moved slots)."""

    def eval_groups(self, calls: list[ScriptCall]) -> Awaitable[list[object]]: ...

    async def script_load(self) -> None: ...

    async def eval(self, script: str, keys: list[bytes], args: list[bytes]) -> object:
        """Run a small script (EVAL, not cached) and return its reply; raises on an error reply."""

    def node_of(self, key: bytes) -> str:
        """The node ("host:port") that holds ``key`` now."""


def open_link(settings: RedisSettings, reconnect: BreakerSettings, loop: asyncio.AbstractEventLoop) -> ScriptLink:
    if settings.sentinel_nodes:
        from fastgate.ratelimit.coredis_link import CoredisLink

        return CoredisLink(settings, reconnect, loop)
    if settings.cluster_nodes:
        return ClusterLink(settings, loop)
    return RespLink(settings, loop)


class RespLink:
    """One Redis server over fastgate's RESP2 client."""

    cluster = False

    def __init__(self, settings: RedisSettings, loop: asyncio.AbstractEventLoop) -> None:
        server = settings.server()
        address = ServerAddress(server.url, server.username, server.password, server.ssl_context())
        self._client = RespClient(address, server.timeout_s, loop)
        self._node = address.unix_path or f"{address.host}:{address.port}"

    def start(self) -> None:
        """Nothing to start: the first call connects."""

    async def close(self) -> None:
        await self._client.close()

    def drop_connections(self) -> None:
        self._client.disconnect()

    def refresh(self) -> None:
        """One server: nothing to learn."""

    def node_of(self, key: bytes) -> str:
        return self._node

    def eval_groups(self, calls: list[ScriptCall]) -> asyncio.Future:
        if len(calls) == 1:
            return self._client.execute(_encode_evalsha(calls[0]), 1)
        return self._client.execute(b"".join([_encode_evalsha(call) for call in calls]), len(calls))

    async def script_load(self) -> None:
        (reply,) = await self._client.execute(_SCRIPT_LOAD, 1)
        if isinstance(reply, Exception):
            raise reply

    async def eval(self, script: str, keys: list[bytes], args: list[bytes]) -> object:
        command = encode([b"EVAL", script.encode(), b"%d" % len(keys), *keys, *args])
        (reply,) = await self._client.execute(command, 1)
        if isinstance(reply, Exception):
            raise reply
        return reply


class ClusterLink:
    """A Redis Cluster over fastgate's RESP2 client: one connection per primary, calls routed by slot."""

    cluster = True

    def __init__(self, settings: RedisSettings, loop: asyncio.AbstractEventLoop) -> None:
        server = settings.server()
        self._cluster = RespCluster(server.cluster_nodes, server.username, server.password, server.ssl_context(),
                                    server.timeout_s, loop)

    def start(self) -> None:
        self._cluster.relearn()

    async def close(self) -> None:
        await self._cluster.close()

    def drop_connections(self) -> None:
        self._cluster.disconnect()

    def refresh(self) -> None:
        self._cluster.relearn()

    def node_of(self, key: bytes) -> str:
        return self._cluster.node_of_slot(key_slot(key))

    async def eval_groups(self, calls: list[ScriptCall]) -> list[object]:
        """Each call to the primary of its slot (the keys of one call share a hash tag)."""
        return await self._cluster.execute([call.slot for call in calls], [_encode_evalsha(call) for call in calls])

    async def script_load(self) -> None:
        """Learn the map, then load the script into every primary. This is the breaker's probe after
        failures: a failover or a reshard may have moved slots since."""
        await self._cluster.learn()
        for reply in await self._cluster.execute_on_primaries(_SCRIPT_LOAD):
            if isinstance(reply, Exception):
                raise reply

    async def eval(self, script: str, keys: list[bytes], args: list[bytes]) -> object:
        command = encode([b"EVAL", script.encode(), b"%d" % len(keys), *keys, *args])
        (reply,) = await self._cluster.execute([key_slot(keys[0]) if keys else 0], [command])
        if isinstance(reply, Exception):
            raise reply
        return reply


def _encode_evalsha(call: ScriptCall) -> bytes:
    """EVALSHA with the call's keys and arguments in RESP: only the keys are encoded here."""
    keys = call.keys
    if len(keys) == 1:  # one check of one limit: in a cluster, most calls
        key = keys[0]
        return b"*%d\r\n%b$1\r\n1\r\n$%d\r\n%b\r\n%b" % (4 + call.argc, _EVALSHA, len(key), key, call.args[0].resp)
    count = b"%d" % len(keys)
    return b"".join([b"*%d\r\n" % (3 + len(keys) + call.argc), _EVALSHA, b"$%d\r\n%b\r\n" % (len(count), count),
                     *[b"$%d\r\n%b\r\n" % (len(key), key) for key in keys], *[args.resp for args in call.args]])
