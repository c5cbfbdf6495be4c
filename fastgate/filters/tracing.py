"""The trace context (``[tracing]``): each request's W3C traceparent, sent upstream.

A gateway-wide ``early`` filter, there only when tracing is on: it continues
the client's trace (a new span id under its trace id and flags) or starts
one, sampled at ``sample_ratio`` (observe/trace.py); the span exporter and
the access log read it from the request's record.
"""

from fastgate.filters.base import Filter
from fastgate.observe.trace import Tracer


class TracingFilter(Filter):
    __slots__ = ("tracer",)

    def __init__(self, sample_ratio: float) -> None:
        self.tracer = Tracer(sample_ratio)

    def early(self, session) -> None:
        session.traceparent = self.tracer.start(session.head.traceparent)
