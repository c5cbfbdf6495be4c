"""The first bytes of a request body, collected before a body-keyed rate limit is checked."""

from fastgate.wire.chunked import ChunkedFramer
from fastgate.wire.h1 import RequestHead


class BodyPrefix:
    """Collects a body until ``limit`` payload bytes are in or the body ended.

    The bytes are kept exactly as received (``raw()``, forwarded unchanged once
    the request is admitted) and, separately, as payload without the chunked
    coding (``payload()``, at most ``limit`` bytes, for the key extraction).
    A chunked body that breaks the grammar or exceeds ``max_body_bytes``
    raises FramingError, as it would while being forwarded.
    """

    __slots__ = ("limit", "framer", "remaining", "raw_parts", "payload_parts", "payload_bytes")

    def __init__(self, head: RequestHead, limit: int, max_body_bytes: int) -> None:
        self.limit = limit
        self.framer = ChunkedFramer(max_body_bytes) if head.chunked else None
        self.remaining = 0 if head.chunked else head.content_length
        self.raw_parts: list[bytes] = []
        self.payload_parts: list[bytes] = []
        self.payload_bytes = 0

    def feed(self, data: bytes) -> bool:
        """Take the next received bytes; True once enough is collected."""
        self.raw_parts.append(data)
        if self.framer is not None:
            before = len(self.payload_parts)
            ended = self.framer.feed(data, 0, self.payload_parts) >= 0
            self.payload_bytes += sum(len(p) for p in self.payload_parts[before:])
        else:
            take = min(len(data), self.remaining)
            self.payload_parts.append(data[:take])
            self.payload_bytes += take
            self.remaining -= take
            ended = self.remaining == 0
        return ended or self.payload_bytes >= self.limit

    def payload(self) -> bytes:
        return b"".join(self.payload_parts)[: self.limit]

    def raw(self) -> bytes:
        return b"".join(self.raw_parts)
