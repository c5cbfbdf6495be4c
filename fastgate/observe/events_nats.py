"""Events to NATS: one JSON message per request on the configured subject (nats-py).

A batch is published message by message into the client's write buffer and
then flushed with a PING/PONG round trip, so one batch costs one round trip
and a batch counts as sent once the server has read it. nats-py's own
reconnection is off: EventSink reconnects with its back-off and keeps the
records meanwhile, and nats-py's error callback is silenced so that the
sink's rate-limited warning is the only log line an outage produces.
"""

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator

import msgspec
import nats

from fastgate.config.schema import Events
from fastgate.observe.events import NotSent, Send
from fastgate.observe.record import RequestRecord


async def _ignore_error(exc: Exception) -> None:
    """nats-py's error callback: EventSink reports failures itself."""


class NatsPublisher:
    def __init__(self, settings: Events) -> None:
        self._url = settings.url
        self._subject = settings.subject
        self._timeout_s = float(settings.timeout)
        self._tls = (ssl.create_default_context(cafile=settings.tls_ca_file or None)
                     if settings.url.startswith("tls://") else None)
        self._encode = msgspec.json.Encoder().encode

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Send]:
        client = nats.NATS()
        try:
            async with asyncio.timeout(self._timeout_s):
                await client.connect(self._url, name="fastgate", allow_reconnect=False,
                                     connect_timeout=self._timeout_s, error_cb=_ignore_error, tls=self._tls)
            yield self._sender(client)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._timeout_s):
                    await client.close()

    def _sender(self, client: nats.NATS) -> Send:
        subject, encode, timeout_s = self._subject, self._encode, self._timeout_s

        async def send(batch: list[RequestRecord]) -> None:
            if not client.is_connected:  # the server closed the connection since the last batch
                raise NotSent("connection closed")
            for record in batch:
                await client.publish(subject, encode(record))
            await client.flush(timeout_s)

        return send
