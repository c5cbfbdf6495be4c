"""One request's life, whatever protocol carried it: route, limits, answer or forward, log.

Theory of operation
-------------------
A downstream adapter (transport/h1_server.py for HTTP/1.1) parses a request
head into the event model (wire/h1.py RequestHead: method, authority, path,
query, headers, how the body ends) and hands it to ``start``. From there the
session runs DESIGN's phases in order:

1. early: the gateway-wide filters' ``early`` hooks (the trace context when
   tracing is on; filters/chain.py gateway_filters), before routing;
2. route (the framework's own): no route is 404; the request id (the
   client's X-Request-ID, else a new one unless the route says
   ``request_id = false``: the gateway's own, like the route, since its
   answers carry it and a route's filters never see a 404; made only where
   a route wants one); a body over the route's size is 413; Upgrade keeps only the protocols the route allows (an
   HTTP/2 extended CONNECT whose protocol the route does not allow is 403:
   it asks for nothing but the tunnel);
3. access: the route's ``request`` filters in order (the contract is
   filters/base.py; a route's chain per phase is built at load,
   filters/chain.py): rate limits, then a route's own answer (respond,
   aggregate, redirect); each goes on, answers (an Answer, proxy/answer.py)
   or returns an awaitable the session waits on (``_access``, ``_waited``),
   or a Deferred (proxy/deferred.py) that hands over its result by a plain
   call (``_resumed``, with no Future and no extra loop turn);
   a route whose ``request`` chain is empty goes straight on;
4. (there is no separate dispatch: a route that answers itself does it
   with its last ``request`` filter; every other request is forwarded)
5. forward: the upstream's breaker and overload checks, then a body that
   fits the route's buffer is read whole (``downstream.read_body``) before a
   server is picked, connected to (or a pooled connection taken, or a place
   waited for under max_connections) and sent the request, whose head the
   route's ``upstream_request`` filters may edit first; a larger body
   streams (``downstream.stream_body``, then ``send_body`` / ``body_sent``);
6. the response, through the exchange contract of upstream/connection.py,
   which this class implements: its head (edited by the route's
   ``response`` filters), data and end are passed to the adapter; a failure before anything reached the client is retried on
   another server when the policy allows (upstream/retry.py), else mapped
   to 502/503/504 in one place (``_fail_upstream``);
7. log: ``_finished`` runs the log phase (observe/observer.py, then the
   route's ``log`` filters) exactly once per request; the session is the
   per-request record it reads.

What filters read on the session (``method``, ``path``, ``header()``,
``state``...) is listed in filters/base.py.

The downstream surface (what an adapter offers the session):
``write_answer(status, fields, body, close)``, ``send_response_head(head)``,
``send_data(data)``, ``send_trailers(fields)``, ``send_informational(head)``, ``switch_protocols(head)``,
``end_response()``, ``response_done()``, ``response_sent()``,
``forget_response()``, ``read_body(limit)``, ``stream_body(first)``,
``pause_reading()``, ``resume_reading()``, ``close()``, ``abort()`` and the
attribute ``closed``. An answer's ``fields`` are ``\\r\\nName: value`` pieces
(proxy/errors.py); the adapter renders status, Date and its framing.

An HTTP/1.1 connection keeps one session and starts it again for each of
its requests (one at a time); ``begin`` resets what is per request.
"""

import asyncio
import time

from fastgate.observe.errorlog import log
from fastgate.observe.record import LIMIT_NONE
from fastgate.proxy.answer import Answer, HeaderChanges
from fastgate.proxy.deferred import Deferred
from fastgate.proxy.errors import gateway_error
from fastgate.proxy.heads import upstream_request_head
from fastgate.upstream.retry import NO_DEADLINE
from fastgate.wire import grpc
from fastgate.wire.chunked import BodyTooLarge, FramingError, forwardable_trailers
from fastgate.wire.h1 import allowed_upgrade, header_value

_PENDING_HIGH_BYTES = 256 * 1024
"""Request bytes held for an upstream connection still being made, past which the client is paused."""


