"""Export of the gateway's spans to an OpenTelemetry collector (OTLP/HTTP, protobuf).

Theory of operation
-------------------
For each finished request whose trace is sampled (observe/trace.py), ``add``
keeps a tuple of what the span needs; nothing is encoded on the request
path. On every clock tick ``flush`` starts one background task (unless one
is running) that encodes the queued spans into ExportTraceServiceRequest
messages of at most ``export_batch`` spans (opentelemetry-proto) and POSTs
them to the endpoint over one kept-alive HTTP/1.1 connection (h11), each
within ``export_timeout``. The queue holds at most ``export_queue`` spans:
while the receiver is slow or down, further spans are dropped and counted
in ``dropped_spans``, as are the spans of a batch that failed; a failure
is reported in the error log at most once every ``_COMPLAIN_EVERY_S``, and
stops the task until the next tick. Requests never wait for any of this.

Each span: name = the route's name (the method when no route matched),
kind SERVER, the request's start and end, status ERROR for a 5xx answer,
and the attributes http.request.method, url.path, http.response.status_code,
server.address and server.port (the upstream server that answered),
fastgate.route and fastgate.request_id.
"""

import asyncio
import time
from urllib.parse import urlsplit

import h11

from fastgate import __version__
from fastgate.config.schema import Tracing
from fastgate.observe.errorlog import log
from fastgate.observe.trace import is_sampled, parse_traceparent, span_id_of, trace_id_of

_COMPLAIN_EVERY_S = 10.0
_CLOSE_WAIT_S = 1.0
"""At worker exit, how long the last export may take before the rest is dropped."""
_SERVER_KIND = 2  # Span.SpanKind.SPAN_KIND_SERVER
_STATUS_ERROR = 2  # Status.StatusCode.STATUS_CODE_ERROR


