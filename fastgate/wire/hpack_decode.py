"""An HPACK decoder (RFC 7541) that stands in for ``hpack.Decoder`` on the gateway's HTTP/2 server
connections: the same contract, a fraction of the cost.

hpack's decoder spends most of a request header block's cost around the
decoding: a memoryview slice, two or three calls and a debug log line per
field. Here one loop reads the block; the dynamic table is hpack's
``HeaderTable`` and Huffman strings go through hpack's ``decode_huffman``,
so the parts that hold state or tables are the library's.

The contract h2 relies on (``H2Connection.decoder``):

- ``decode(data, raw=True)`` returns the block's (name, value) pairs as
  bytes; a malformed block raises ``HPACKDecodingError`` (h2 makes it a
  connection error, COMPRESSION_ERROR);
- ``max_header_list_size``: a block whose fields add up to more (each
  counted as name + value + 32, RFC 7541 4.1) raises
  ``OversizedHeaderListError`` as soon as it passes it (an HPACK bomb);
- ``max_allowed_table_size``: a dynamic table size update above it, or a
  table left above it after a block, raises ``InvalidTableSizeError``;
- ``header_table_size``: the dynamic table's size, set by h2 when the
  gateway's SETTINGS_HEADER_TABLE_SIZE is acknowledged.

A table size update is allowed only before the block's first field
(RFC 7541 4.2); an index of 0, past the table, or an integer longer than
five octets is an error, as in hpack.
"""

from hpack.exceptions import HPACKDecodingError, InvalidTableSizeError, OversizedHeaderListError
from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

_MAX_INTEGER_BYTES = 5
"""Octets an integer may take after its prefix: enough for 2^32 (hpack's limit too)."""
_ENTRY_OVERHEAD = 32
_DEFAULT_MAX_HEADER_LIST_BYTES = 1 << 16


def _integer(data: bytes, start: int, value: int) -> tuple[int, int]:
    """The rest of an integer whose prefix was full (``value``): (integer, index after it)."""
    shift = 0
    index = start
    end = len(data)
    while True:
        if index >= end:
            raise HPACKDecodingError("truncated integer in a header block")
        byte = data[index]
        index += 1
        value += (byte & 0x7F) << shift
        if byte < 0x80:
            return value, index
        shift += 7
        if index - start >= _MAX_INTEGER_BYTES:
            raise HPACKDecodingError("an integer in a header block is too long")


def _string(data: bytes, index: int) -> tuple[bytes, int]:
    """A string literal at ``index``: (its bytes, index after it)."""
    if index >= len(data):
        raise HPACKDecodingError("truncated string in a header block")
    first = data[index]
    length = first & 0x7F
    index += 1
    if length == 0x7F:
        length, index = _integer(data, index, length)
    end = index + length
    if end > len(data):
        raise HPACKDecodingError("truncated string in a header block")
    if first & 0x80:
        return decode_huffman(data[index:end]), end
    return data[index:end], end


class FastDecoder:
    """hpack.Decoder's contract (above) for the server side of h2."""

    __slots__ = ("header_table", "max_header_list_size", "max_allowed_table_size")

    def __init__(self, max_header_list_size: int = _DEFAULT_MAX_HEADER_LIST_BYTES) -> None:
        self.header_table = HeaderTable()
        self.max_header_list_size = max_header_list_size
        self.max_allowed_table_size = self.header_table.maxsize

    @property
    def header_table_size(self) -> int:
        return self.header_table.maxsize

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self.header_table.maxsize = value

    def decode(self, data: bytes, raw: bool = True) -> list[tuple[bytes, bytes]]:
        """The block's fields as bytes (h2 asks for ``raw``; nothing else is offered)."""
        data = bytes(data)
        table = self.header_table
        entry = table.get_by_index
        limit = self.max_header_list_size
        headers: list[tuple[bytes, bytes]] = []
        size = 0
        index = 0
        end = len(data)
        while index < end:
            first = data[index]
            index += 1
            if first & 0x80:  # indexed field
                number = first & 0x7F
                if number == 0x7F:
                    number, index = _integer(data, index, number)
                field = entry(number)  # 0 or past the table: InvalidTableIndex
            elif first & 0x40 or not first & 0x20:  # a literal: incremental indexing, or not indexed
                indexing = first & 0x40
                number = first & (0x3F if indexing else 0x0F)
                if number:
                    if number == (0x3F if indexing else 0x0F):
                        number, index = _integer(data, index, number)
                    name = entry(number)[0]
                else:
                    name, index = _string(data, index)
                value, index = _string(data, index)
                field = (name, value)
                if indexing:
                    table.add(name, value)
            else:  # a dynamic table size update
                if headers:
                    raise HPACKDecodingError("a table size update after a header field")
                number = first & 0x1F
                if number == 0x1F:
                    number, index = _integer(data, index, number)
                if number > self.max_allowed_table_size:
                    raise InvalidTableSizeError("a table size update past the announced size")
                table.maxsize = number
                continue
            headers.append(field)
            size += len(field[0]) + len(field[1]) + _ENTRY_OVERHEAD
            if size > limit:
                raise OversizedHeaderListError(f"a header list larger than {limit} bytes")
        if table.maxsize > self.max_allowed_table_size:
            raise InvalidTableSizeError("the table was not shrunk to the announced size")
        return headers
