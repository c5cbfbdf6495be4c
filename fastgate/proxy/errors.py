"""Answers the gateway gives itself when it refuses or fails a request: JSON bodies, or gRPC statuses.

An answer is ``(fields, body)``: ``fields`` are ``\\r\\nName: value`` pieces
(Content-Type, Content-Length, any extra headers, X-Request-ID), which the
downstream adapter renders with the status, Date and its protocol's framing.

``gateway_error`` is the one place that decides the form: a gRPC request
(content-type application/grpc..., over HTTP/2) gets a gRPC status in a
trailers-only response (HTTP 200, content-type application/grpc,
grpc-status, grpc-message, no body), its code mapped from the HTTP status as
``GRPC_STATUS_OF_HTTP`` says; any other request a JSON body.
"""

import msgspec

from fastgate.wire import grpc


class ErrorBody(msgspec.Struct):
    """The JSON body of every error fastgate produces."""

    error: str
    status: int
    request_id: str


_encode = msgspec.json.Encoder().encode


GRPC_STATUS_OF_HTTP = {
    400: grpc.INTERNAL,
    401: grpc.UNAUTHENTICATED,
    403: grpc.PERMISSION_DENIED,
    404: grpc.UNIMPLEMENTED,  # no route: no such service or method here
    429: grpc.RESOURCE_EXHAUSTED,  # a rate limit (gRPC's own mapping says UNAVAILABLE; a limit is not an outage)
    502: grpc.UNAVAILABLE,
    503: grpc.UNAVAILABLE,
    504: grpc.DEADLINE_EXCEEDED,  # the gateway's deadline (grpc-timeout, or the route's timeouts) passed
}
"""The gRPC status of a gateway-made answer, by the HTTP status it stands for; any other is UNKNOWN
(gRPC's doc/http-grpc-status-mapping.md, with the two exceptions noted)."""


def gateway_error(head, status: int, message: str, request_id: bytes,
                  extra_headers: bytes = b"") -> tuple[bytes, bytes, int]:
    """An error answer for the request with ``head`` (None before one was parsed): its fields, body
    and the HTTP status to send (200 for a gRPC status answer, else ``status``)."""
    if head is not None and head.grpc:
        code = GRPC_STATUS_OF_HTTP.get(status, grpc.UNKNOWN)
        return b"".join((
            b"\r\nContent-Type: application/grpc\r\ngrpc-status: %d\r\ngrpc-message: " % code,
            grpc.encode_message(message), extra_headers,
            b"\r\nX-Request-ID: " + request_id if request_id else b"",
        )), b"", 200
    return *error_answer(status, message, request_id, extra_headers), status


def error_answer(status: int, message: str, request_id: bytes, extra_headers: bytes = b"") -> tuple[bytes, bytes]:
    """The fields and JSON body of an error answer; ``extra_headers`` are ``\\r\\nName: value`` pieces."""
    body = _encode(ErrorBody(message, status, request_id.decode("latin-1")))
    return b"".join((
        b"\r\nContent-Type: application/json\r\nContent-Length: %d" % len(body),
        extra_headers,
        b"\r\nX-Request-ID: " + request_id if request_id else b"",
    )), body
