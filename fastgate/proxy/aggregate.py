"""Response aggregation: one request fanned out to several upstreams, their JSON answers merged.

Theory of operation
-------------------
A route with ``[[routes.aggregate]]`` parts answers GET and HEAD requests
itself, through its filter (filters/aggregate.py): ``Aggregate.start``
gives an ``Aggregation``, which sends every part at once and, when it has
its answer, sets it (an Answer, proxy/answer.py) as the result of its
``future``, which the request waits for. A client that goes away cancels
that future: the parts' upstream connections are aborted and their timers
stopped.

A ``Part`` is one GET to one upstream. It goes through that upstream's
balancer and keep-alive pools like a forwarded request, and is the exchange
of its ``UpstreamConnection`` (the contract in upstream/connection.py): it
collects the response body, without its chunked coding, up to the part's
max_size, and gives a clean connection back to the pool. Its request
carries the client's headers, edited as for forwarding (X-Forwarded-*,
X-Request-ID, the route's request_headers); the route also asks parts for
``Accept: application/json`` with no content coding, and drops the client's
Range and conditional headers (see routing/route.py).

A part fails (its status in brackets) when its server cannot be chosen, or
its upstream is overloaded, has its circuit breaker open or is at its
max_connections with no idle connection (503; a part does not wait for a
connection), when it cannot be connected to, breaks, closes or sends
garbage (502), answers other than 2xx, with a body over max_size or a body
that is not one JSON value (502), or when its timeout passes first (504).
Parts are not retried on another server; a stale pooled connection is
replaced by a new one, as for forwarding. Each part has one timer, for its
timeout, which is at most the route's aggregate_timeout, so the route's
limit holds for the whole answer.

The answer:

- every part succeeded: 200 with ``{"key": <part JSON>, ...}`` in config
  order; each part's JSON is checked by msgspec (decoded as ``Raw``) and
  copied as received, never re-encoded;
- an optional part failed: its key holds ``null`` and an ``"errors"``
  object gets ``"key": {"status": 504, "error": "upstream timed out"}``
  (``"errors"`` is there only when a part failed); still 200;
- a required part failed: the aggregation ends at once (the other parts are
  cancelled) and the answer is that part's status with the gateway's JSON
  error body, ``{"error": "part 'user': upstream timed out", ...}``;
- a method other than GET or HEAD gets 405 (``Allow: GET, HEAD``); a request
  body gets 413, and the connection closes (the body is not read).

A HEAD request gets the head of the GET answer, Content-Length included.
"""

import time

import msgspec

from fastgate.config.schema import Route as RouteConfig
from fastgate.observe.errorlog import log
from fastgate.proxy.answer import Answer
from fastgate.proxy.heads import upstream_request_head
from fastgate.upstream.group import UpstreamGroup
from fastgate.wire.chunked import BodyTooLarge, ChunkedFramer, FramingError

_METHODS = frozenset((b"GET", b"HEAD"))
_ALLOW = b"\r\nAllow: GET, HEAD"
_OK = 200
_decode_json = msgspec.json.Decoder(msgspec.Raw).decode
_encode = msgspec.json.Encoder().encode


class PartError(msgspec.Struct):
    """An optional part's entry in the answer's ``"errors"`` object."""

    status: int
    """What the part alone would have been answered: 502, 503 or 504."""
    error: str


def merge(values: dict[str, msgspec.Raw | None], errors: dict[str, PartError]) -> bytes:
    """The merged JSON body: ``values`` in order (JSON copied as is, None as null), then "errors" if any."""
    if errors:
        return _encode({**values, "errors": errors})
    return _encode(values)


def part_json(body: bytes) -> msgspec.Raw:
    """The part's body as one JSON value, checked but not re-encoded; raise msgspec.DecodeError."""
    return _decode_json(body)


class PartSpec:
    """One ``[[routes.aggregate]]`` entry, compiled."""

    __slots__ = ("key", "group", "path", "query_joint", "timeout_s", "required", "max_bytes")

    def __init__(self, key: str, group: UpstreamGroup, path: str | None, timeout_s: float, required: bool,
                 max_bytes: int) -> None:
        self.key = key
        self.group = group
        self.path = path.encode() if path is not None else None
        """The target sent upstream, or None for the request's own (after prefix_rewrite)."""
        self.query_joint = b"&" if self.path is not None and b"?" in self.path else b"?"
        self.timeout_s = timeout_s
        self.required = required
        self.max_bytes = max_bytes

    def target(self, head, route) -> bytes:
        """The request target of this part: its path with the client's query appended."""
        if self.path is None:
            return route.upstream_target(head.target)
        if not head.query:
            return self.path
        return self.path + self.query_joint + head.query[1:]


