"""Events to a Redis stream: one entry per request, one field per record field (coredis).

The client is built like the rate limiter's (fastgate/ratelimit/redis_client.py
``open_client``: connect and read timeouts from ``timeout``, no retries by
coredis) and entered by EventSink's task, which outlives every use of it, as
coredis's structured clients require. A batch is one pipeline of XADDs
(``MAXLEN ~ stream_max_len`` when trimming), without MULTI.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import msgspec
from coredis.tokens import PureToken

from fastgate.config.schema import Events
from fastgate.config.units import Duration
from fastgate.observe.events import Send
from fastgate.observe.record import RequestRecord
from fastgate.ratelimit.config import RedisSettings
from fastgate.ratelimit.redis_client import open_client


class RedisPublisher:
    def __init__(self, settings: Events) -> None:
        self._client_settings = RedisSettings(url=settings.url, timeout=Duration(settings.timeout),
                                              tls_ca_file=settings.tls_ca_file)
        self._timeout_s = float(settings.timeout)
        self._key = settings.subject
        trim = settings.stream_max_len
        self._trim = (dict(trim_strategy=PureToken.MAXLEN, threshold=trim, trim_operator=PureToken.APPROXIMATELY)
                      if trim else {})

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Send]:
        async with open_client(self._client_settings) as client:
            async with asyncio.timeout(self._timeout_s):
                await client.ping()
            yield self._sender(client)

    def _sender(self, client) -> Send:
        key, trim, asdict = self._key, self._trim, msgspec.structs.asdict

        async def send(batch: list[RequestRecord]) -> None:
            async with client.pipeline(transaction=False) as pipe:
                for record in batch:
                    pipe.xadd(key, asdict(record), **trim)

        return send
