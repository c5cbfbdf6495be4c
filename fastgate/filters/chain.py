"""A route's filters, sorted once at load into one tuple per phase (filters/base.py)."""

from fastgate.config.schema import HeaderEdits
from fastgate.filters.base import Filter
from fastgate.filters.tracing import TracingFilter


def _overrides(filter_: Filter, hook: str) -> bool:
    return getattr(type(filter_), hook) is not getattr(Filter, hook)


class FilterChain:
    """Which filters run in each phase, in the route's order. Immutable after load.

    An empty tuple means the phase is skipped: ``if chain.request:`` is all a
    request pays for a phase nobody filters.
    """

    __slots__ = ("filters", "early", "request", "upstream_request", "response", "log", "body_bytes")

    def __init__(self, filters: tuple[Filter, ...]) -> None:
        self.filters = filters
        self.early = tuple(f for f in filters if _overrides(f, "early"))
        """Only a gateway-wide chain runs its ``early`` hooks (a route's are not called)."""
        self.request = tuple(f for f in filters if _overrides(f, "request"))
        self.upstream_request = tuple(f for f in filters if _overrides(f, "upstream_request"))
        self.response = tuple(f for f in filters if _overrides(f, "response"))
        self.log = tuple(f for f in filters if _overrides(f, "log"))
        self.body_bytes = max((f.body_bytes for f in self.request), default=0)
        """How much of a request body the ``request`` hooks read first (the largest they ask)."""

    def request_edits(self) -> HeaderEdits:
        """The filters' load-time request header edits, merged in order."""
        return merge_edits(f.request_edits for f in self.filters)

    def response_edits(self) -> HeaderEdits:
        return merge_edits(f.response_edits for f in self.filters)


def merge_edits(edits) -> HeaderEdits:
    """Several filters' HeaderEdits as one: later sets win, adds and removes accumulate."""
    set_: dict[str, str] = {}
    add: dict[str, str] = {}
    remove: list[str] = []
    for one in edits:
        if one is not None:
            set_.update(one.set)
            add.update(one.add)
            remove.extend(one.remove)
    return HeaderEdits(set=set_, add=add, remove=remove)


def gateway_filters(tracing) -> FilterChain:
    """The gateway-wide filters of one worker (made in the worker): the trace context when
    ``[tracing]`` is on. (The request id is the gateway's own, set with the route: made for every
    request before routing, it would be made and dropped on the routes that want none.)"""
    return FilterChain((TracingFilter(tracing.sample_ratio),) if tracing.enabled else ())
