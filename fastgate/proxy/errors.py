"""Answers the gateway gives itself when it refuses or fails a request: JSON bodies.

An answer is ``(fields, body)``: ``fields`` are ``\\r\\nName: value`` pieces
(Content-Type, Content-Length, any extra headers, X-Request-ID), which the
downstream adapter renders with the status, Date and its protocol's framing.
"""

import msgspec


class ErrorBody(msgspec.Struct):
    """The JSON body of every error fastgate produces."""

    error: str
    status: int
    request_id: str


_encode = msgspec.json.Encoder().encode


def error_answer(status: int, message: str, request_id: bytes, extra_headers: bytes = b"") -> tuple[bytes, bytes]:
    """The fields and JSON body of an error answer; ``extra_headers`` are ``\\r\\nName: value`` pieces."""
    body = _encode(ErrorBody(message, status, request_id.decode("latin-1")))
    return b"".join((
        b"\r\nContent-Type: application/json\r\nContent-Length: %d" % len(body),
        extra_headers,
        b"\r\nX-Request-ID: " + request_id if request_id else b"",
    )), body