def parse_endpoint(url: str) -> tuple[str, int, str]:
    """(host, port, path) of an ``http://host[:port]/path`` URL; raise ValueError."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError("must be an http:// URL (https is not supported; use a local collector)")
    if not parts.hostname:
        raise ValueError("has no host")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError("has a bad port") from None
    return parts.hostname, port, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def check_installed() -> None:
    """Raise ImportError when opentelemetry-proto (the ``otlp`` extra) is missing."""
    import opentelemetry.proto.collector.trace.v1.trace_service_pb2  # noqa: F401


class SpanExporter:
    """A request observer output (observe/observer.py) that exports sampled spans."""

    __slots__ = ("loop", "host", "port", "path", "batch", "limit", "timeout_s", "service_name",
                 "queue", "dropped_spans", "exported_spans", "_task", "_stream", "_http", "_complained_s")

    def __init__(self, tracing: Tracing, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.host, self.port, self.path = parse_endpoint(tracing.otlp_endpoint)
        self.batch = tracing.export_batch
        self.limit = tracing.export_queue
        self.timeout_s = float(tracing.export_timeout)
        self.service_name = tracing.service_name
        self.queue: list[tuple] = []
        self.dropped_spans = 0
        """Spans lost because the queue was full or their export failed (read by metrics)."""
        self.exported_spans = 0
        self._task: asyncio.Task | None = None
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._http: h11.Connection | None = None
        self._complained_s = -_COMPLAIN_EVERY_S

    # -- on the request path -------------------------------------------------------
    def add(self, conn, status: int, total_s: float) -> None:
        traceparent = conn.traceparent
        if not is_sampled(traceparent):
            return
        if len(self.queue) >= self.limit:
            self.dropped_spans += 1
            return
        head = conn.head
        route = conn.route
        self.queue.append((
            traceparent, head.traceparent, time.time_ns(), total_s, status, head.method, head.path,
            route.name if route is not None else "", conn.upstream_label, conn.request_id,
        ))

    # -- the output contract ----------------------------------------------------------
    def flush(self) -> None:
        if self.queue and (self._task is None or self._task.done()):
            self._task = self.loop.create_task(self._export())

    def reopen(self) -> None:
        pass

    async def close(self) -> None:
        """Worker exit: send what is queued, within ``_CLOSE_WAIT_S`` (and the export timeout)."""
        self.flush()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, min(self.timeout_s, _CLOSE_WAIT_S))
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass
        self.dropped_spans += len(self.queue)
        self.queue.clear()
        self._disconnect()

    # -- exporting -------------------------------------------------------------------
    async def _export(self) -> None:
        while self.queue:
            spans = self.queue[: self.batch]
            del self.queue[: self.batch]
            try:
                async with asyncio.timeout(self.timeout_s):
                    status = await self._send(encode_spans(spans, self.service_name))
            except Exception as exc:  # the receiver is down, slow or broken; or a bug: never kill the worker
                self._disconnect()
                self._failed(len(spans), f"{exc.__class__.__name__}: {exc}")
                return
            if not 200 <= status < 300:
                self._failed(len(spans), f"the receiver answered {status}")
                return
            self.exported_spans += len(spans)

    def _failed(self, count: int, reason: str) -> None:
        self.dropped_spans += count
        now = time.monotonic()
        if now - self._complained_s >= _COMPLAIN_EVERY_S:
            self._complained_s = now
            log.error("span export to http://%s:%d%s failed: %s; %d spans dropped so far",
                      self.host, self.port, self.path, reason, self.dropped_spans)

    async def _send(self, body: bytes) -> int:
        """POST ``body``; a kept-alive connection the receiver closed meanwhile is replaced once."""
        reused = self._stream is not None
        try:
            return await self._post(body)
        except (OSError, h11.ProtocolError):
            if not reused:
                raise
            self._disconnect()
            return await self._post(body)

    async def _post(self, body: bytes) -> int:
        """POST one export request on the kept-alive connection; return the response status."""
        http = self._http
        if http is not None and http.our_state is h11.DONE and http.their_state is h11.DONE:
            http.start_next_cycle()
        elif http is None or http.our_state is not h11.IDLE:
            self._disconnect()
            self._stream = await asyncio.open_connection(self.host, self.port)
            self._http = http = h11.Connection(h11.CLIENT)
        reader, writer = self._stream
        request = h11.Request(method="POST", target=self.path, headers=[
            ("Host", f"{self.host}:{self.port}"), ("Content-Type", "application/x-protobuf"),
            ("Content-Length", str(len(body))), ("User-Agent", f"fastgate/{__version__}"),
        ])
        writer.write(http.send(request) + http.send(h11.Data(data=body)) + http.send(h11.EndOfMessage()))
        status = 0
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                http.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        if http.our_state is not h11.DONE or http.their_state is not h11.DONE:
            self._disconnect()  # the receiver closes after each answer
        return status

    def _disconnect(self) -> None:
        if self._stream is not None:
            self._stream[1].close()
            self._stream = None
        self._http = None


def encode_spans(spans: list[tuple], service_name: str) -> bytes:
    """An ExportTraceServiceRequest (protobuf bytes) holding ``spans`` (tuples made by ``add``)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service_name)))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "fastgate"
    scope_spans.scope.version = __version__
    for traceparent, incoming, end_ns, total_s, status, method, path, route, upstream, request_id in spans:
        trace_id = trace_id_of(traceparent)
        parent = parse_traceparent(incoming) if incoming else None
        span = scope_spans.spans.add(
            trace_id=bytes.fromhex(trace_id.decode()),
            span_id=bytes.fromhex(span_id_of(traceparent).decode()),
            parent_span_id=bytes.fromhex(parent[1].decode()) if parent and parent[0] == trace_id else b"",
            name=route or method.decode("latin-1"),
            kind=_SERVER_KIND,
            start_time_unix_nano=end_ns - int(total_s * 1e9),
            end_time_unix_nano=end_ns,
        )
        attributes = span.attributes
        attributes.append(KeyValue(key="http.request.method", value=AnyValue(string_value=method.decode("latin-1"))))
        attributes.append(KeyValue(key="url.path", value=AnyValue(string_value=path.decode("latin-1"))))
        attributes.append(KeyValue(key="http.response.status_code", value=AnyValue(int_value=status)))
        if upstream:
            host, _, port = upstream.rpartition(":")
            attributes.append(KeyValue(key="server.address", value=AnyValue(string_value=host.strip("[]"))))
            attributes.append(KeyValue(key="server.port", value=AnyValue(int_value=int(port))))
        if route:
            attributes.append(KeyValue(key="fastgate.route", value=AnyValue(string_value=route)))
        if request_id:
            attributes.append(KeyValue(key="fastgate.request_id",
                                       value=AnyValue(string_value=request_id.decode("latin-1"))))
        if status >= 500:
            span.status.code = _STATUS_ERROR
    return request.SerializeToString()
