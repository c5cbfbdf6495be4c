"""wire/hpack_decode.py against the hpack library: what hpack's encoder (a client's) writes decodes to the
same fields, the dynamic table evolves the same, and what hpack's decoder refuses is refused."""

import pytest
from hpack import Decoder, Encoder
from hpack.exceptions import HPACKDecodingError, InvalidTableSizeError, OversizedHeaderListError
from hypothesis import given, settings, strategies as st

from fastgate.wire.hpack_decode import FastDecoder

NAMES = [b":method", b":path", b":authority", b"accept", b"cookie", b"user-agent", b"x-custom", b"authorization"]
field = st.tuples(st.sampled_from(NAMES) | st.binary(min_size=1, max_size=20),
                  st.binary(max_size=300), st.booleans())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(field, max_size=12), min_size=1, max_size=6), st.booleans(),
       st.sampled_from([0, 256, 4096]))
def test_blocks_a_client_encodes_decode_to_the_same_fields_block_after_block(blocks, huffman, table_size):
    encoder, ours, theirs = Encoder(), FastDecoder(), Decoder()
    for decoder in (ours, theirs):
        decoder.max_header_list_size = 1 << 20
    if table_size != 4096:  # the client shrinks its table: the next block opens with the size update
        encoder.header_table_size = table_size
    for block in blocks:
        data = encoder.encode([(name, value, sensitive) for name, value, sensitive in block], huffman=huffman)
        assert ours.decode(data) == [(name, value) for name, value in theirs.decode(data, raw=True)]
        assert list(ours.header_table.dynamic_entries) == list(theirs.header_table.dynamic_entries)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80))
def test_any_bytes_are_decoded_or_refused_as_hpack_refuses_them(data):
    ours, theirs = FastDecoder(), Decoder()
    try:
        expected = [tuple(h) for h in theirs.decode(data, raw=True)]
    except HPACKDecodingError:
        with pytest.raises(HPACKDecodingError):
            ours.decode(data)
        return
    assert ours.decode(data) == expected


@pytest.mark.parametrize("data", [
    b"\x80",  # index 0
    b"\xbf",  # index 63: past a table with nothing dynamic
    b"\xff\x80\x80\x80\x80\x80\x01",  # an integer longer than five octets
    b"\xff",  # a truncated integer
    b"\x00\x05ab",  # a truncated name
    b"\x04\x85abc",  # a truncated value (Huffman flag set)
    b"\x82\x20",  # a table size update after a field
])
def test_malformed_blocks_are_refused(data):
    with pytest.raises(HPACKDecodingError):
        FastDecoder().decode(data)


def test_a_table_size_update_past_the_announced_size_is_refused():
    decoder = FastDecoder()
    decoder.max_allowed_table_size = 100
    assert decoder.decode(b"\x3f\x45") == []  # 31 + 69 = 100
    with pytest.raises(InvalidTableSizeError):
        decoder.decode(b"\x3f\x46")  # 101


def test_a_table_left_larger_than_announced_is_refused():
    decoder = FastDecoder()
    decoder.max_allowed_table_size = 0  # the gateway announced 0; the client kept 4096 and did not say so
    with pytest.raises(InvalidTableSizeError):
        decoder.decode(b"\x82")


def test_a_header_list_past_the_limit_is_refused_as_soon_as_it_passes():
    """An HPACK bomb: one indexed field of 1,000 bytes repeated is cheap to send, dear to expand."""
    decoder = FastDecoder()
    decoder.max_header_list_size = 16_000
    first = decoder.decode(b"\x40\x01x\x7f\xe9\x06" + b"v" * 1000)  # literal with indexing, 1,000-byte value
    assert first == [(b"x", b"v" * 1000)]
    decoder.decode(b"\xbe" * 15)  # 15 x 1,033 bytes: under the limit
    with pytest.raises(OversizedHeaderListError):
        decoder.decode(b"\xbe" * 16)
