"""gRPC over HTTP/2 as the proxy core needs it, sans-IO: which requests are gRPC, their deadline,
and the status fields of an answer (doc/PROTOCOL-HTTP2.md of grpc/grpc)."""

import re

from fastgate.wire.h1 import header_value

OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND = 0, 1, 2, 3, 4, 5
PERMISSION_DENIED, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, UNAUTHENTICATED = 7, 8, 12, 13, 14, 16

_CONTENT_TYPE = re.compile(rb"application/grpc(?:[+;]|\Z)", re.IGNORECASE)
"""application/grpc, application/grpc+proto, application/grpc;...: not application/grpc-web."""
_TIMEOUT = re.compile(rb"([0-9]{1,8})([HMSmun])\Z")
_UNIT_S = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
_MESSAGE_SAFE = frozenset(range(0x20, 0x7F)) - {ord("%")}


def is_grpc(raw_head: bytes) -> bool:
    """Whether a request head (``\\r\\nName: value`` lines) has a gRPC content-type."""
    content_type = header_value(raw_head, b"content-type")
    return content_type is not None and _CONTENT_TYPE.match(content_type) is not None


def timeout_s(raw_head: bytes) -> float:
    """The request's grpc-timeout in seconds; 0.0 when absent or malformed (no deadline)."""
    value = header_value(raw_head, b"grpc-timeout")
    if value is None:
        return 0.0
    m = _TIMEOUT.match(value)
    return int(m.group(1)) * _UNIT_S[m.group(2)] if m else 0.0


def status_of(raw_head: bytes) -> int:
    """The grpc-status a response head carries (a trailers-only response), or -1."""
    value = header_value(raw_head, b"grpc-status")
    return int(value) if value is not None and value.isdigit() else -1


def encode_message(message: str) -> bytes:
    """A grpc-message value: UTF-8, percent-encoded outside printable ASCII (and "%" itself)."""
    return b"".join(bytes((c,)) if c in _MESSAGE_SAFE else b"%%%02X" % c for c in message.encode())
