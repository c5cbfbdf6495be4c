"""The admin listener of a worker, over h11: a strict HTTP/1.1 peer for low-traffic endpoints.

Requests are answered one at a time, in order, by ``AdminEndpoints.answer``,
with their body (up to 64 KiB; a longer one gets 413 and the connection
closes). A malformed request gets h11's 400 and the connection closes.

When the worker exits, a connection it accepted but has not answered yet
(a readiness probe during a stop, say) is given a short grace to send its
request and get the answer, instead of being reset with the process.
"""

import asyncio
import time

import h11

from fastgate.observe.errorlog import log

_MAX_HEAD_BYTES = 16 * 1024
_MAX_BODY_BYTES = 64 * 1024
_EXIT_GRACE_S = 1.0
"""How long an exiting worker waits for accepted admin connections to get their answer."""


class AdminListener:
    """A worker's admin servers and the connections they accepted."""

    def __init__(self, endpoints) -> None:
        self.endpoints = endpoints
        self.servers: list[asyncio.Server] = []
        self.connections: set[AdminConnection] = set()

    async def serve(self, loop: asyncio.AbstractEventLoop, sockets: list) -> None:
        for sock in sockets:
            self.servers.append(await loop.create_server(lambda: AdminConnection(self), sock=sock))

    def stop_accepting(self) -> None:
        for server in self.servers:
            server.close()

    async def close(self) -> None:
        """Stop accepting, let connections waiting for an answer get it (within a grace), close the rest."""
        self.stop_accepting()
        deadline = time.monotonic() + _EXIT_GRACE_S
        while any(c.awaits_answer() for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            conn.transport.close()


class AdminConnection(asyncio.Protocol):
    def __init__(self, listener: AdminListener) -> None:
        self.listener = listener
        self.endpoints = listener.endpoints
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD_BYTES)
        self.transport: asyncio.Transport | None = None
        self.request: h11.Request | None = None
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.answered = False

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.listener.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.connections.discard(self)

    def awaits_answer(self) -> bool:
        """A request is arriving, or none came yet on a new connection (its client is about to send)."""
        return not self.answered or self.conn.their_state not in (h11.IDLE, h11.DONE) or bool(self.conn.trailing_data[0])

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        try:
            self._events()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            try:
                self._send(status, b"application/json", b'{"error":"malformed request","status":%d}' % status)
            except h11.LocalProtocolError:
                pass  # too late for an answer
            self.transport.close()
        except Exception:
            log.exception("internal error on the admin listener")
            try:
                self._send(500, b"application/json", b'{"error":"internal error","status":500}')
            except h11.LocalProtocolError:
                pass  # a response was already under way
            self.transport.close()

    def eof_received(self) -> bool:
        return False

    def _events(self) -> None:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                if event is h11.PAUSED and self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                    self.conn.start_next_cycle()
                    continue
                return
            if isinstance(event, h11.Request):
                self.request = event
                self.body, self.body_bytes = [], 0
            elif isinstance(event, h11.Data):
                self.body_bytes += len(event.data)
                if self.body_bytes > _MAX_BODY_BYTES:
                    self._send(413, b"application/json", b'{"error":"request body too large","status":413}',
                               ((b"Connection", b"close"),))
                    self.transport.close()
                    return
                self.body.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                request, self.request = self.request, None
                headers = {name: value for name, value in request.headers}
                status, content_type, body, extra = self.endpoints.answer(request.method, request.target, headers,
                                                                          b"".join(self.body))
                self._send(status, content_type, body, extra, head_only=request.method == b"HEAD")
                self.answered = True
                if self.conn.our_state is h11.MUST_CLOSE:
                    self.transport.close()
                    return
            elif isinstance(event, h11.ConnectionClosed):
                self.transport.close()
                return

    def _send(self, status: int, content_type: bytes, body: bytes, extra: tuple = (), head_only: bool = False) -> None:
        headers = [(b"Content-Type", content_type), (b"Content-Length", b"%d" % len(body)),
                   (b"Cache-Control", b"no-store"), *extra]
        out = self.conn.send(h11.Response(status_code=status, headers=headers))
        if body and not head_only:
            out += self.conn.send(h11.Data(data=body))
        out += self.conn.send(h11.EndOfMessage())
        self.transport.write(out)
