"""A route that answers every request itself with a fixed status, content type and body (``respond``)."""

from fastgate.config.schema import Respond
from fastgate.filters.base import Answer, Filter


class RespondFilter(Filter):
    """Replies with the same answer, made once at load; nothing goes upstream."""

    __slots__ = ("answer",)

    def __init__(self, respond: Respond) -> None:
        self.answer = Answer.of(respond.status, respond.body.encode(), respond.content_type.encode())
        """The reply (the route's response_headers are added to it, as to any answer of a filter)."""

    def request(self, session) -> Answer:
        return self.answer
