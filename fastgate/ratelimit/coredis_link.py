"""The rate limiter's link over coredis, for Sentinel: one client per worker, kept open, rebuilt if
it fails (a single server and Redis Cluster go through fastgate's own client, see redis_link.py).

coredis clients must be entered with ``async with`` by a task that outlives
every use of them (runtime/redis_client.py). ``CoredisLink`` runs that one
long-lived task per worker; the batch tasks get the client from
``connected()``, which waits while it is being built. Nothing is retried
(the client has ``NoRetryPolicy``): a check that may already have been
applied must not be sent twice.
"""

import asyncio
import logging
from typing import Any

from coredis.exceptions import NoScriptError, ResponseError

from fastgate.ratelimit.config import BreakerSettings, RedisSettings
from fastgate.ratelimit.lua import SCRIPT, SHA
from fastgate.ratelimit.redis_link import ScriptCall
from fastgate.runtime.redis_client import open_client
from fastgate.runtime.resp import ReplyError

log = logging.getLogger("fastgate")


class CoredisLink:
    """A ScriptLink (redis_link.py) over coredis, to the primary that the sentinels name."""

    cluster = False

    def __init__(self, settings: RedisSettings, reconnect: BreakerSettings, loop: asyncio.AbstractEventLoop) -> None:
        self._server = settings.server()
        self._reconnect = reconnect
        self._loop = loop
        self.client: Any = None
        """The entered coredis client, or None while there is none."""
        self._ready = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def connected(self) -> Any:
        """The client, once it is entered (callers bound the wait with their deadline)."""
        await self._ready.wait()
        return self.client

    def start(self) -> None:
        self._task = self._loop.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def drop_connections(self) -> None:
        """Close every pooled connection (requests stuck on them fail); new ones are made on demand."""
        if self.client is not None:
            self.client.connection_pool.disconnect()

    def refresh(self) -> None:
        """Nothing to learn here: coredis asks the sentinels for the primary when it reconnects."""

    def node_of(self, key: bytes) -> str:
        return f"sentinel:{self._server.sentinel_service}"

    async def _client(self) -> Any:
        return self.client or await self.connected()

    async def eval_groups(self, calls: list[ScriptCall]) -> list[object]:
        client = await self._client()
        argvs = [[arg for args in call.args for arg in args.args] for call in calls]
        if len(calls) == 1:
            try:
                return [await client.evalsha(SHA, keys=calls[0].keys, args=argvs[0])]
            except ResponseError as exc:  # an answer for this call (e.g. NOSCRIPT), not a broken link
                return [_reply_error(exc)]
        async with client.pipeline(transaction=False, raise_on_error=False) as pipe:
            for call, argv in zip(calls, argvs):
                pipe.evalsha(SHA, keys=call.keys, args=argv)
        return [_reply_error(r) if isinstance(r, ResponseError) else r for r in pipe.results]

    async def script_load(self) -> None:
        client = await self._client()
        await client.script_load(SCRIPT)

    async def eval(self, script: str, keys: list[bytes], args: list[bytes]) -> object:
        client = await self._client()
        return await client.eval(script, keys=keys, args=args)

    async def _run(self) -> None:
        delay = float(self._reconnect.open_time)
        while True:
            try:
                async with open_client(self._server) as client:
                    self.client = client
                    self._ready.set()
                    delay = float(self._reconnect.open_time)
                    await asyncio.Future()  # until cancelled by close(), or the client's task group fails
            except Exception as exc:
                log.warning("rate limit: Redis client failed (%s: %s); rebuilding it in %.1fs",
                            type(exc).__name__, exc, delay)
            finally:
                self.client = None
                self._ready.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, float(self._reconnect.max_open_time))


def _reply_error(exc: ResponseError) -> ReplyError:
    """coredis's error reply as the links' common type (NOSCRIPT keeps its code)."""
    return ReplyError(f"NOSCRIPT {exc}" if isinstance(exc, NoScriptError) else str(exc))
