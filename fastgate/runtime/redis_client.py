"""coredis clients, for Sentinel, and callers that want a general client.

A single server and a Redis Cluster are cheaper through fastgate's own RESP2
client (resp.py, resp_cluster.py); coredis follows a sentinel's topology, and
is imported only by code that needs it (it costs ~15 MB of RSS).

coredis 6 clients are structured (anyio): a client must be entered with
``async with`` by a task that outlives every use of it (the rate limiter's
``CoredisLink`` runs one such task per worker, and so does the event sink).
No command is retried by coredis (``NoRetryPolicy``): a command that may
already have been applied must not be sent twice.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import coredis
from coredis.connection import TCPLocation
from coredis.retry import NoRetryPolicy

from fastgate.runtime.redis_server import RedisServer


@asynccontextmanager
async def open_client(server: RedisServer) -> AsyncIterator[Any]:
    """An entered coredis client: the primary behind sentinels, or a single server (not a cluster)."""
    options: dict[str, Any] = {
        "stream_timeout": server.timeout_s,
        "connect_timeout": server.timeout_s,
        "retry_policy": NoRetryPolicy(),
    }
    if server.username:
        options["username"] = server.username
    if server.password:
        options["password"] = server.password
    tls = server.ssl_context()
    if tls is not None:
        options["ssl_context"] = tls
    if server.sentinel_nodes:
        sentinel_options = {k: options[k] for k in ("stream_timeout", "connect_timeout") if k in options}
        if server.sentinel_password:
            sentinel_options["password"] = server.sentinel_password
        if "ssl_context" in options:
            sentinel_options["ssl_context"] = options["ssl_context"]
        sentinel = coredis.Sentinel([TCPLocation(*_host_port(node)) for node in server.sentinel_nodes],
                                    sentinel_kwargs=sentinel_options, **options)
        async with sentinel, sentinel.primary_for(server.sentinel_service) as client:
            yield client
    else:  # the rate limiter reaches a single server through resp.py; event publishing uses this
        async with coredis.Redis.from_url(server.url, **options) as client:
            yield client


def _host_port(node: str) -> tuple[str, int]:
    host, _, port = node.rpartition(":")
    return host.strip("[]"), int(port)
