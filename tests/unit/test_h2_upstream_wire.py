"""The sans-IO side of HTTP/2 upstreams: a rendered HTTP/1.1 head as HTTP/2 request fields, HTTP/2
response fields as the head the core relays, GOAWAY frames taken out of a byte stream, chunked
trailers kept and rendered."""

import random

import h2.config
import h2.connection
import pytest
from hyperframe.frame import DataFrame, GoAwayFrame, PingFrame

from fastgate.wire.chunked import ChunkedFramer, forwardable_trailers, render_trailers
from fastgate.wire.h2_goaway import GoawayFilter
from fastgate.wire.h2_upstream import LAST_CHUNK, chunk, request_fields, response_head


def test_request_fields_drop_what_http2_forbids_and_move_host_to_authority():
    head = (b"POST /a?b=1 HTTP/1.1\r\nHost: api.test:8080\r\nContent-Type: application/grpc+proto\r\n"
            b"Connection: close\r\nKeep-Alive: 5\r\nTransfer-Encoding: chunked\r\nUpgrade: h2c\r\nTE: gzip\r\n"
            b"X-Thing:  v  \r\nProxy-Connection: x\r\n\r\n")
    fields, framing = request_fields(head, b"https")
    assert fields == [
        (b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"api.test:8080"), (b":path", b"/a?b=1"),
        (b"content-type", b"application/grpc+proto"), (b"x-thing", b"v"), (b"te", b"trailers"),
    ]
    assert framing.chunked and framing.content_length == -1 and framing.has_body


def test_request_fields_keep_content_length_and_send_te_only_for_grpc():
    fields, framing = request_fields(b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n", b"http")
    assert (b"content-length", b"12") in fields and (b"te", b"trailers") not in fields
    assert framing.content_length == 12 and not framing.chunked
    _, framing = request_fields(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", b"http")
    assert not framing.has_body


@pytest.mark.parametrize("head", [b"GET / HTTP/1.1\r\nX: 1\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n"])
def test_request_fields_refuse_what_fastgate_never_renders(head):
    with pytest.raises(ValueError):
        request_fields(head, b"http")


def test_response_head_without_content_length_is_chunked_and_rendered_so():
    head = response_head([(b":status", b"200"), (b"content-type", b"application/grpc")], b"POST")
    assert head.status == 200 and head.chunked and not head.until_close
    assert b"\r\ncontent-type: application/grpc" in head.raw
    assert chunk(b"hello") == b"5\r\nhello\r\n" and LAST_CHUNK == b"0\r\n\r\n"
    head = response_head([(b":status", b"200"), (b"content-length", b"7")], b"GET")
    assert head.content_length == 7 and not head.chunked
    head = response_head([(b":status", b"204")], b"GET")
    assert head.content_length == 0 and not head.chunked
    head = response_head([(b":status", b"200")], b"HEAD")
    assert head.content_length == 0 and not head.chunked


def _frames_from_a_server(goaway_at: int) -> tuple[bytes, int]:
    """A server's byte stream: SETTINGS, DATA and PING frames with one GOAWAY among them."""
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server.initiate_connection()
    parts = [server.data_to_send()]
    for i in range(20):
        if i == goaway_at:
            frame = GoAwayFrame(0)
            frame.last_stream_id = 7
            frame.error_code = 0
            frame.additional_data = b"bye"
            parts.append(frame.serialize())
        data = DataFrame(1)
        data.data = bytes([i]) * (i * 97 % 5000)
        parts.append(data.serialize())
        parts.append(PingFrame(0).serialize())
    return b"".join(parts), len(parts)


@pytest.mark.parametrize("seed", range(20))
def test_goaway_filter_cuts_out_goaway_frames_however_the_bytes_are_split(seed):
    stream, _ = _frames_from_a_server(goaway_at=seed % 20)
    goaway = GoAwayFrame(0)
    goaway.last_stream_id = 7
    goaway.error_code = 0
    goaway.additional_data = b"bye"
    expected = stream.replace(goaway.serialize(), b"")
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(stream)), 30))
    filt = GoawayFilter()
    passed, found = [], []
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        data, goaways = filt.feed(stream[start:end])
        passed.append(data)
        found += goaways
    assert b"".join(passed) == expected
    assert found == [(7, 0)]


def test_goaway_filter_passes_a_stream_without_goaway_untouched():
    data = PingFrame(0).serialize() * 3
    out, found = GoawayFilter().feed(data)
    assert out is data and found == []


def test_chunked_trailers_are_kept_filtered_and_rendered():
    framer = ChunkedFramer(keep_trailers=True)
    body = b"5\r\nhello\r\n0\r\nGrpc-Status: 0\r\nContent-Length: 5\r\nx-sum:  abc \r\n\r\n"
    assert framer.feed(body) == len(body)
    assert framer.trailers == [(b"grpc-status", b"0"), (b"content-length", b"5"), (b"x-sum", b"abc")]
    kept = forwardable_trailers(framer.trailers + [(b":status", b"200"), (b"x-bad", b"a\nb")])
    assert kept == [(b"grpc-status", b"0"), (b"x-sum", b"abc")]
    assert render_trailers(kept) == b"0\r\ngrpc-status: 0\r\nx-sum: abc\r\n\r\n"
    assert ChunkedFramer().trailers is None
