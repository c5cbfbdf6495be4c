"""A route's ``request_headers`` and ``response_headers``: edits known at load, compiled into its heads."""

from fastgate.config.schema import HeaderEdits
from fastgate.filters.base import Filter


class HeaderEditsFilter(Filter):
    """Set, add and remove header fields of every request sent upstream and every response sent
    back. It has no hooks: its edits are compiled into the route's heads once (routing/rewrite.py),
    so they cost nothing per request."""

    __slots__ = ("request_edits", "response_edits")

    def __init__(self, request_edits: HeaderEdits, response_edits: HeaderEdits) -> None:
        self.request_edits = request_edits
        self.response_edits = response_edits
