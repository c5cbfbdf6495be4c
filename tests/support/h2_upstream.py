"""A real HTTP/2 origin server for the tests, on the h2 library (server side), in its own thread.

Theory of operation
-------------------
It speaks h2c with prior knowledge, or TLS when given a context (whose ALPN
decides whether it selects "h2"). Every connection and every request is
counted, with the most streams one connection had in flight at once, so a
test sees how the gateway multiplexes. A request is answered when its stream
ended, as its query asks (any path):

- default: a JSON echo (method, path, authority, the regular fields as
  received, body length and SHA-256) with content-length;
- ``bytes=N``: N bytes of the test pattern, without content-length;
- ``status=N``; ``delay=S`` waits S seconds first; ``trailers=1`` ends the
  response with trailers (``x-checksum`` of the body, ``x-end: yes``);
- ``reset=1``: RST_STREAM INTERNAL_ERROR instead of an answer;
- ``silent=1``: no answer ever (the stream stays open).

``always`` (per server) is a query every request is answered as if it had too.

``goaway_after`` (per server) makes a connection send GOAWAY when its Nth
request arrives, naming that request's stream as the last: it and the
streams before it are answered (after ``goaway_delay_s``), streams above it
are never answered, and the connection closes once the answered ones are
done.
"""

import asyncio
import hashlib
import json
import ssl
import threading
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from tests.support.server_thread import ServerThread
from tests.support.upstream import pattern


@dataclass
class H2Request:
    conn_id: int
    stream_id: int
    method: str
    path: str
    authority: str
    headers: list[tuple[str, str]]
    body: bytes
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


@dataclass
class H2Stats:
    accepted: int = 0
    requests: list[H2Request] = field(default_factory=list)
    most_in_flight: int = 0
    """The most streams one connection had open at once."""
    answered_after_goaway: int = 0
    ignored_after_goaway: int = 0


