"""Header edits compiled once at load time into a removal regex and pre-encoded bytes."""

import re

from fastgate.config.schema import HeaderEdits


class CompiledEdits:
    """A route's header edits for one direction (request or response).

    ``remove`` finds, in a raw head, the ``\\r\\nName: value`` spans of the
    headers to drop (removed ones, and set ones, whose old value goes);
    ``extra`` is the ``\\r\\nName: value`` bytes to append.
    """

    __slots__ = ("remove", "extra")

    def __init__(self, edits: HeaderEdits) -> None:
        names = [n.lower() for n in (*edits.remove, *edits.set)]
        self.remove = (
            re.compile(
                rb"\r\n(?:" + b"|".join(re.escape(n.encode()) for n in names) + rb")[ \t]*:[^\r]*",
                re.IGNORECASE,
            )
            if names
            else None
        )
        self.extra = b"".join(
            b"\r\n%s: %s" % (name.encode(), value.encode())
            for name, value in (*edits.set.items(), *edits.add.items())
        )

    def spans(self, raw: bytes) -> list[tuple[int, int]]:
        return [m.span() for m in self.remove.finditer(raw)] if self.remove else []
