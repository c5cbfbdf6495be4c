"""Answers the gateway gives itself when it refuses or fails a request: JSON bodies."""

import msgspec

from fastgate.wire.status import status_line


class ErrorBody(msgspec.Struct):
    """The JSON body of every error fastgate produces."""

    error: str
    status: int
    request_id: str


_encode = msgspec.json.Encoder().encode


def error_response(
    status: int, message: str, request_id: bytes, date_header: bytes, close: bool, extra_headers: bytes = b"",
    head_only: bool = False,
) -> bytes:
    """A complete HTTP/1.1 error response with a JSON body; ``extra_headers`` are ``\r\nName: value`` pieces.

    ``head_only`` (the answer to a HEAD request) leaves the body out but keeps its Content-Length.
    """
    body = _encode(ErrorBody(message, status, request_id.decode("latin-1")))
    return b"".join((
        status_line(status),
        b"\r\nContent-Type: application/json\r\nContent-Length: %d" % len(body),
        date_header,
        extra_headers,
        b"\r\nX-Request-ID: " + request_id if request_id else b"",
        b"\r\nConnection: close\r\n\r\n" if close else b"\r\n\r\n",
        b"" if head_only else body,
    ))
