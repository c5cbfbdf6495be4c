"""The log phase: what runs once for every finished request.

``ClientConnection`` calls ``RequestObserver.done(conn, status)`` exactly
once per request, whatever its end: a proxied response completed, a local
answer, a refusal, an abort, or the client going away (status 499). Sinks
(access log, event publishers) receive a ``RequestRecord``; the span
exporter reads the connection itself, so that no record is made for it.
Neither may block or raise: they buffer, and write on ``flush()``, which the
worker clock calls on every tick.
"""

import time

from fastgate.observe.record import make_record


class RequestObserver:
    __slots__ = ("metrics", "sinks", "spans", "outputs")

    def __init__(self, metrics, sinks: list, spans=None) -> None:
        self.metrics = metrics
        """observe/metrics.py WorkerMetrics, or NO_METRICS."""
        self.sinks = tuple(sinks)
        """Objects with ``write(record)``, ``flush()``, ``reopen()``, ``async close()`` and a ``dropped`` count."""
        self.spans = spans
        """The span exporter (observe/otlp.py), with ``add(conn, status, total_s)``, or None."""
        self.outputs = self.sinks + ((spans,) if spans is not None else ())
        """Everything flushed, reopened and closed."""

    def done(self, conn, status: int) -> None:
        total_s = time.monotonic() - conn.received_s
        self.metrics.request_done(conn, status, total_s)
        sinks = self.sinks
        spans = self.spans
        if spans is not None:
            spans.add(conn, status, total_s)
        if sinks:
            record = make_record(conn, status, total_s)
            for sink in sinks:
                sink.write(record)

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
