"""A ``request`` hook's result that comes later, handed to the session by a plain call.

A hook that must wait may return an asyncio awaitable (filters/base.py): the
session then goes on from the Future's done callback, which asyncio always
runs on a later turn of the loop (one more Handle and loop iteration per
request, besides the Future). A hook whose answer arrives through a callback
anyway (the Redis rate limiter's ``on_decision``) can return a ``Deferred``
instead and ``resolve`` it from that callback: the session goes on inside
that call. Under load, where one Redis reply decides a whole batch of
requests, this is what most of a request's waiting costs.

A Deferred is resolved at most once; the session takes its result with
``then`` (at once if it is resolved already), and ``cancel`` (the client
left) drops it: a later ``resolve`` does nothing. A filter may look at
``wanted`` to skip work nobody will read.
"""

from collections.abc import Callable
from typing import Any

_UNSET = object()
_CANCELLED = object()


class Deferred:
    """A ``request`` hook's result (None or an Answer), delivered later by ``resolve``."""

    __slots__ = ("_then", "_result")

    def __init__(self) -> None:
        self._then: Callable[[Any], None] | None = None
        self._result: Any = _UNSET

    @property
    def wanted(self) -> bool:
        """Neither resolved nor cancelled yet."""
        return self._result is _UNSET

    def resolve(self, result: Any) -> None:
        """Deliver the hook's result: the session goes on (or answers) before this returns. Nothing
        happens when it was resolved or cancelled before."""
        if self._result is not _UNSET:
            return
        self._result = result
        then = self._then
        if then is not None:
            self._then = None
            then(result)

    def then(self, callback: Callable[[Any], None]) -> None:
        """Call ``callback(result)`` once resolved: now, if it is already (the session's side)."""
        result = self._result
        if result is _UNSET:
            self._then = callback
        elif result is not _CANCELLED:
            callback(result)

    def cancel(self) -> None:
        """Nobody waits any more (the client left): a later ``resolve`` does nothing."""
        if self._result is _UNSET:
            self._result = _CANCELLED
            self._then = None
