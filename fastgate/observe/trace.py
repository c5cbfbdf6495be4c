"""W3C Trace Context (traceparent) for requests that pass through the gateway.

Theory of operation
-------------------
Each request gets a trace: a valid incoming ``traceparent`` is continued
(same trace id and flags, the client's span becomes the parent), anything
else starts a new trace. The gateway is one span of that trace: it makes
its own span id and sends ``traceparent: 00-<trace-id>-<its span id>-<flags>``
upstream in place of the client's header (``tracestate`` travels unchanged).

Per request this is one regex match (only when the client sent a
traceparent), one call to a per-worker PRNG for the new ids, and one bytes
format. The result is kept as the header bytes ``conn.traceparent``; the
ids are slices of it (``trace_id_of``, ``span_id_of``, ``is_sampled``).

Validation follows the W3C Trace Context spec: lower-case hex only, neither
id all zeros, version ``ff`` refused; version ``00`` must be exactly 55
characters; a later version must be at least 55, with a ``-`` after the
flags if longer, and only its sampled flag is kept.
"""

import os
import random
import re

_SHAPE = re.compile(rb"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(?:-[^\r\n]*)?")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16
_HEADER_PREFIX = b"\r\ntraceparent: 00-"
TRACE_ID = slice(len(_HEADER_PREFIX), len(_HEADER_PREFIX) + 32)
SPAN_ID = slice(TRACE_ID.stop + 1, TRACE_ID.stop + 17)
"""Where the ids are in a header made by ``Tracer.start``."""
_FLAGS_LAST_DIGIT = SPAN_ID.stop + 2
_SAMPLED_LAST_DIGITS = frozenset(b"13579bdf")
_LOW_64 = (1 << 64) - 1


def parse_traceparent(value: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(trace id, parent span id, flags) of a valid traceparent value, else None.

    The flags come back as sent for version 00; for a later version only its
    sampled bit survives (b"01" or b"00"), as the spec asks of a version 00 sender.
    """
    if _SHAPE.fullmatch(value) is None or value[:2] == b"ff":
        return None
    trace_id = value[3:35]
    span_id = value[36:52]
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    if value[:2] == b"00":
        return (trace_id, span_id, value[53:55]) if len(value) == 55 else None
    return trace_id, span_id, b"01" if int(value[53:55], 16) & 1 else b"00"


class Tracer:
    """Makes each request's traceparent; one per worker (its PRNG is seeded after fork)."""

    __slots__ = ("_bits", "_threshold")

    def __init__(self, sample_ratio: float) -> None:
        self._bits = random.Random(os.urandom(32)).getrandbits
        self._threshold = b"%016x" % int(sample_ratio * _LOW_64) if sample_ratio < 1.0 else None
        """A new trace is sampled when the hex digits of the low 64 bits of its trace id sort
        below this (lower-case hex of equal length sorts like the numbers); None: always."""

    def start(self, incoming: bytes) -> bytes:
        """The ``\\r\\ntraceparent: ...`` header for the upstream, given the client's value (or b"")."""
        if incoming:
            parsed = parse_traceparent(incoming)
            if parsed is not None:
                span = self._bits(64).to_bytes(8, "big").hex().encode()
                return b"".join((_HEADER_PREFIX, parsed[0], b"-", span, b"-", parsed[2]))
        ids = self._bits(192).to_bytes(24, "big").hex().encode()  # trace id, then span id
        threshold = self._threshold
        sampled = b"-01" if threshold is None or ids[16:32] < threshold else b"-00"
        return b"".join((_HEADER_PREFIX, ids[:32], b"-", ids[32:], sampled))


def trace_id_of(header: bytes) -> bytes:
    """The trace id in a header made by ``Tracer.start`` (b"" for b"")."""
    return header[TRACE_ID]


def span_id_of(header: bytes) -> bytes:
    """The gateway's span id in a header made by ``Tracer.start``."""
    return header[SPAN_ID]


def is_sampled(header: bytes) -> bool:
    return len(header) > _FLAGS_LAST_DIGIT and header[_FLAGS_LAST_DIGIT] in _SAMPLED_LAST_DIGITS