class Aggregate:
    """A route's parts; ``start`` runs them for one request. Immutable after load."""

    __slots__ = ("route", "parts")

    def __init__(self, config: RouteConfig, route, upstreams: dict[str, UpstreamGroup]) -> None:
        self.route = route
        limit_s = float(config.aggregate_timeout)
        self.parts = tuple(
            PartSpec(p.key, upstreams[p.upstream], p.path, float(p.timeout) if p.timeout is not None else limit_s,
                     p.required, int(p.max_size))
            for p in config.aggregate
        )

    def start(self, head, request_id: bytes, client_ip: bytes, proto_header: bytes, clock) -> "Aggregation":
        """Send the parts of the request ``head``; the answer comes as the result of the
        aggregation's ``future`` (an Answer); cancelling that future stops the parts."""
        aggregation = Aggregation(self, head, request_id, clock)
        if head.method not in _METHODS:
            aggregation.finish(405, "an aggregate route answers only GET and HEAD", _ALLOW)
        elif head.has_body:
            aggregation.finish(413, "an aggregate route takes no request body")
        else:
            for part in aggregation.parts:
                part.send(head, client_ip, proto_header)
                if aggregation.future.done():
                    break  # a required part failed at once
        return aggregation


class Aggregation:
    """One request's parts in flight, then its answer."""

    __slots__ = ("aggregate", "head", "request_id", "clock", "future", "parts", "pending")

    def __init__(self, aggregate: Aggregate, head, request_id: bytes, clock) -> None:
        self.aggregate = aggregate
        self.head = head
        self.request_id = request_id
        self.clock = clock
        self.future = clock.loop.create_future()
        """Done with the Answer once it is known; cancelled when the client goes away."""
        self.future.add_done_callback(self._ended)
        self.parts = [Part(spec, self) for spec in aggregate.parts]
        self.pending = len(self.parts)

    def part_done(self, part: "Part") -> None:
        self.pending -= 1
        if part.status != _OK and part.spec.required:
            self.finish(part.status, f"part {part.spec.key!r}: {part.error}")
        elif not self.pending:
            self.finish()

    def finish(self, status: int = _OK, message: str = "", extra: bytes = b"") -> None:
        """The answer is known: give it (the parts still running are cancelled)."""
        if self.future.done():
            return
        for part in self.parts:
            part.cancel()
        self.future.set_result(Answer.failure(status, message, extra) if status != _OK else self._merged())

    def _ended(self, future) -> None:
        """The client went away: stop every part still running."""
        if future.cancelled():
            for part in self.parts:
                part.cancel()

    def _merged(self) -> Answer:
        """The 200 answer: every part's JSON under its key, and the failed optional parts' errors."""
        values: dict[str, msgspec.Raw | None] = {}
        errors: dict[str, PartError] = {}
        for part in self.parts:
            key = part.spec.key
            values[key] = part.value
            if part.status != _OK:
                errors[key] = PartError(part.status, part.error)
        body = merge(values, errors)
        return Answer.of(_OK, body, b"application/json")


