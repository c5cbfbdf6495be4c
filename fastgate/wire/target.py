"""The request target: strict syntax, and the one normalised path that is routed and forwarded.

Theory of operation
-------------------
A gateway that routes one spelling of a path while its upstream serves
another is a route bypass: a deny route on ``/admin`` must also stop
``//admin``, ``/%61dmin`` and ``/x/../admin``. So the path is checked
against RFC 3986 and brought to one form *before* routing, and that form is
what the upstream receives; the query is checked and relayed as it came.

Syntax (RFC 9112 3.2, RFC 3986 3.3/3.4): the path holds only pchar and
"/" (unreserved, sub-delims, ":", "@", and "%" with two hex digits); the
query any visible ASCII but "#". A fragment, a backslash, a space, a
control or a non-ASCII byte is refused (400).

Normalisation, in this order, only when the path has a "%", "//" or "/.":

1. percent-escapes of unreserved characters are decoded (``%7E`` -> ``~``,
   ``%2e`` -> ``.``), every other escape is kept with upper-case hex;
   an encoded control (``%00``-``%1F``, ``%7F``; a regex's ``$`` matches
   before a final newline) is refused, and so are ``%2F`` and ``%5C`` (an encoded slash or
   backslash, which upstreams decode differently) unless the listener keeps
   them (``[http] encoded_slashes = "keep"``);
2. runs of "/" become one (``[http] merge_slashes``, on by default);
3. dot segments are removed (RFC 3986 5.2.4); a ".." above the root is
   refused.

The common path (none of "%", "//", "/.") costs two ``translate`` calls.
"""

import re

from fastgate.wire.errors import HeadError

_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_PATH_CHARS = _UNRESERVED + b"!$&'()*+,;=:@/%"
_QUERY_DISALLOWED = bytes(c for c in range(256) if c <= 0x20 or c >= 0x7F or c == 0x23)  # CTL, SP, "#", non-ASCII
_QUERY_CHARS = bytes(c for c in range(256) if c not in _QUERY_DISALLOWED)
_MAY_CHANGE = re.compile(rb"%|//|/\.")
"""What normalize_path may rewrite (one search: ``b"%" in path`` costs a TypeError raised and cleared
inside CPython's bytes containment before it searches)."""
_ESCAPE = re.compile(rb"%(..)?")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_UNRESERVED_SET = frozenset(_UNRESERVED)
_SLASHES = re.compile(rb"//+")


class PathRules:
    """How paths are normalised: from ``[http]``, built once at config load."""

    __slots__ = ("merge_slashes", "keep_encoded_slashes")

    def __init__(self, merge_slashes: bool = True, keep_encoded_slashes: bool = False) -> None:
        self.merge_slashes = merge_slashes
        self.keep_encoded_slashes = keep_encoded_slashes


DEFAULT_PATH_RULES = PathRules()


def split_target(target: bytes, rules: PathRules) -> tuple[bytes, bytes, bool]:
    """``(path, query, changed)`` of an origin-form target; raise HeadError(400).

    ``query`` keeps its leading "?" (b"" when absent); ``changed`` says the
    path was normalised, so the target sent upstream must be rebuilt.
    """
    q = target.find(b"?")
    if q < 0:
        path, query = target, b""
    else:
        path, query = target[:q], target[q:]
        if query.translate(None, _QUERY_CHARS):
            raise HeadError(400, "bad character in the query")
    if path[:1] != b"/" or path.translate(None, _PATH_CHARS):
        raise HeadError(400, "bad character in the path")
    if _MAY_CHANGE.search(path):
        normal = normalize_path(path, rules)
        return normal, query, normal != path
    return path, query, False


def normalize_path(path: bytes, rules: PathRules) -> bytes:
    """The normal form of a syntactically valid absolute path (see the module's docstring)."""
    if b"%" in path:
        path = _ESCAPE.sub(lambda m: _escape(m, rules), path)
    if rules.merge_slashes and b"//" in path:
        path = _SLASHES.sub(b"/", path)
    if b"/." in path:
        path = _remove_dot_segments(path)
    return path


def _escape(m: re.Match, rules: PathRules) -> bytes:
    digits = m.group(1)
    if digits is None or not _HEX.issuperset(digits):
        raise HeadError(400, "bad percent-encoding in the path")
    value = int(digits, 16)
    if value in _UNRESERVED_SET:
        return bytes((value,))
    if value < 0x20 or value == 0x7F:
        raise HeadError(400, "encoded control character in the path")
    if (value == 0x2F or value == 0x5C) and not rules.keep_encoded_slashes:
        raise HeadError(400, "encoded slash in the path")
    return b"%" + digits.upper()


def _remove_dot_segments(path: bytes) -> bytes:
    segments = path.split(b"/")
    out: list[bytes] = []
    for segment in segments[1:]:
        if segment == b".":
            continue
        if segment == b"..":
            if not out:
                raise HeadError(400, "the path climbs above the root")
            out.pop()
            continue
        out.append(segment)
    if segments[-1] in (b".", b".."):
        out.append(b"")  # "/a/b/.." is the directory "/a/", not "/a"
    return b"/" + b"/".join(out)
