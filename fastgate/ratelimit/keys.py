"""Key sources: the parts of a request that identify a client, and how they are read.

A source is written in the config as:

- ``ip``: the client address as the gateway determined it (after trusted proxies); an IPv6
  address counts as its network of ``ipv6_prefix_bits`` (``IpGrouping``), since one client
  usually holds a whole /64 and can rotate addresses inside it;
- ``header:Name``: a request header (first occurrence, surrounding blanks removed);
- ``query:name``: a query parameter (first occurrence, percent- and plus-decoded);
- ``body.path``: a field of the request body. ``application/x-www-form-urlencoded``
  bodies are read as forms (first occurrence of the field named by the whole
  path, e.g. ``body.phone`` or ``body.user[phone]``); any other body is read as
  JSON, where dots walk into objects (``body.user.phone``), numbers index
  arrays and a repeated object key counts with its last value. Strings are
  used as they are, other JSON values in their JSON form.

A source whose value is absent gives None. A body that cannot be read (not
JSON, multipart, or cut off at the read limit: a client could otherwise push
the field past it) gives ``UNPARSEABLE`` for every body source, so all such
requests share one budget per limit rather than escaping it.
"""

from collections.abc import Callable
from functools import lru_cache
from hashlib import blake2b
from ipaddress import IPv6Address, IPv6Network
from typing import NamedTuple

import msgspec

from fastgate.wire.params import query_value, unquote_plus as _unquote_plus

UNPARSEABLE = b"\x00unparseable body"
"""The value of any body source when the body could not be read as JSON or as a form."""

_FORM = b"application/x-www-form-urlencoded"
_JSON_DECODER = msgspec.json.Decoder()
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class Source(NamedTuple):
    kind: str
    """"ip", "header", "query" or "body"."""
    name: bytes
    """Header name (lower case) or query parameter name; empty for ip and body."""
    path: tuple[str, ...]
    """Body field path; empty for the other kinds."""


IP = Source("ip", b"", ())
"""The client's address."""


def parse_source(text: str) -> Source:
    """Parse one key source; ValueError names the problem."""
    if text == "ip":
        return IP
    kind, sep, rest = text.partition(":")
    if sep and kind == "header":
        if not rest or not set(rest) <= _TOKEN_CHARS:
            raise ValueError(f"{text!r}: {rest!r} is not a header name")
        return Source("header", rest.lower().encode("ascii"), ())
    if sep and kind == "query":
        if not rest or any(c in rest for c in "&= #"):
            raise ValueError(f"{text!r}: {rest!r} is not a query parameter name")
        return Source("query", rest.encode(), ())
    if text.startswith("body."):
        path = tuple(text[5:].split("."))
        if not all(path):
            raise ValueError(f"{text!r}: empty field name in the path")
        return Source("body", b"", path)
    raise ValueError(f'{text!r} is not a key source: use "ip", "header:Name", "query:name" or "body.field"')


COLON = ord(":")
"""In IPv6 addresses only. Looked for as an int: ``b":" in ip`` first tries b":" as an integer, and
the TypeError CPython makes and drops for that costs more than the rest of a one-limit key."""


class IpGrouping:
    """The key value of a client address: IPv4 as it is, IPv6 as its network of ``prefix_bits``.

    ``group(b"2001:db8:1:2:aaaa::1")`` with 64 bits is ``b"2001:db8:1:2::/64"``, so every address of
    that /64 shares one budget. An IPv4-mapped IPv6 address (``::ffff:192.0.2.1``) counts as the
    IPv4 address, and 128 bits keeps each address apart. A network always contains "/", so it can
    never equal a plain address (the local store's C check, which sees the plain address, never
    finds such a key and leaves IPv6 clients to the Python path). Results are remembered, at most
    ``NETWORKS_KEPT`` of them.
    """

    NETWORKS_KEPT = 4096

    __slots__ = ("prefix_bits", "_mask", "_seen")

    def __init__(self, prefix_bits: int) -> None:
        self.prefix_bits = prefix_bits
        self._mask = ((1 << prefix_bits) - 1) << (128 - prefix_bits)
        self._seen: dict[bytes, bytes] = {}

    def group(self, ip: bytes) -> bytes:
        if COLON not in ip:
            return ip
        value = self._seen.get(ip)
        if value is None:
            if len(self._seen) >= self.NETWORKS_KEPT:
                self._seen.clear()
            value = self._seen[ip] = self._network(ip)
        return value

    def _network(self, ip: bytes) -> bytes:
        try:
            address = IPv6Address(ip.decode("ascii"))
        except ValueError:  # not an address (a scope id, say): the text as it is
            return ip
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped).encode()
        if self.prefix_bits == 128:
            return ip
        return IPv6Network((int(address) & self._mask, self.prefix_bits)).compressed.encode()


