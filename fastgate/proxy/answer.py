"""What a filter gives the core: an answer of its own, or edits of a head (filters/base.py has the contract)."""

import re


class Answer:
    """A reply a filter gives instead of forwarding. Immutable; one may be made at load and reused.

    ``fields`` are pre-encoded ``\\r\\nName: value`` pieces without framing: the session adds the
    request's X-Request-ID and rate-limit headers, and the client's adapter the status line, Date
    and its framing. An ``error`` answer's body is made by the gateway (JSON, one place:
    proxy/errors.py) from its ``error`` text.
    """

    __slots__ = ("status", "fields", "body", "error")

    def __init__(self, status: int, fields: bytes = b"", body: bytes = b"", error: str | None = None) -> None:
        self.status = status
        self.fields = fields
        self.body = body
        self.error = error

    @classmethod
    def of(cls, status: int, body: bytes = b"", content_type: bytes = b"text/plain; charset=utf-8",
           headers: tuple[tuple[bytes, bytes], ...] = ()) -> "Answer":
        """An answer with ``body``, its Content-Type (none when b"") and Content-Length, and more fields."""
        fields = [b"\r\nContent-Type: " + content_type if content_type else b"", b"\r\nContent-Length: %d" % len(body)]
        fields.extend(b"\r\n%s: %s" % (name, value) for name, value in headers)
        return cls(status, b"".join(fields), body)

    @classmethod
    def failure(cls, status: int, reason: str, fields: bytes = b"") -> "Answer":
        """An error answer (``{"error": reason, "status": ..., "request_id": ...}``) with ``fields``."""
        return cls(status, fields, b"", reason)


class HeaderChanges:
    """Edits of one head's header fields, made by ``upstream_request`` and ``response`` hooks.

    Names are case-insensitive; values are bytes without CR, LF or NUL (ValueError otherwise:
    a filter must not split a head).
    """

    __slots__ = ("removed", "added")

    def __init__(self) -> None:
        self.removed: list[bytes] = []
        """Lower-case names of the fields dropped from the head."""
        self.added: list[bytes] = []
        """``\\r\\nName: value`` pieces appended to the head."""

    def set(self, name: bytes, value: bytes) -> None:
        """The field ``name`` has exactly ``value`` (every earlier one is dropped, added ones too)."""
        self.remove(name)
        prefix = b"\r\n" + name.lower() + b":"
        self.added = [piece for piece in self.added if not piece.lower().startswith(prefix)]
        self.add(name, value)

    def add(self, name: bytes, value: bytes) -> None:
        """One more ``name: value`` field, after those already there."""
        if not _is_token(name) or _NOT_IN_A_VALUE.search(value):
            raise ValueError(f"not a header field: {name!r}: {value!r}")
        self.added.append(b"\r\n%s: %s" % (name, value))

    def remove(self, name: bytes) -> None:
        """Drop every ``name`` field the head has (fields added by ``add`` before stay)."""
        if not _is_token(name):
            raise ValueError(f"not a header name: {name!r}")
        self.removed.append(name.lower())

    def __bool__(self) -> bool:
        return bool(self.removed or self.added)

    def spans(self, raw: bytes) -> list[tuple[int, int]]:
        """The ``\\r\\nName: value`` spans of the removed fields in the head ``raw``."""
        if not self.removed:
            return []
        names = b"|".join(re.escape(name) for name in self.removed)
        return [m.span() for m in re.finditer(rb"\r\n(?:" + names + rb")[ \t]*:[^\r]*", raw, re.IGNORECASE)]


_NOT_IN_A_VALUE = re.compile(rb"[\r\n\0]")
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _is_token(name: bytes) -> bool:
    return bool(name) and all(c in _TOKEN for c in name)
