"""Status lines, encoded once."""

from http import HTTPStatus

_LINES = {s.value: b"HTTP/1.1 %d %s" % (s.value, s.phrase.encode()) for s in HTTPStatus}


def status_line(status: int) -> bytes:
    """``HTTP/1.1 404 Not Found`` (no CRLF), for any status code."""
    return _LINES.get(status) or b"HTTP/1.1 %d Unknown" % status