HeaderLookup = Callable[[bytes], bytes | None]
"""Returns the value of the first header with this lower-case name, or None."""


def read_sources(sources: tuple[Source, ...], client_ip: bytes, header_lookup: HeaderLookup, query: bytes,
                 body_prefix: bytes | None, content_type: bytes | None, truncated: bool) -> list[bytes | None]:
    """The value of each source for one request (the body is parsed at most once).

    ``truncated``: ``body_prefix`` is only the start of a longer body.
    """
    values: list[bytes | None] = []
    body: object = _NOT_PARSED
    for source in sources:
        kind = source.kind
        if kind == "ip":
            values.append(client_ip)
        elif kind == "header":
            value = header_lookup(source.name)
            values.append(value.strip() if value is not None else None)
        elif kind == "query":
            values.append(query_value(query, source.name))
        else:
            if body is _NOT_PARSED:
                body = parse_body(body_prefix, content_type, truncated)
            values.append(_body_value(body, source.path))
    return values


def body_field(body_prefix: bytes | None, content_type: bytes | None, path: str,
               truncated: bool = False) -> bytes | None:
    """The value of body field ``path`` ("phone", "user.phone"); None when absent, UNPARSEABLE when
    the body is neither JSON nor a form, or ``truncated`` (only its start was read)."""
    return _body_value(parse_body(body_prefix, content_type, truncated), tuple(path.split(".")))


_NOT_PARSED = object()
_UNREADABLE = object()


class _Form(dict):
    """A form body: field name -> its first value."""


def parse_body(body_prefix: bytes | None, content_type: bytes | None, truncated: bool) -> object:
    """A form as {name: first value}, JSON as decoded, None without a body, _UNREADABLE otherwise."""
    if not body_prefix:
        return None
    if truncated:
        return _UNREADABLE
    media_type = (content_type or b"").partition(b";")[0].strip().lower()
    if media_type == _FORM:
        form = _Form()
        for part in body_prefix.split(b"&"):
            key, _, value = part.partition(b"=")
            form.setdefault(_unquote_plus(key).decode("utf-8", "replace"), _unquote_plus(value))
        return form
    if media_type.startswith(b"multipart/"):
        return _UNREADABLE
    try:
        return _JSON_DECODER.decode(body_prefix)
    except msgspec.DecodeError:
        return _UNREADABLE


def _body_value(body: object, path: tuple[str, ...]) -> bytes | None:
    if body is None:
        return None
    if body is _UNREADABLE:
        return UNPARSEABLE
    if isinstance(body, _Form):
        return body.get(".".join(path))  # the whole path names one field
    value = body
    for step in path:
        if isinstance(value, dict):
            value = value.get(step)
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return None
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    return msgspec.json.encode(value)


def joined(values: list[bytes]) -> bytes:
    """The values as one byte string that tells every combination apart (length-prefixed when several)."""
    if len(values) == 1:
        return values[0]
    return b"".join(len(v).to_bytes(4, "big") + v for v in values)


def digest(values: list[bytes]) -> bytes:
    """32 hex digits identifying the combination of values (BLAKE2b-128 of ``joined``)."""
    return _digest(joined(values))


@lru_cache(maxsize=4096)
def _digest(data: bytes) -> bytes:
    """Cached: the same clients come back, and hashing costs more than the rest of a local check."""
    return blake2b(data, digest_size=16).hexdigest().encode()
