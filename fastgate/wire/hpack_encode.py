"""An HPACK encoder without a dynamic table: each field's encoding is a pure function of the field.

The hpack library's encoder indexes every field in a dynamic table and
Huffman-codes every literal, in Python, field by field: for a small
response it costs more than the rest of the response's path. A gateway's
responses repeat the same fields (content-type, server, content-length,
the date of the current second), so this encoder gives up the dynamic
table, which makes a field's bytes independent of what was sent before,
and keeps the bytes of short fields in a bounded cache. A cached field
costs one dict lookup.

- A field found whole in the static table (RFC 7541 Appendix A) is its
  index; a name found there is a literal with that name index; any other
  is a literal with a literal name. Literals are never Huffman-coded (a
  few more bytes on the wire) and never indexed (RFC 7541 6.2.2), and
  fields that carry credentials are "never indexed" (6.2.3), so that no
  intermediary puts them in a table either.
- The first header block opens with a dynamic table size update to 0
  (RFC 7541 4.2, 6.3): the peer's decoder then holds no entries of ours,
  and any SETTINGS_HEADER_TABLE_SIZE the peer announces later is already
  respected (h2 sets ``header_table_size`` on such a change; nothing more
  is needed).

The caller gives names in lower case and values without CR, LF or NUL:
the encoder does not check (transport/h2_stream.py's fields are made so).
"""

from hpack.table import HeaderTable

_CACHE_FIELDS = 4096
"""Fields whose encoding is kept; at that many the cache starts over (unique values, such as request
ids, would otherwise fill it)."""
_CACHE_VALUE_BYTES = 64
"""Only fields with values up to this size are kept (at most ~0.5 MB of cache per worker): a long value
costs little more to encode than to look up."""
_NEVER_INDEXED = frozenset((b"authorization", b"proxy-authorization", b"cookie", b"set-cookie"))
_TABLE_SIZE_ZERO = b"\x20"
"""A dynamic table size update to 0 (001 prefix, value 0 in five bits)."""

_STATIC_FIELDS: dict[tuple[bytes, bytes], int] = {}
_STATIC_NAMES: dict[bytes, int] = {}
for _index, _field in enumerate(HeaderTable.STATIC_TABLE, 1):
    _STATIC_FIELDS.setdefault(_field, _index)
    _STATIC_NAMES.setdefault(_field[0], _index)


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 5.1: ``value`` with an N-bit prefix, the first byte's other bits being ``first``."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append(value & 127 | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(data: bytes) -> bytes:
    """A string literal, not Huffman-coded (RFC 7541 5.2)."""
    return _integer(len(data), 7, 0) + data


def encode_field(name: bytes, value: bytes) -> bytes:
    """One field's representation, without reference to any dynamic table."""
    index = _STATIC_FIELDS.get((name, value))
    if index is not None:
        return _integer(index, 7, 0x80)
    first = 0x10 if name in _NEVER_INDEXED else 0x00
    index = _STATIC_NAMES.get(name)
    if index is not None:
        return _integer(index, 4, first) + _string(value)
    return bytes((first,)) + _string(name) + _string(value)


class StaticEncoder:
    """Stands in for ``hpack.Encoder`` on an h2 connection (``conn.encoder``): same ``encode`` and
    ``header_table_size``, no dynamic table."""

    __slots__ = ("_opened",)

    _cache: dict[tuple[bytes, bytes], bytes] = {}
    """Shared by every connection of the worker: a field's bytes do not depend on the connection."""

    def __init__(self) -> None:
        self._opened = False

    @property
    def header_table_size(self) -> int:
        return 0

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        """The peer's limit: ours is 0, within any."""

    def encode(self, headers, huffman: bool = True) -> bytes:
        cache = self._cache
        parts = []
        if not self._opened:
            self._opened = True
            parts.append(_TABLE_SIZE_ZERO)
        for field in headers:
            encoded = cache.get(field)
            if encoded is None:
                encoded = encode_field(field[0], field[1])
                if len(field[1]) <= _CACHE_VALUE_BYTES:
                    if len(cache) >= _CACHE_FIELDS:
                        cache.clear()
                    cache[field] = encoded
            parts.append(encoded)
        return b"".join(parts)