class _Connection(asyncio.Protocol):
    def __init__(self, server: "H2Upstream") -> None:
        self.server = server
        self.conn_id = 0
        self.transport = None
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.streams: dict[int, dict] = {}
        self.requests = 0
        self.goaway_last = 0
        self.pending_answers = 0
        self.window_waiters: list[asyncio.Future] = []
        """Answers waiting for the client to open a window: woken by whatever it sends next."""

    def connection_made(self, transport) -> None:
        self.transport = transport
        server = self.server
        with server.cond:
            server.stats.accepted += 1
            self.conn_id = server.stats.accepted
            server.cond.notify_all()
        server.connections.add(self)
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: server.max_streams})
        self.h2.initiate_connection()
        self.flush()

    def connection_lost(self, exc) -> None:
        self.server.connections.discard(self)

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.flush()
            self.transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.streams[event.stream_id] = {"headers": event.headers, "body": bytearray()}
                with self.server.cond:
                    self.server.stats.most_in_flight = max(self.server.stats.most_in_flight, len(self.streams))
            elif isinstance(event, h2.events.DataReceived):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream["body"] += event.data
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.TrailersReceived):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream["trailers"] = [(k.decode(), v.decode()) for k, v in event.headers]
            elif isinstance(event, h2.events.StreamEnded):
                if event.stream_id in self.streams:
                    asyncio.ensure_future(self.answer(event.stream_id))
            elif isinstance(event, h2.events.StreamReset):
                self.streams.pop(event.stream_id, None)
        self.flush()
        waiters, self.window_waiters = self.window_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def answer(self, stream_id: int) -> None:
        server = self.server
        stream = self.streams[stream_id]
        fields = {k.decode(): v.decode() for k, v in stream["headers"] if k.startswith(b":")}
        path, _, query_text = fields[":path"].partition("?")
        query = {**parse_qs(query_text), **server.always}
        request = H2Request(self.conn_id, stream_id, fields[":method"], path, fields.get(":authority", ""),
                            [(k.decode(), v.decode()) for k, v in stream["headers"] if not k.startswith(b":")],
                            bytes(stream["body"]), stream.get("trailers", []))
        self.requests += 1
        with server.cond:
            server.stats.requests.append(request)
            server.cond.notify_all()
        if self.goaway_last and stream_id > self.goaway_last:
            with server.cond:
                server.stats.ignored_after_goaway += 1
            return
        if server.goaway_after and self.requests == server.goaway_after and not self.goaway_last:
            self.goaway_last = stream_id
            frame = GoAwayFrame(0)
            frame.last_stream_id = stream_id
            frame.error_code = 0
            self.transport.write(frame.serialize())
        goaway = bool(self.goaway_last)
        self.pending_answers += 1
        try:
            if goaway:
                await asyncio.sleep(server.goaway_delay_s)
            if "delay" in query:
                await asyncio.sleep(float(query["delay"][0]))
            if "silent" in query:
                await asyncio.sleep(3600)
            if stream_id not in self.streams:
                return
            if "reset" in query:
                self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
                self.flush()
                return
            status = query.get("status", ["200"])[0].encode()
            if "bytes" in query:
                body = b"".join(bytes(p) for p in pattern(int(query["bytes"][0])))
                head = [(b":status", status), (b"content-type", b"application/octet-stream")]
            else:
                body = json.dumps({**request.__dict__, "body": None, "body_len": len(request.body),
                                   "body_sha256": hashlib.sha256(request.body).hexdigest()}).encode()
                head = [(b":status", status), (b"content-type", b"application/json"),
                        (b"content-length", b"%d" % len(body))]
            trailers = "trailers" in query
            self.h2.send_headers(stream_id, head)
            await self.send_body(stream_id, body, end=not trailers)
            if trailers:
                self.h2.send_headers(stream_id, [(b"x-checksum", hashlib.sha256(body).hexdigest().encode()),
                                                 (b"x-end", b"yes")], end_stream=True)
            self.flush()
            if goaway:
                with server.cond:
                    server.stats.answered_after_goaway += 1
        finally:
            self.pending_answers -= 1
            self.streams.pop(stream_id, None)
            if self.goaway_last and not self.pending_answers:
                self.transport.close()

    async def send_body(self, stream_id: int, body: bytes, end: bool) -> None:
        view = memoryview(body)
        while True:
            if stream_id not in self.streams:
                return  # reset by the client
            room = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size, len(view))
            if room > 0 or not view:
                self.h2.send_data(stream_id, bytes(view[:room]), end_stream=end and room == len(view))
                view = view[room:]
                self.flush()
                if not view:
                    return
                continue
            waiter = asyncio.get_running_loop().create_future()
            self.window_waiters.append(waiter)
            await waiter


class H2Upstream(ServerThread):
    """``with H2Upstream() as up:``; ``tls``: an ssl.SSLContext (its ALPN is set to ``alpn``)."""

    thread_name = "h2-upstream"

    def __init__(self, tls: ssl.SSLContext | None = None, alpn: tuple[str, ...] = ("h2",), max_streams: int = 1000,
                 goaway_after: int = 0, goaway_delay_s: float = 0.3, always: str = "") -> None:
        super().__init__()
        self.tls = tls
        if tls is not None:
            tls.set_alpn_protocols(list(alpn))
        self.max_streams = max_streams
        self.goaway_after = goaway_after
        self.goaway_delay_s = goaway_delay_s
        self.always = parse_qs(always)
        self.stats = H2Stats()
        self.cond = threading.Condition()
        self.connections: set[_Connection] = set()

    async def _listen(self) -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: _Connection(self), "127.0.0.1", 0, ssl=self.tls)

    def _shut(self, loop: asyncio.AbstractEventLoop) -> None:
        for conn in list(self.connections):
            conn.transport.abort()
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def config(self, name: str = "h2up", **fields: object) -> dict:
        return {"name": name, "servers": [self.address], "protocol": "h2", **fields}

    def read(self, fn):
        with self.cond:
            return fn(self.stats)

    def wait_for(self, predicate, message: str, timeout_s: float = 20.0):
        with self.cond:
            if not self.cond.wait_for(lambda: predicate(self.stats), timeout_s):
                raise AssertionError(f"h2 upstream: {message}")
            return predicate(self.stats)

