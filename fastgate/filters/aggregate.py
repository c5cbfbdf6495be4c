"""An aggregate route (``[[routes.aggregate]]``): its answer is the merge of several upstream GETs.

The work is proxy/aggregate.py's; this filter starts it and gives the request
its Future. It also asks every part for JSON without a content coding and
drops the client's range and conditional fields (its load-time request edits).
"""

from fastgate.config.schema import HeaderEdits
from fastgate.filters.base import Filter

_PART_REMOVE = ("Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since")


class AggregateFilter(Filter):
    __slots__ = ("aggregate",)

    request_edits = HeaderEdits(set={"Accept": "application/json", "Accept-Encoding": "identity"},
                                remove=list(_PART_REMOVE))

    def __init__(self, aggregate) -> None:
        self.aggregate = aggregate
        """The route's parts (proxy/aggregate.py Aggregate)."""

    def request(self, session):
        return self.aggregate.start(session.head, session.request_id, session.client_ip, session.proto_header,
                                    session.ctx.clock).future
