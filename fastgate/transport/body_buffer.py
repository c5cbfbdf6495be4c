"""A request body read before the request goes on: whole (request buffering) or its start (body-keyed limits)."""

from fastgate.wire.chunked import REQUEST_TRAILER_FORBIDDEN, ChunkedFramer
from fastgate.wire.h1 import RequestHead


class BodyBuffer:
    """Collects a request body until it ended or ``limit`` payload bytes are in.

    Then either ``complete``: the whole body is here, ``payload()`` is all of
    it without the chunked coding and ``rest`` the bytes received after it (a
    pipelined request); or not: the body goes on, and ``raw()`` is what was
    received, exactly, to be relayed as the start of a streamed body.
    ``payload(n)`` is at most the first ``n`` bytes (for key extraction). A
    chunked body that breaks the grammar or passes ``max_body_bytes`` raises
    FramingError, as it would while being streamed.
    """

    __slots__ = ("limit", "framer", "remaining", "raw_parts", "payload_parts", "payload_bytes", "complete", "rest")

    def __init__(self, head: RequestHead, limit: int, max_body_bytes: int) -> None:
        self.limit = limit
        self.framer = ChunkedFramer(max_body_bytes, REQUEST_TRAILER_FORBIDDEN) if head.chunked else None
        self.remaining = 0 if head.chunked else head.content_length
        """Content-Length bytes still expected."""
        self.raw_parts: list[bytes] = []
        """The chunked body as received (a Content-Length body is its payload)."""
        self.payload_parts: list[bytes] = []
        self.payload_bytes = 0
        self.complete = False
        self.rest = b""

    def feed(self, data: bytes) -> bool:
        """Take the next received bytes; True once the body ended or ``limit`` payload bytes are in."""
        framer = self.framer
        if framer is not None:
            self.raw_parts.append(data)
            parts = self.payload_parts
            before = len(parts)
            end = framer.feed(data, 0, parts)
            self.payload_bytes += sum(map(len, parts[before:]))
            if end >= 0:
                self.complete = True
                self.rest = data[end:]
        else:
            remaining = self.remaining
            if len(data) < remaining:
                self.payload_parts.append(data)
                self.payload_bytes += len(data)
                self.remaining = remaining - len(data)
            else:
                self.payload_parts.append(data[:remaining] if len(data) > remaining else data)
                self.payload_bytes += remaining
                self.remaining = 0
                self.rest = data[remaining:]
                self.complete = True
        return self.complete or self.payload_bytes >= self.limit

    def payload(self, most: int = -1) -> bytes:
        body = b"".join(self.payload_parts)
        return body if most < 0 else body[:most]

    def raw(self) -> bytes:
        return b"".join(self.raw_parts if self.framer is not None else self.payload_parts)
