"""HTTP/2 connections to one upstream server, per worker: streams on shared connections."""

import asyncio

from fastgate.upstream.h2_connection import H2UpstreamConnection, H2UpstreamStream
from fastgate.upstream.pool import ServerPool


class H2ServerPool(ServerPool):
    """A server of an upstream with ``protocol = "h2"``: what ServerPool is for HTTP/1.1, with streams.

    ``acquire`` gives a stream on an established connection with room (the
    fullest such connection first, so that spare connections go idle and
    close); ``connect`` gives one once a connection is made, on a connection
    being made that has room for it, or else on a new connection (it holds a
    slot of the group's ConnectionLimit, as an HTTP/1.1 connection does).
    Connections without streams wait in ``idle`` (as pooled HTTP/1.1
    connections do), so the ConnectionLimit may close one to make room and
    the idle timeout closes them. When a stream ends, or a connection is made
    or hears the server's SETTINGS, requests waiting in the ConnectionLimit
    for this server get the room (``offer_room``).
    """

    __slots__ = ("connections",)

    def __init__(self, group, spec, loop: asyncio.AbstractEventLoop, clock) -> None:
        super().__init__(group, spec, loop, clock)
        self.connections: list[H2UpstreamConnection] = []
        """Connections to the server, made or being made."""

    def acquire(self) -> H2UpstreamStream | None:
        best = None
        for conn in self.connections:
            if conn.settled and conn.has_room() and (best is None or conn.active > best.active):
                best = conn
        if best is None:
            return None
        if best.requests:
            self.reused += 1
        return best.new_stream()

    def connect(self, on_done) -> asyncio.Future:
        """A future of (transport, stream), done once a connection is made (or failed)."""
        conn = next((c for c in self.connections if not c.settled and c.has_room()), None)
        if conn is None:
            conn = H2UpstreamConnection(self)
            self.connections.append(conn)
            self.group.limit.opened()
            if self.ssl is None:
                connecting = self.loop.create_connection(lambda: conn, self.host, self.port)
            else:
                connecting = self.loop.create_connection(lambda: conn, self.host, self.port, ssl=self.ssl,
                                                         server_hostname=self.server_hostname)
            conn.connecting = asyncio.ensure_future(connecting)
            conn.connecting.add_done_callback(conn.connect_done)
        future = self.loop.create_future()
        conn.waiters.append(future)
        future.add_done_callback(conn.waiter_gone)
        future.add_done_callback(on_done)
        return future

    def release(self, conn) -> None:
        """Streams are not released to the pool: they end (H2UpstreamStream.release)."""
        raise AssertionError("an HTTP/2 stream is not pooled")

    def close_idle(self) -> None:
        for conn in list(self.idle):
            conn.close()

    def offer_room(self, conn: H2UpstreamConnection) -> None:
        """``conn`` may have room: requests waiting for a connection to this server get streams on it."""
        limit = self.group.limit
        while limit.waiting and conn.has_room():
            exchange = limit.next_waiter(self)
            if exchange is None:
                return
            exchange.take_connection(conn.new_stream())

    def drop(self, conn: H2UpstreamConnection) -> None:
        """``conn`` is closed (or its connect failed): forget it."""
        self.forget(conn)
        try:
            self.connections.remove(conn)
        except ValueError:
            pass
