"""Query parameters and cookies read out of a request, as bytes; sans-IO and protocol-independent.

Every protocol carries them alike (HTTP/2 and HTTP/3 may split the Cookie
header into several fields), so they are read here, given the query string or
the Cookie field values: by the route conditions (routing/match.py, through
the request's ``cookie``) and the rate-limit keys (ratelimit/keys.py).
"""

import re
from collections.abc import Iterable
from urllib.parse import unquote_to_bytes

_ENCODED = re.compile(rb"[%+]")
"""A name or value that unquote_plus would change."""


def unquote_plus(raw: bytes) -> bytes:
    """``raw`` with %XX escapes decoded and "+" read as a space (HTML forms, URLSearchParams);
    a malformed escape is kept as it is."""
    return unquote_to_bytes(raw.replace(b"+", b" ")) if _ENCODED.search(raw) else raw


def query_value(query: bytes, name: bytes) -> bytes | None:
    """The value of the first parameter called ``name`` in a query string without its "?",
    name and value both decoded (``unquote_plus``); b"" for ``name`` or ``name=``, None when
    absent. Parameters are separated by "&" only."""
    for part in query.split(b"&"):
        key, _, value = part.partition(b"=")
        if key == name or _ENCODED.search(key) and unquote_plus(key) == name:
            return unquote_plus(value)
    return None


def cookie_value(fields: Iterable[bytes], name: bytes) -> bytes | None:
    """The value of the first cookie called ``name`` (case-sensitive) in the values of a
    request's Cookie fields, in order; None when absent.

    Each field holds RFC 6265 ``name=value`` pairs separated by ";" (clients send
    "; "; blanks around a pair are ignored, none may stand before the "=").
    A value in double quotes is read without them; nothing is percent-decoded.
    """
    needle = name + b"="
    for field in fields:
        i = field.find(needle)
        while i >= 0:
            j = i
            while j and field[j - 1] in b" \t":
                j -= 1
            if j == 0 or field[j - 1] == 0x3B:  # the name starts a pair (after ";")
                start = i + len(needle)
                end = field.find(b";", start)
                value = (field[start:end] if end >= 0 else field[start:]).strip(b" \t")
                if len(value) >= 2 and value[0] == 0x22 and value[-1] == 0x22:
                    value = value[1:-1]
                return value
            i = field.find(needle, i + 1)
    return None