class Part:
    """One part's GET: the exchange of a pooled upstream connection (upstream/connection.py).

    ``status`` is 0 while it runs, 200 once its JSON is in ``value``, else
    the failure's status with ``error`` saying why.
    """

    __slots__ = ("spec", "aggregation", "pool", "upstream", "connecting", "request_head", "timer", "started_s",
                 "chunks", "size", "framer", "status", "error", "value")

    def __init__(self, spec: PartSpec, aggregation: Aggregation) -> None:
        self.spec = spec
        self.aggregation = aggregation
        self.pool = None
        """The chosen server's pool; counts the part in flight until it ends."""
        self.upstream = None
        self.connecting = None
        self.request_head = b""
        """Kept to send it again on a new connection when a pooled one was stale."""
        self.timer = None
        self.started_s = 0.0
        self.chunks: list[bytes] = []
        self.size = 0
        self.framer: ChunkedFramer | None = None
        self.status = 0
        self.error = ""
        self.value: msgspec.Raw | None = None

    def send(self, head, client_ip: bytes, proto_header: bytes) -> None:
        spec = self.spec
        group = spec.group
        if group.tripped and not group.breaker.admit():
            self._failed(503, "upstream circuit breaker open")
            return
        if group.max_concurrent and group.overloaded():
            self._failed(503, "upstream overloaded")
            return
        pool = group.pick(head, client_ip)
        if pool is None:
            self._failed(503, "no upstream server available")
            return
        pool.active += 1
        self.pool = pool
        if group.balancer.tracks_latency:
            self.started_s = time.monotonic()
        aggregation = self.aggregation
        route = aggregation.aggregate.route
        self.request_head = upstream_request_head(
            head, route, aggregation.request_id, client_ip, proto_header, pool.host_header,
            line=b"GET " + spec.target(head, route) + b" HTTP/1.1")
        self.timer = aggregation.clock.loop.call_later(spec.timeout_s, self._timed_out)
        upstream = pool.acquire()
        if upstream is None and group.limit.full():
            self._failed(503, "upstream connection limit reached")  # a part does not wait for one
        elif upstream is None:
            self.connecting = pool.connect(self._connected)
        else:
            self._write(upstream)

    def cancel(self) -> None:
        """Stop a running part without an answer (nothing if it is not running)."""
        if not self.status:
            self._drop_exchange()
            self._end()

    # -- the exchange contract -----------------------------------------------
    def on_informational(self, head) -> None:
        pass

    def on_upgraded(self, head) -> None:
        self._fail_exchange(502, "upstream switched protocols unasked")

    def on_response_head(self, head) -> None:
        pool = self.pool
        group = pool.group
        if head.status < 500:
            group.answered += 1
            if pool.failures:
                pool.failures = 0
        else:
            group.record_server_error(pool, head.status)
        if self.started_s:
            pool.observe(time.monotonic() - self.started_s)
            self.started_s = 0.0
        if not 200 <= head.status <= 299:
            self._fail_exchange(502, f"upstream answered {head.status}")
        elif head.content_length > self.spec.max_bytes:
            self._fail_exchange(502, "upstream answer too large")
        elif head.chunked:
            self.framer = ChunkedFramer(self.spec.max_bytes)

    def on_response_data(self, data: bytes) -> None:
        framer = self.framer
        if framer is None:
            self.size += len(data)
            if self.size > self.spec.max_bytes:
                self._fail_exchange(502, "upstream answer too large")
                return
            self.chunks.append(data)
            return
        try:
            framer.feed(data, 0, self.chunks)
        except BodyTooLarge:
            self._fail_exchange(502, "upstream answer too large")
        except FramingError as exc:
            self._fail_exchange(502, f"bad chunked response from upstream: {exc}")

    def on_response_trailers(self, fields: list) -> None:
        pass  # a part's answer is its JSON body

    def on_response_end(self, reusable: bool) -> None:
        upstream = self.upstream
        self.upstream = None
        if reusable:
            upstream.release()
        else:
            upstream.close()
        try:
            value = part_json(b"".join(self.chunks))
        except msgspec.DecodeError:
            self._failed(502, "upstream answer is not JSON")
            return
        self._end()
        self.status = _OK
        self.value = value
        self.aggregation.part_done(self)

    def on_upstream_failed(self, status: int, reason: str) -> None:
        self.pool.group.exchange_failed(self.pool)
        self.upstream = None
        self._failed(status, reason)

    def on_upstream_stale(self) -> None:
        self.upstream = None
        self.connecting = self.pool.connect(self._connected)

    def pause_client_reading(self) -> None:
        pass  # a part writes nothing but its request head

    def resume_client_reading(self) -> None:
        pass

    def internal_error(self) -> None:
        log.exception("internal error in aggregate part %r", self.spec.key)
        self._fail_exchange(500, "internal error")

    # -- helpers ---------------------------------------------------------------
    def _connected(self, future) -> None:
        if future is not self.connecting:  # given up on: close what it made
            if not future.cancelled() and future.exception() is None:
                future.result()[1].close()
            return
        self.connecting = None
        exc = future.exception()
        if exc is not None:
            self.pool.group.exchange_failed(self.pool)
            self._failed(502, "upstream refused the connection" if isinstance(exc, ConnectionRefusedError)
                         else f"cannot connect to upstream: {exc.__class__.__name__}")
            return
        self._write(future.result()[1])

    def _write(self, upstream) -> None:
        self.upstream = upstream
        upstream.start(self, b"GET", self.spec.group.read_timeout_s, 0.0)  # the part's timer bounds the rest
        upstream.transport.write(self.request_head)

    def _timed_out(self) -> None:
        self.timer = None
        self._fail_exchange(504, "upstream timed out")

    def _fail_exchange(self, status: int, reason: str) -> None:
        self._drop_exchange()
        self._failed(status, reason)

    def _drop_exchange(self) -> None:
        """Let go of the upstream side mid-exchange: the connection cannot be reused."""
        upstream = self.upstream
        if upstream is not None:
            self.upstream = None
            upstream.abort()
        connecting = self.connecting
        if connecting is not None:
            self.connecting = None
            connecting.cancel()

    def _failed(self, status: int, reason: str) -> None:
        self._end()
        self.status = status
        self.error = reason
        self.aggregation.part_done(self)

    def _end(self) -> None:
        """The part is over: stop its timer, it no longer counts as in flight, drop its body bytes."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        pool = self.pool
        if pool is not None:
            self.pool = None
            pool.active -= 1
        self.chunks = []
        self.framer = None