class ProxySession:
    __slots__ = (
        # the connection's, set once
        "ctx", "downstream", "client_ip", "client_text", "proto_header",
        # the request's
        "head", "route", "request_id", "response_fields", "waiting", "wait_index", "body_for_filters",
        "body_buffer", "body_pending", "_state",
        # its forwarding
        "pool", "upstream", "connecting", "queued", "pending", "pending_bytes", "upstream_head", "started_s",
        "tried", "attempt", "retry_budget", "retry_timer", "total_deadline", "deadline", "response_started",
        "upstream_paused", "grpc_replayable",
        # what the log phase reads (observe/observer.py, observe/record.py, the C writer and counter)
        "received_s", "bytes_in", "bytes_out", "status", "upstream_label", "upstream_s", "limit_outcome",
        "traceparent",
    )

    def __init__(self, ctx, downstream, client_ip: bytes, client_text: str, proto_header: bytes) -> None:
        self.ctx = ctx
        """The worker's WorkerContext (transport/context.py): router, clock, ids, metrics, observer."""
        self.downstream = downstream
        self.client_ip = client_ip
        """The peer's address as bytes (X-Forwarded-For, limit and hash keys)."""
        self.client_text = client_text
        """The same as text (the access log's client_ip)."""
        self.proto_header = proto_header
        """``\\r\\nX-Forwarded-Proto: http`` (or https), pre-encoded by the listener."""
        # the request's
        self.head = None
        self.route = None
        self.request_id = b""
        self.response_fields = b""
        """``\r\nName: value`` fields added to this request's response: rate-limit headers, and what
        ``response`` filters add."""
        self.waiting = None
        """The Future, Task or Deferred a ``request`` filter returned, while the request waits on it."""
        self.wait_index = 0
        """Where the ``request`` chain goes on once ``waiting`` is done."""
        self.body_for_filters = False
        """The body is being read for the ``request`` filters (their ``body_bytes``); they run once it is in."""
        self.body_buffer = None
        """The request body read before the request goes on (transport/body_buffer.py BodyBuffer)."""
        self.body_pending = False
        """The body is being streamed upstream and has not ended yet."""
        self._state = None
        """Filters' per-request state (``state``), made when first asked for."""
        # its forwarding
        self.pool = None
        """The pool of the server chosen for this request; counts it in flight until released."""
        self.upstream = None
        """The UpstreamConnection serving this request, once connected."""
        self.connecting = None
        """The connect in progress (an asyncio Future), or None."""
        self.queued = None
        """The ConnectionLimit this request waits in for a connection (upstream/connection_limit.py)."""
        self.pending: list[bytes] = []
        """Bytes for the upstream while its connection is being made."""
        self.pending_bytes = 0
        self.upstream_head = b""
        """The request as sent upstream (head, and a body read whole), kept to send it again."""
        self.started_s = 0.0
        """When the request went upstream, for balancers that track response times."""
        self.tried: list | None = None
        """Pools this request was sent or tried to connect to, once it went to a second server."""
        self.attempt = 0
        """Retries this request had after it was sent (Upstream.retries)."""
        self.retry_budget = None
        """The retry budget (upstream/retry.py) this request holds a place in while it is being retried."""
        self.retry_timer = None
        self.total_deadline = 0.0
        """When the route's total_timeout ends for this request (clock time; 0.0: none, or not started)."""
        self.deadline = 0.0
        """While a connection is being made or waited for: when to give up (the clock watches the session)."""
        self.response_started = False
        """A response head came from the upstream (it may still be held back by the adapter)."""
        self.upstream_paused = False
        """The upstream's reading is paused because the client's write buffer is full."""
        self.grpc_replayable = False
        """A gRPC call that may be sent again (read whole, its method retryable); read only for gRPC calls."""
        # the log record
        self.received_s = 0.0
        """When the current request's head arrived (time.monotonic); 0.0 between requests."""
        self.bytes_in = 0
        self.bytes_out = 0
        self.status = 0
        """The status of the response sent or being sent, 0 before one."""
        self.upstream_label = ""
        """host:port of the server whose response is relayed."""
        self.upstream_s = 0.0
        """Seconds from sending the request upstream to its response head."""
        self.limit_outcome = LIMIT_NONE
        self.traceparent = b""
        """``\\r\\ntraceparent: ...`` as sent upstream (observe/trace.py), b"" when tracing is off."""

    # -- phases -------------------------------------------------------------------
    def begin(self, head_bytes: int) -> None:
        """A request head of ``head_bytes`` arrived: a new request (and log record) starts."""
        self.received_s = time.monotonic()
        self.bytes_in = head_bytes
        self.bytes_out = 0
        self.status = 0
        self.upstream_label = ""
        self.upstream_s = 0.0
        self.limit_outcome = LIMIT_NONE
        self.traceparent = b""
        self.request_id = b""
        self.head = self.route = self._state = None
        self.response_fields = b""
        self.body_buffer = None
        self.body_for_filters = False
        self.response_started = False

    def start(self, head) -> None:
        """The request head is parsed: early phase, route, access, then dispatch."""
        ctx = self.ctx
        self.head = head
        early = ctx.early_filters
        if early:
            for filter_ in early:
                answer = filter_.early(self)
                if answer is not None:
                    self.request_id = head.request_id or ctx.request_ids.next()
                    self._reply(answer)
                    return
        route = ctx.router.match(head.host, head.path, head.method, head)
        self.route = route
        self.request_id = head.request_id or (ctx.request_ids.next() if route is None or route.request_id else b"")
        if route is None:
            self._answer(404, *gateway_error(head, 404, "no route matches this request", self.request_id))
            return
        if head.content_length > route.max_body_bytes:
            self.refuse(413, "request body too large")
            return
        if head.upgrade:
            head.upgrade = allowed_upgrade(head.upgrade, route.upgrades)
            if not head.upgrade and head.http2:  # an extended CONNECT means nothing but its tunnel
                self._answer(403, *gateway_error(head, 403, "websocket is not allowed on this route", self.request_id))
                return
        filters = route.filters
        if not filters.request:
            self._forward()
        elif filters.body_bytes and head.has_body:
            self.body_for_filters = True
            self.downstream.read_body(max(filters.body_bytes, self._buffered_size(head, route)))
        else:
            self._access(0)

    def _access(self, index: int) -> None:
        """The access phase, from the route's ``index``-th ``request`` filter on; then forward."""
        chain = self.route.filters.request
        while index < len(chain):
            result = chain[index].request(self)
            index += 1
            if result is None:
                continue
            if result.__class__ is Answer:
                self._reply(result)
            elif isinstance(result, Deferred):
                self.wait_index = index
                self.waiting = result
                result.then(self._resumed)
            else:
                self.wait_index = index
                self.waiting = future = asyncio.ensure_future(result)  # a coroutine becomes a Task
                future.add_done_callback(self._waited)
            return
        self._forward()

    def _waited(self, future) -> None:
        """What a ``request`` filter waited on is done: go on, or answer."""
        if future is not self.waiting:
            return  # given up on: the client went away
        try:
            result = future.result()
        except Exception:
            self.waiting = None
            self.internal_error()
            return
        self._resumed(result)

    def _resumed(self, result) -> None:
        """A ``request`` filter's result came (a Deferred's, or through ``_waited``): go on, or answer."""
        self.waiting = None
        try:
            if result is None:
                self._access(self.wait_index)
            elif result.__class__ is Answer:
                self._reply(result)
            else:
                raise TypeError(f"a request filter's awaitable gave {result!r}, not None or an Answer")
        except Exception:
            self.internal_error()

    def _reply(self, answer: Answer) -> None:
        """A filter's answer: with the request id and the response fields; an error's body is JSON."""
        request_id = self.request_id
        if answer.error is not None:
            self._answer(answer.status, *gateway_error(self.head, answer.status, answer.error, request_id,
                                                       answer.fields + self.response_fields))
            return
        route = self.route
        self._answer(answer.status, b"".join((
            answer.fields, route.response_edits.extra if route is not None else b"", self.response_fields,
            b"\r\nX-Request-ID: " + request_id if request_id else b"",
        )), answer.body)

    def _answer(self, status: int, fields: bytes, body: bytes, sent_status: int = 0) -> None:
        """Answer the request here (no upstream); a request whose body was not read ends the connection.
        The log says ``status``; ``sent_status`` is sent when it differs (a gRPC status answer is 200)."""
        self.downstream.write_answer(sent_status or status, fields, body, False)
        self._finished(status)
        self.downstream.response_done()

    def refuse(self, status: int, reason: str) -> None:
        """Answer an error (JSON) if nothing of a response went out yet, and close the connection."""
        downstream = self.downstream
        if downstream.closed:
            return
        self._drop_upstream()
        if not self.response_started:
            fields, body, sent_status = gateway_error(self.head, status, reason, self.request_id)
            downstream.write_answer(sent_status, fields, body, True)
            self._finished(status)
        else:
            self._finished(self.status)
        downstream.close()

    def refuse_body(self, exc: FramingError) -> None:
        """A request body that cannot be relayed: 413 past its size limit, else 400."""
        if isinstance(exc, BodyTooLarge):
            self.refuse(413, "request body too large")
        else:
            self.refuse(400, f"malformed request body: {exc}")

    # -- what filters read (filters/base.py) ---------------------------------------
    @property
    def method(self) -> bytes:
        return self.head.method

    @property
    def path(self) -> bytes:
        """The path as routed (normalised), without the query."""
        return self.head.path

    @property
    def query(self) -> bytes:
        """The query with its "?", or b""."""
        return self.head.query

    @property
    def authority(self) -> bytes:
        """The Host (HTTP/2's :authority), b"" when there is none."""
        return self.head.host

    @property
    def scheme(self) -> bytes:
        return b"https" if self.proto_header.endswith(b"https") else b"http"

    @property
    def protocol(self) -> str:
        head = self.head
        return "HTTP/2.0" if head.http2 else "HTTP/1.0" if head.http_1_0 else "HTTP/1.1"

    def header(self, name: bytes) -> bytes | None:
        """The value of the request's header ``name`` (lower case), or None."""
        return header_value(self.head.raw, name)

    @property
    def state(self) -> dict:
        """Per-request state of the route's filters (made when first asked for)."""
        state = self._state
        if state is None:
            self._state = state = {}
        return state

    def body_prefix(self, limit: int) -> bytes | None:
        """The first ``limit`` bytes of the request body, for filters with ``body_bytes``; None
        without a body."""
        body = self.body_buffer
        return body.payload(limit) if body is not None else None

    def _unavailable(self, reason: str, extra_headers: bytes = b"") -> None:
        """503 before anything went upstream (overload, breaker, no server)."""
        self._answer(503, *gateway_error(self.head, 503, reason, self.request_id, extra_headers))

    def internal_error(self) -> None:
        """A bug met while serving this request: log it, answer 500 if still possible, close."""
        log.exception("internal error serving %s", self.client_text)
        try:
            self.refuse(500, "internal error")
        except Exception:
            self.downstream.abort()

    # -- forwarding ---------------------------------------------------------------
    def _forward(self) -> None:
        """The request passed the access phase and goes to the route's upstream, unless the upstream
        cannot take it now; a body that fits the buffer is read whole first."""
        head = self.head
        route = self.route
        group = route.upstream
        if group.tripped and not group.breaker.admit():
            self._unavailable("upstream circuit breaker open",
                              b"\r\nRetry-After: %d" % group.breaker.retry_after(self.ctx.clock.now))
            return
        if group.max_concurrent and group.overloaded():
            self._unavailable("upstream overloaded")
            return
        if head.has_body and self.body_buffer is None:
            size = self._buffered_size(head, route)
            if size:
                self.downstream.read_body(size)
                return
        self._send()

    @staticmethod
    def _buffered_size(head, route) -> int:
        """How much of this request's body is read before it goes upstream: 0 when it streams (and a
        gRPC call streams, unless its route may retry its method)."""
        size = route.buffer_bytes
        if head.grpc and not route.grpc_retryable(head.path):
            return 0
        return size if size and (head.chunked or head.content_length <= size) else 0

    def body_ready(self, body) -> None:
        """The adapter read the body whole, or ``limit`` bytes of it (a BodyBuffer): go on."""
        self.body_buffer = body
        if self.body_for_filters:
            self.body_for_filters = False
            self._access(0)
        else:
            self._send()

    def _send(self) -> None:
        """Pick a server and send the request: the body read whole, or streamed as it comes."""
        head = self.head
        route = self.route
        pool = route.upstream.pick(head, self.client_ip)
        if pool is None:
            self._unavailable("no upstream server available")
            return
        pool.active += 1
        self.pool = pool
        self.started_s = time.monotonic()
        body = self.body_buffer
        whole = first = None
        if body is not None:
            self.body_buffer = None
            if body.complete:
                whole = body.payload()
            else:
                first = body.raw()
        request_head = upstream_request_head(
            head, route, self.request_id, self.client_ip, self.proto_header, pool.host_header, self.traceparent,
            b"", len(whole) if whole is not None and head.chunked else -1,
            self._filter_upstream_request() if route.filters.upstream_request else b"",
        )
        if whole:
            request_head += whole
        self.upstream_head = request_head
        self.tried = None
        self.attempt = 0
        self.body_pending = streams = whole is None and head.has_body
        total_s = route.timeouts.total_s
        self.total_deadline = self.ctx.clock.now + total_s if total_s and not streams else 0.0
        if head.grpc:
            self._grpc_call(streams)
        upstream = pool.acquire()
        if upstream is not None:
            self._start_exchange(upstream)
            upstream.transport.write(request_head)
        else:
            self._connect(request_head)
            if self.downstream.closed:
                return
        if streams:
            self.downstream.stream_body(first)

    def _filter_upstream_request(self) -> bytes:
        """Run the route's ``upstream_request`` filters: what they remove joins the head's drops;
        what they add is returned, to be appended."""
        changes = HeaderChanges()
        for filter_ in self.route.filters.upstream_request:
            filter_.upstream_request(self, changes)
        head = self.head
        if changes.removed:
            head.drops = sorted(head.drops + changes.spans(head.raw))
        return b"".join(changes.added)

    def _grpc_call(self, streams: bool) -> None:
        """A gRPC call: its grpc-timeout, capped by the route's total timeout, is its deadline from
        now, while its messages still stream too; a retry may replay it if it was read whole."""
        timeout_s = grpc.timeout_s(self.head.raw)
        total_s = self.route.timeouts.total_s
        if total_s and (not timeout_s or total_s < timeout_s):
            timeout_s = total_s
        self.total_deadline = self.ctx.clock.now + timeout_s if timeout_s else 0.0
        self.grpc_replayable = not streams and self.route.grpc_retryable(self.head.path)

    def send_body(self, data: bytes) -> None:
        """Bytes of a streamed body, as the adapter relays them (their framing kept)."""
        upstream = self.upstream
        if upstream is not None:
            upstream.transport.write(data)
        elif self.connecting is not None or self.queued is not None:
            self.pending.append(data)
            self.pending_bytes += len(data)
            if self.pending_bytes > _PENDING_HIGH_BYTES:
                self.downstream.pause_reading()

    def body_sent(self) -> None:
        """The streamed body ended: the request is complete, its timeouts start."""
        self.body_pending = False
        timeouts = self.route.timeouts
        if timeouts.total_s and not self.total_deadline:  # (a gRPC call's deadline runs already)
            self.total_deadline = self.ctx.clock.now + timeouts.total_s
        if self.upstream is not None:
            self.upstream.expect_head(timeouts.head_deadline(self.ctx.clock.now, self.total_deadline))

    def _connect(self, request_head: bytes) -> None:
        """Open a new upstream connection; ``request_head`` goes first once it is made."""
        self.pending = [request_head]
        self.pending_bytes = len(request_head)
        self._open_connection(self.pool)

    def _open_connection(self, pool) -> None:
        """Connect to ``pool``'s server, within the connect timeout and what is left of the total one;
        at the group's max_connections, wait for a connection as long (or answer 503 at once)."""
        clock = self.ctx.clock
        deadline = clock.now + self.route.timeouts.connect_s
        total = self.total_deadline
        self.deadline = total if total and total < deadline else deadline
        clock.watched.add(self)
        group = pool.group
        limit = group.limit
        if limit.full():
            if limit.wait(self, group.pools):
                self.queued = limit
            else:
                self._fail_upstream(503, "upstream connection limit reached")
            return
        self.connecting = pool.connect(self._connected)

    def on_deadline(self) -> None:
        """The connect (or the wait for a connection) took too long."""
        self.deadline = 0.0
        self.ctx.clock.watched.discard(self)
        if self.queued is not None:
            self._fail_upstream(503, "upstream connection limit reached")
            return
        if self.connecting is None:
            return
        self._abandon_connect()
        self._connect_failed(504, "upstream connect timed out")

    # -- called by the group's ConnectionLimit while this request waits in it ------
    def connection_slot_free(self) -> None:
        """A connection slot is ours: connect."""
        self.queued = None
        try:
            self._open_connection(self.pool)
        except Exception:
            self.internal_error()

    def take_connection(self, upstream) -> None:
        """A connection to our server was released clean: the request goes on it."""
        self.queued = None
        try:
            self._attach(upstream)
        except Exception:
            self.internal_error()

    def _connect_failed(self, status: int, reason: str) -> None:
        """No connection to the chosen server: try another one (connect_retries), else answer."""
        pool = self.pool
        pool.group.exchange_failed(pool)
        self.ctx.metrics.count_upstream_error(pool, status, True)
        tried = self.tried or [pool]
        other = self.route.retry.server_after_connect_failure(self.head, self.client_ip, tried, self._left_s())
        if other is None:
            self._fail_upstream(status, reason)
            return
        tried.append(other)
        self.tried = tried
        self._release_pool()
        other.active += 1
        self.pool = other
        self._open_connection(other)

    def _connected(self, future) -> None:
        if future is not self.connecting:
            return  # given up on (timeout or client gone): close what was made
        self.connecting = None
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            try:
                self._connect_failed(502, "upstream refused the connection" if isinstance(exc, ConnectionRefusedError)
                                     else f"cannot connect to upstream: {exc.__class__.__name__}")
            except Exception:
                self.internal_error()
            return
        upstream = future.result()[1]
        if self.downstream.closed:
            upstream.close()
            return
        try:
            self._attach(upstream)
        except Exception:
            self.internal_error()

    def _attach(self, upstream) -> None:
        """The request goes on ``upstream``, a connection made or handed over for it: what was held
        back while it waited is written."""
        self.deadline = 0.0
        self.ctx.clock.watched.discard(self)
        self._start_exchange(upstream)
        upstream.transport.writelines(self.pending)
        self.pending = []
        self.pending_bytes = 0
        self.downstream.resume_reading()

    def _start_exchange(self, upstream) -> None:
        """Bind ``upstream`` to this request's attempt; a complete request's head is due by the
        attempt's deadline (upstream/timeouts.py), one still being sent gets it with its last byte
        (but a gRPC call's deadline holds already)."""
        self.upstream = upstream
        timeouts = self.route.timeouts
        upstream.start(self, self.head.method, timeouts.idle_s, self.total_deadline if self.body_pending
                       else timeouts.head_deadline(self.ctx.clock.now, self.total_deadline))

    # -- the exchange contract (called by UpstreamConnection) -----------------
    def on_informational(self, head) -> None:
        self.downstream.send_informational(head)

    def on_upgraded(self, head) -> None:
        if not self.head.upgrade:
            self.on_upstream_failed(502, "upstream switched protocols unasked")
            return
        self.response_started = True
        self.status = 101
        self.upstream_label = self.pool.label if self.pool is not None else ""
        self.downstream.switch_protocols(head)

    def on_response_head(self, head) -> None:
        pool = self.pool
        group = pool.group
        if head.status < 500:
            if self.head.grpc and self._grpc_unavailable(head):
                return
            group.answered += 1
            if pool.failures:
                pool.failures = 0
        elif group.record_server_error(pool, head.status) and self._retry():
            return
        self.response_started = True
        self.status = head.status
        self.upstream_label = pool.label
        if self.started_s:
            self.upstream_s = upstream_s = time.monotonic() - self.started_s
            if group.balancer.tracks_latency:
                pool.observe(upstream_s)
            self.started_s = 0.0
        if self.route.filters.response:
            self._filter_response(head)
        self.downstream.send_response_head(head)

    def _filter_response(self, head) -> None:
        """Run the route's ``response`` filters on the upstream's response head."""
        changes = HeaderChanges()
        for filter_ in self.route.filters.response:
            filter_.response(self, head, changes)
        if changes.removed:
            head.drops = sorted(head.drops + changes.spans(head.raw))
        if changes.added:
            self.response_fields += b"".join(changes.added)

    def _grpc_unavailable(self, head) -> bool:
        """A trailers-only UNAVAILABLE to a call whose method the route may retry: a failed attempt,
        sent again (True) if the retry policy lets it."""
        if not self.grpc_replayable or grpc.status_of(head.raw) != grpc.UNAVAILABLE:
            return False
        self.pool.group.exchange_failed(self.pool)
        return self._retry()

    def on_response_data(self, data: bytes) -> None:
        self.downstream.send_data(data)

    def on_response_trailers(self, fields: list) -> None:
        """A chunked response's trailer fields ((name, value) bytes, names in lower case), after its
        last data and in place of its last chunk; on_response_end follows."""
        self.downstream.send_trailers(forwardable_trailers(fields))

    def on_response_end(self, reusable: bool) -> None:
        self._end_retry()
        downstream = self.downstream
        downstream.end_response()
        self._finished(self.status)
        self._release_pool()
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            if reusable and not self.body_pending and self.head.reuse_upstream:
                upstream.release()
            else:
                upstream.close()
            if self.upstream_paused:
                self.upstream_paused = False
                if upstream.transport is not None:
                    upstream.transport.resume_reading()
        downstream.response_done()

    def on_upstream_stale(self) -> None:
        head = self.head
        if self.body_pending or head.has_body or head.upgrade:
            self.on_upstream_failed(502, "upstream closed the connection")
            return
        self.upstream = None
        self._connect(self.upstream_head)

    def on_upstream_failed(self, status: int, reason: str) -> None:
        pool = self.pool
        if pool is not None:
            pool.group.exchange_failed(pool)
            self.ctx.metrics.count_upstream_error(pool, status, False)
        if not self._retry():
            self._fail_upstream(status, reason)

    def pause_client_reading(self) -> None:
        self.downstream.pause_reading()

    def resume_client_reading(self) -> None:
        self.downstream.resume_reading()

    # -- what the adapter tells the session -------------------------------------
    def pause_upstream(self) -> None:
        """The client's write buffer is full: stop reading the response."""
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            self.upstream_paused = True
            upstream.transport.pause_reading()

    def resume_upstream(self) -> None:
        upstream = self.upstream
        if self.upstream_paused and upstream is not None and upstream.transport is not None:
            self.upstream_paused = False
            upstream.transport.resume_reading()

    def tunnel_data(self, data: bytes) -> None:
        """Bytes from the client after a 101."""
        self.upstream.transport.write(data)

    def tunnel_eof(self) -> None:
        """The client half-closed a tunnel: so does the upstream side (TLS has no half-close: it ends)."""
        transport = self.upstream.transport
        if transport.can_write_eof():
            transport.write_eof()
        else:
            transport.close()

    def client_gone(self, status: int) -> None:
        """The client connection ended (closed, reset, cut by a timeout): log ``status`` if a request
        was in progress, and let go of the upstream side."""
        self._finished(status)
        self._drop_upstream()

    def timeout_s(self) -> float:
        """How long the upstream may be silent in this exchange (a tunnel's idle timeout)."""
        return self.upstream.read_timeout_s

    # -- failure, retries -----------------------------------------------------------
    def _fail_upstream(self, status: int, reason: str) -> None:
        """Answer ``status`` if nothing of the response reached the client yet, else cut it short."""
        self._drop_upstream()
        downstream = self.downstream
        if downstream.closed:
            return
        if downstream.response_sent():
            downstream.abort()
        else:
            self.response_started = False
            downstream.forget_response()
            self.refuse(status, reason)

    def _retry(self) -> bool:
        """Send the request again to another server if the retry policy lets it; False when not.

        The policy (upstream/retry.py) decides from the request, the attempts
        and the budget; here only a request whose body was completely sent
        and of whose response nothing went to the client may go again.
        """
        pool = self.pool
        if pool is None or self.body_pending or self.downstream.response_sent():
            return False
        group = pool.group
        tried = self.tried or [pool]
        left_s = self._left_s()
        retry = self.route.retry
        head = self.head
        other = retry.server_for_retry(head, self.client_ip, tried, self.attempt, left_s,
                                       head.grpc and self.grpc_replayable)
        if other is None:
            return False
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            upstream.abort()
        self._release_pool()
        self.response_started = False
        self.downstream.forget_response()
        if not self.attempt:
            group.budget.take()
            self.retry_budget = group.budget
        self.attempt += 1
        self.ctx.metrics.count_retry(group)
        tried.append(other)
        self.tried = tried
        other.active += 1
        self.pool = other
        self.retry_timer = self.ctx.clock.loop.call_later(retry.backoff(self.attempt, left_s), self._send_again)
        return True

    def _send_again(self) -> None:
        self.retry_timer = None
        if self.downstream.closed:
            return
        try:
            upstream = self.pool.acquire()
            if upstream is None:
                self._connect(self.upstream_head)
                return
            self._start_exchange(upstream)
            upstream.transport.write(self.upstream_head)
        except Exception:
            self.internal_error()

    def _left_s(self) -> float:
        """What is left of the request's total timeout, exactly (a retry decision is rare)."""
        total = self.total_deadline
        return total - self.ctx.clock.loop.time() if total else NO_DEADLINE

    def _end_retry(self) -> None:
        """The request is over: give its place in the retry budget back."""
        budget = self.retry_budget
        if budget is not None:
            self.retry_budget = None
            budget.give_back()
        if self.retry_timer is not None:
            self.retry_timer.cancel()
            self.retry_timer = None

    def _finished(self, status: int) -> None:
        """The log phase, once per request (observe/observer.py), then the route's ``log`` filters."""
        if self.received_s:
            self.ctx.observer.done(self, status)
            self.received_s = 0.0
            route = self.route
            if route is not None and route.filters.log:
                for filter_ in route.filters.log:
                    try:
                        filter_.log(self, status)
                    except Exception:
                        log.exception("log filter %r failed", filter_)

    def _release_pool(self) -> None:
        """The exchange with the chosen server is over: it no longer counts as in flight."""
        pool = self.pool
        if pool is not None:
            self.pool = None
            pool.active -= 1
            self.started_s = 0.0

    def _drop_upstream(self) -> None:
        """Let go of the upstream side mid-exchange (it cannot be reused), or of what a filter awaits
        (its Future or Deferred is cancelled)."""
        waiting = self.waiting
        if waiting is not None:
            self.waiting = None
            waiting.cancel()
        self._end_retry()
        self._release_pool()
        self._abandon_connect()
        if self.queued is not None:
            self.queued.cancel(self)
            self.queued = None
        if self.deadline:
            self.deadline = 0.0
            self.ctx.clock.watched.discard(self)
        self.pending = []
        self.body_pending = False
        upstream = self.upstream
        if upstream is not None:
            self.upstream = None
            upstream.abort()

    def _abandon_connect(self) -> None:
        """Give up a connect in progress; a connection it still makes is closed."""
        connecting = self.connecting
        if connecting is not None:
            self.connecting = None
            connecting.add_done_callback(_close_made_connection)
            connecting.cancel()


def _close_made_connection(future) -> None:
    """A connect that finished after it was given up on: close what it made."""
    if not future.cancelled() and future.exception() is None:
        future.result()[1].close()
