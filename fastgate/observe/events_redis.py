"""Events to a Redis stream: one entry per request, its field ``event`` holding the record as JSON.

The client is a coredis client from runtime/redis_client.py (``open_client``:
connect and read timeouts from ``timeout``, no retries by coredis), entered
by EventSink's task, which outlives every use of it, as coredis's structured
clients require.

A batch is one EVALSHA of a script that XADDs each record (``MAXLEN ~
stream_max_len`` when trimming). A pipeline of one XADD per record is what
one would write first, but coredis spends about 40 us of the worker's CPU
per command, more than a proxied request costs; one script call per batch
costs about 4 us per record (measured with 256-record batches). The entry
holds the same JSON document as a NATS message, so that consumers of either
sink parse one format, and numbers keep their exact value.

The script is loaded when connecting; a NOSCRIPT answer (the script cache
was flushed, or a failover to a server without it) means nothing of the
batch ran, so the script is loaded again and the batch sent once more.
"""

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator

import msgspec
from coredis.exceptions import NoScriptError

from fastgate.config.schema import Events
from fastgate.observe.events import Send
from fastgate.observe.record import RequestRecord
from fastgate.runtime.redis_client import open_client
from fastgate.runtime.redis_server import RedisServer

SCRIPT = """
local max_len = ARGV[1]
for i = 2, #ARGV do
  if max_len == '0' then
    redis.call('XADD', KEYS[1], '*', 'event', ARGV[i])
  else
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', max_len, '*', 'event', ARGV[i])
  end
end
return #ARGV - 1
"""
"""KEYS[1]: the stream; ARGV[1]: stream_max_len ("0": no trimming); ARGV[2..]: one JSON record each."""
SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


class RedisPublisher:
    def __init__(self, settings: Events) -> None:
        self._server = RedisServer(settings.url, tls_ca_file=settings.tls_ca_file, timeout_s=float(settings.timeout))
        self._timeout_s = float(settings.timeout)
        self._keys = [settings.subject]
        self._max_len = b"%d" % settings.stream_max_len
        self._encode = msgspec.json.Encoder().encode

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Send]:
        async with open_client(self._server) as client:
            async with asyncio.timeout(self._timeout_s):
                await client.script_load(SCRIPT)
            yield self._sender(client)

    def _sender(self, client) -> Send:
        keys, max_len, encode = self._keys, self._max_len, self._encode

        async def send(batch: list[RequestRecord]) -> None:
            args = [max_len, *map(encode, batch)]
            try:
                await client.evalsha(SHA, keys=keys, args=args)
            except NoScriptError:  # nothing ran
                await client.script_load(SCRIPT)
                await client.evalsha(SHA, keys=keys, args=args)

        return send
