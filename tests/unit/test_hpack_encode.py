"""wire/hpack_encode.py: what it encodes, the hpack library's decoder (a peer's) reads back unchanged."""

import pytest
from hpack import Decoder

from fastgate.wire.hpack_encode import StaticEncoder, encode_field

RESPONSE = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"content-length", b"12"),
            (b"date", b"Fri, 04 Dec 2026 04:30:00 GMT"), (b"server", b"fastgate"), (b"x-request-id", b"r" * 200),
            (b"x-custom-name-not-in-the-static-table", b""), (b"set-cookie", b"a=1"), (b"accept-ranges", b"bytes")]


def test_a_peers_decoder_reads_every_block_back_and_holds_no_entry_of_ours():
    encoder, decoder = StaticEncoder(), Decoder()
    for _ in range(3):  # the first block opens with the table size update; the cached ones decode the same
        assert decoder.decode(encoder.encode(RESPONSE), raw=True) == RESPONSE
    assert len(decoder.header_table.dynamic_entries) == 0
    assert decoder.header_table.maxsize == 0


def test_the_first_block_sets_the_dynamic_table_to_zero_and_later_ones_do_not():
    encoder = StaticEncoder()
    assert encoder.encode([(b":status", b"200")]) == b"\x20\x88"
    assert encoder.encode([(b":status", b"200")]) == b"\x88"


def test_a_peer_lowering_its_table_size_needs_nothing_more():
    encoder, decoder = StaticEncoder(), Decoder()
    decoder.max_allowed_table_size = 0  # a peer announcing SETTINGS_HEADER_TABLE_SIZE = 0
    encoder.header_table_size = 0
    assert decoder.decode(encoder.encode(RESPONSE), raw=True) == RESPONSE


@pytest.mark.parametrize("field, expected", [
    ((b":status", b"404"), b"\x8d"),  # whole in the static table (index 13)
    ((b"content-length", b"12"), b"\x0f\x0d\x0212"),  # name index 28 (15 + 13), literal value
    ((b"age", b"1"), b"\x0f\x06\x011"),  # name index 21
    ((b"set-cookie", b"a=1"), b"\x1f\x28\x03a=1"),  # never indexed, name index 55
    ((b"x-a", b"b"), b"\x00\x03x-a\x01b"),  # literal name
])
def test_representations(field, expected):
    assert encode_field(*field) == expected


def test_a_value_longer_than_the_length_prefix_takes_continuation_bytes():
    value = b"v" * 300
    assert encode_field(b"x-a", value) == b"\x00\x03x-a\x7f\xad\x01" + value
    assert Decoder().decode(encode_field(b"x-a", value), raw=True) == [(b"x-a", value)]


def test_the_cache_stays_bounded_and_keeps_no_long_value():
    """Unique or long values (request ids, cookies) must not grow the worker: at most 4,096 short fields."""
    encoder = StaticEncoder()
    long_field = (b"set-cookie", b"c" * 1000)
    encoder.encode([long_field])
    assert long_field not in StaticEncoder._cache
    for n in range(5000):
        encoder.encode([(b"x-request-id", b"%032d" % n)])
    assert 0 < len(StaticEncoder._cache) <= 4096
