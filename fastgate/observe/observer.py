"""The log phase: what runs once for every finished request.

The request's session (proxy/session.py ProxySession) calls
``RequestObserver.done(session, status)`` exactly once per request, whatever
its end: a proxied response completed, a local answer, a refusal, an abort,
or the client going away (status 499). The session is the request's record:
what is read here and below is its attributes, whatever protocol carried it.

A sink (access log, event publishers) has ``flush()``, ``reopen()``,
``async close()``, a ``dropped`` count and a ``needs_record`` flag. When
``needs_record`` is true the sink gets ``write(record)``: a ``RequestRecord``
(observe/record.py), made once per request for all such sinks, and only
when there is one. When false it has a callable ``write_request(conn,
status, total_s)`` that reads the connection itself during the call (the
access log's C JSON writer; at most one such sink), so that no record is
made for it; the span exporter also reads the connection. None of them may
block or raise: they buffer, and write on ``flush()``, which the worker
clock calls on every tick.

``done`` calls the metrics counter and ``write_request`` through local
names: CPython 3.11 does not specialise a method call on an attribute that
holds a callable (a slot), and looks it up the slow way on every call.
"""

from time import monotonic

from fastgate.observe.record import make_record


class RequestObserver:
    __slots__ = ("metrics", "count_request", "sinks", "record_sinks", "write_request", "spans", "outputs")

    def __init__(self, metrics, sinks: list, spans=None) -> None:
        self.metrics = metrics
        """observe/metrics.py WorkerMetrics, or NO_METRICS."""
        self.count_request = metrics.request_done
        """``metrics.request_done``, called for every request."""
        self.sinks = tuple(sinks)
        """All sinks (see the module docstring)."""
        self.record_sinks = tuple(sink for sink in self.sinks if sink.needs_record)
        """The sinks given ``write(record)``."""
        request_sinks = [sink for sink in self.sinks if not sink.needs_record]
        if len(request_sinks) > 1:  # a loop over them would cost more than the call
            raise ValueError("at most one sink may read the connection itself")
        self.write_request = request_sinks[0].write_request if request_sinks else None
        """``write_request(conn, status, total_s)`` of the sink that reads the connection itself (the access
        log's C writer), or None."""
        self.spans = spans
        """The span exporter (observe/otlp.py), with ``add(conn, status, total_s)``, or None."""
        self.outputs = self.sinks + ((spans,) if spans is not None else ())
        """Everything flushed, reopened and closed."""

    def done(self, conn, status: int) -> None:
        total_s = monotonic() - conn.received_s
        count_request = self.count_request
        count_request(conn, status, total_s)
        spans = self.spans
        if spans is not None:
            spans.add(conn, status, total_s)
        record_sinks = self.record_sinks
        if record_sinks:
            record = make_record(conn, status, total_s)
            for sink in record_sinks:
                sink.write(record)
        write_request = self.write_request
        if write_request is not None:
            write_request(conn, status, total_s)

    def flush(self) -> None:
        for output in self.outputs:
            output.flush()

    def reopen(self) -> None:
        """SIGUSR1: reopen files (after logrotate moved them)."""
        for output in self.outputs:
            output.reopen()

    async def close(self) -> None:
        """Worker exit: write what is buffered."""
        for output in self.outputs:
            await output.close()
