"""Serving one listener slot socket in a worker: plain HTTP, TLS, or the redirect to https.

Which protocol serves a connection: a listener without HTTP/2 gives every
connection a ClientConnection (HTTP/1.1). With HTTP/2 (ListenerSpec.http2)
a ``ProtocolChooser`` takes the connection first and hands it over with
``transport.set_protocol``: on TLS at once, by the protocol ALPN chose ("h2":
H2ServerConnection, anything else or none: HTTP/1.1); on a plain listener by
the first bytes: the HTTP/2 connection preface picks h2c (prior knowledge),
anything else HTTP/1.1. Until those bytes come the connection is served as
HTTP/1.1 (its idle timeout and drain are ClientConnection's); it is counted as
accepted by the protocol its first bytes choose (HTTP/1.1 if it sends none).
"""

import asyncio
import socket

from fastgate.config.listeners import ListenerSpec
from fastgate.transport.context import WorkerContext
from fastgate.transport.h1_server import ClientConnection
from fastgate.transport.h2_server import PREFACE, H2ServerConnection
from fastgate.transport.tls import TlsAcceptor


async def serve_listener(loop: asyncio.AbstractEventLoop, ctx: WorkerContext, spec: ListenerSpec,
                         sock: socket.socket, handshakes: set):
    """Start serving ``sock`` of listener ``spec``; returns what the worker closes to stop accepting
    (an asyncio Server, or a TlsAcceptor). A TLS listener's handshake tasks go into ``handshakes``."""
    lctx = ctx if spec.router is None else ListenerContext(ctx, spec.router)
    proto_header = spec.proto_header

    if spec.http2:
        def connection() -> asyncio.Protocol:
            return ProtocolChooser(lctx, proto_header)
    else:
        def connection() -> asyncio.Protocol:
            return ClientConnection(lctx, proto_header)

    if spec.tls is None:
        return await loop.create_server(connection, sock=sock)
    acceptor = TlsAcceptor(loop, sock, spec.tls, connection, ctx.metrics, spec.index, handshakes,
                           spec.tls_alpn_answers)
    acceptor.start()
    return acceptor


class ListenerContext:
    """A listener's view of the worker's context: its own router (a redirecting listener's), and the
    worker context's everything else, read through (so draining, connections and the rest are shared)."""

    __slots__ = ("router", "_worker")

    def __init__(self, worker: WorkerContext, router) -> None:
        self.router = router
        self._worker = worker

    def __getattr__(self, name: str):
        return getattr(self._worker, name)


class ProtocolChooser(asyncio.Protocol):
    """A listener's connection until its protocol is known: ALPN on TLS, the first bytes on plain TCP."""

    __slots__ = ("ctx", "proto_header", "transport", "h1", "buffer", "chosen")

    def __init__(self, ctx, proto_header: bytes) -> None:
        self.ctx = ctx
        self.proto_header = proto_header
        self.transport: asyncio.Transport | None = None
        self.h1: ClientConnection | None = None
        """The HTTP/1.1 connection serving a plain connection until its first bytes are seen."""
        self.buffer = b""
        """First bytes that could still be the start of the HTTP/2 preface."""
        self.chosen = False
        """The protocol is known (and the connection counted as accepted)."""

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:  # the handshake is over: ALPN decided
            if ssl_object.selected_alpn_protocol() == "h2":
                chosen = H2ServerConnection(self.ctx, self.proto_header)
            else:
                chosen = ClientConnection(self.ctx, self.proto_header)
            transport.set_protocol(chosen)
            chosen.connection_made(transport)
            return
        self.h1 = ClientConnection(self.ctx, self.proto_header)
        self.h1.connection_made(transport, counted=True)

    def data_received(self, data: bytes) -> None:
        data = self.buffer + data if self.buffer else data
        size = min(len(data), len(PREFACE))
        if data[:size] != PREFACE[:size]:
            self.buffer = b""
            self.chosen = True
            self.ctx.metrics.count_accepted()
            self.transport.set_protocol(self.h1)
            self.h1.data_received(data)
            return
        if size < len(PREFACE):
            self.buffer = data
            return
        h1 = self.h1  # never served a byte: it goes without a trace
        ctx = self.ctx
        ctx.connections.discard(h1)
        ctx.clock.watched.discard(h1)
        self.chosen = True
        h2 = H2ServerConnection(ctx, self.proto_header)
        self.transport.set_protocol(h2)
        h2.connection_made(self.transport)
        h2.data_received(data)

    def eof_received(self) -> bool:
        return self.h1.eof_received() if self.h1 is not None else False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.h1 is not None:
            if not self.chosen:  # closed before its first bytes
                self.ctx.metrics.count_accepted()
            self.h1.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.h1 is not None:
            self.h1.pause_writing()

    def resume_writing(self) -> None:
        if self.h1 is not None:
            self.h1.resume_writing()
