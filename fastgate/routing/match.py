"""A route's conditions on request headers, query parameters and cookies.

A route's ``match_headers``, ``match_query`` and ``match_cookies`` compile
once, at config load, into one ``Conditions``: its ``Condition`` objects,
checked in the order written, stopping at the first that fails. The router
asks only when a route's host, path and method already match, so a value is
looked up only for a route that could win, and only the names its conditions
name; a route table without conditions never asks (routing/router.py).

The request is read through ``MatchRequest``, not through HTTP/1.1 bytes, so
every protocol's adapter can offer it (for HTTP/1.1 it is wire/h1.py's
RequestHead).
"""

import re
from typing import Protocol

from fastgate.config.schema import Matcher, Route as RouteConfig
from fastgate.wire.params import query_value

HEADER, QUERY, COOKIE = 0, 1, 2
"""Where a condition looks."""
EXACT, PREFIX, REGEX, PRESENT, ABSENT = 0, 1, 2, 3, 4
"""What a condition asks of the value."""


class MatchRequest(Protocol):
    """What the router reads of a request besides its host, path and method."""

    query: bytes
    """The query string as received, with its leading "?"; b"" when there is none."""

    def header(self, name: bytes) -> bytes | None:
        """The value of header ``name`` (lower case) without surrounding blanks, None when absent;
        several fields of one name give their values joined with ", "."""

    def cookie(self, name: bytes) -> bytes | None:
        """The value of the first cookie ``name`` in the Cookie field(s), None when absent."""


class Condition:
    """One compiled matcher. Immutable after load."""

    __slots__ = ("source", "name", "test", "value", "regex")

    def __init__(self, source: int, config: Matcher) -> None:
        self.source = source
        self.name = config.name.lower().encode() if source == HEADER else config.name.encode()
        """Header names in lower case; query parameter and cookie names as written."""
        self.value = b""
        self.regex = None
        if config.exact is not None:
            self.test, self.value = EXACT, config.exact.encode()
        elif config.prefix is not None:
            self.test, self.value = PREFIX, config.prefix.encode()
        elif config.regex is not None:
            self.test, self.regex = REGEX, re.compile(config.regex.encode())
        elif config.present is not None:
            self.test = PRESENT if config.present else ABSENT
        else:
            raise ValueError("a matcher needs one of exact, prefix, regex and present")

    def holds(self, request: MatchRequest) -> bool:
        source = self.source
        if source == HEADER:
            value = request.header(self.name)
        elif source == QUERY:
            value = query_value(request.query[1:], self.name)
        else:
            value = request.cookie(self.name)
        test = self.test
        if value is None:
            return test == ABSENT
        if test == EXACT:
            return value == self.value
        if test == PREFIX:
            return value.startswith(self.value)
        if test == REGEX:
            return self.regex.match(value) is not None
        return test == PRESENT


class Conditions:
    """All of a route's conditions; they hold when every one does. Immutable after load."""

    __slots__ = ("items",)

    def __init__(self, items: tuple[Condition, ...]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def hold(self, request: MatchRequest | None) -> bool:
        """True when ``request`` meets every condition; without a request (None), never."""
        if request is None:
            return False
        for condition in self.items:
            if not condition.holds(request):
                return False
        return True


def compile_conditions(config: RouteConfig) -> Conditions | None:
    """A route's conditions, or None when it has none (the common case, which costs nothing)."""
    items = tuple(
        [Condition(HEADER, m) for m in config.match_headers]
        + [Condition(QUERY, m) for m in config.match_query]
        + [Condition(COOKIE, m) for m in config.match_cookies]
    )
    return Conditions(items) if items else None
