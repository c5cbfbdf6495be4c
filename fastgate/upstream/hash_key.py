"""The key a consistent-hash upstream hashes: the client IP, a header, or a cookie."""

import re
from typing import Callable

from fastgate.wire.h1 import RequestHead, header_value

KeyOf = Callable[[RequestHead, bytes], bytes | None]


def compile_hash_key(spec: str) -> KeyOf:
    """``"ip"``, ``"header:NAME"`` or ``"cookie:NAME"`` -> a function of (head, client_ip).

    Raises ValueError for any other spec. The function returns None when the
    request lacks the header or cookie.
    """
    if spec == "ip":
        return lambda head, client_ip: client_ip
    kind, _, name = spec.partition(":")
    if not name or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
        raise ValueError(f"{spec!r} is not \"ip\", \"header:NAME\" or \"cookie:NAME\"")
    if kind == "header":
        lower = name.lower().encode()
        return lambda head, client_ip: header_value(head.raw, lower)
    if kind == "cookie":
        cookie_header = re.compile(rb"\r\ncookie[ \t]*:[ \t]*([^\r]*)", re.IGNORECASE)
        cookie = re.compile(rb"(?:^|;)[ \t]*" + re.escape(name.encode()) + rb"=([^;]*)")

        def from_cookie(head: RequestHead, client_ip: bytes) -> bytes | None:
            for line in cookie_header.finditer(head.raw):
                m = cookie.search(line.group(1))
                if m:
                    return m.group(1).strip()
            return None

        return from_cookie
    raise ValueError(f"{spec!r} is not \"ip\", \"header:NAME\" or \"cookie:NAME\"")
