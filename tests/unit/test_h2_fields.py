"""transport/h2_server.py's pure parts: an HTTP/2 header list rendered as an HTTP/1.1 head, and a
response head's lines as HTTP/2 headers."""

import pytest

from fastgate.wire.h1 import header_value, new_request_parser, parse_request_head
from fastgate.wire.h2_fields import StreamError, render_request, response_headers, tunnel_headers
from fastgate.wire.websocket import accept_of

BASE = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"api.test"), (b":path", b"/a?b=1")]


def test_a_request_becomes_an_http1_head_that_parses():
    raw = render_request(BASE + [(b"accept", b"*/*"), (b"cookie", b"a=1"), (b"cookie", b"b=2"),
                                 (b"te", b"trailers")], True)
    assert raw == b"GET /a?b=1 HTTP/1.1\r\nHost: api.test\r\naccept: */*\r\nCookie: a=1; b=2\r\n\r\n"
    head = parse_request_head(raw, 8192, 100, new_request_parser())
    assert head.host == b"api.test" and head.path == b"/a" and head.query == b"?b=1" and not head.has_body


def test_a_body_without_content_length_is_chunked_and_one_with_keeps_it():
    raw = render_request([(b":method", b"POST")] + BASE[1:], False)
    assert raw.endswith(b"\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert parse_request_head(raw, 8192, 100, new_request_parser()).chunked
    raw = render_request([(b":method", b"POST")] + BASE[1:] + [(b"content-length", b"5")], False)
    assert b"chunked" not in raw.lower()
    assert parse_request_head(raw, 8192, 100, new_request_parser()).content_length == 5


def test_host_alone_serves_as_the_authority():
    raw = render_request([h for h in BASE if h[0] != b":authority"] + [(b"host", b"h.test")], True)
    assert parse_request_head(raw, 8192, 100, new_request_parser()).host == b"h.test"


@pytest.mark.parametrize("headers, end", [
    (BASE + [(b"connection", b"close")], True),
    (BASE + [(b"keep-alive", b"5")], True),
    (BASE + [(b"proxy-connection", b"x")], True),
    (BASE + [(b"transfer-encoding", b"chunked")], True),
    (BASE + [(b"upgrade", b"websocket")], True),
    (BASE + [(b"te", b"gzip")], True),
    (BASE + [(b"X-Up", b"1")], True),
    (BASE + [(b"x-a", b"1\r\n2")], True),
    (BASE + [(b"x-a", b"1\x002")], True),
    (BASE + [(b"x-a", b" padded")], True),
    (BASE + [(b":path", b"/again")], True),
    (BASE[:2] + [(b"x-a", b"1")] + BASE[2:], True),
    (BASE + [(b":protocol", b"websocket")], True),
    (BASE[1:], True),
    ([h for h in BASE if h[0] != b":path"], True),
    ([(b":method", b"CONNECT"), (b":authority", b"a.test:443")], True),
    ([(b":method", b"CONNECT"), (b":protocol", b"connect-udp")] + BASE[1:], False),
    ([(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":protocol", b"websocket")] + BASE[1:], False),
    ([(b":method", b"CONNECT"), (b":protocol", b"websocket")] + BASE[1:] + [(b"content-length", b"0")], False),
    (BASE + [(b"host", b"other.test")], True),
    (BASE + [(b"content-length", b"5")], True),
    (BASE + [(b"content-length", b"5"), (b"content-length", b"5")], False),
    (BASE + [(b"content-length", b"-1")], False),
    ([(b":method", b"GET"), (b":scheme", b"ftp")] + BASE[2:], True),
])
def test_what_http2_forbids_is_a_stream_error(headers, end):
    with pytest.raises(StreamError):
        render_request(headers, end)


def test_response_lines_become_lower_case_headers_without_connection_fields():
    block = b"\r\nContent-Type: text/plain\r\nConnection: close\r\nKeep-Alive: 5\r\nTransfer-Encoding: chunked" \
            b"\r\nX-A:  1 \r\nUpgrade: h2c\r\n\r\n"
    assert response_headers(200, block) == [(b":status", b"200"), (b"content-type", b"text/plain"), (b"x-a", b"1")]


CONNECT = [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"https"), (b":path", b"/chat?x=1"),
           (b":authority", b"api.test")]


def test_an_extended_connect_becomes_the_http1_websocket_upgrade_with_a_key_of_ours():
    raw = render_request(CONNECT + [(b"sec-websocket-version", b"13"), (b"sec-websocket-protocol", b"chat"),
                                    (b"sec-websocket-key", b"client's own"), (b"origin", b"https://a.test")], False)
    head = parse_request_head(raw, 8192, 100, new_request_parser())
    assert head.method == b"GET" and head.target == b"/chat?x=1" and head.host == b"api.test"
    assert head.upgrade == b"websocket" and not head.has_body and not head.chunked
    key = header_value(raw, b"sec-websocket-key")
    assert len(key) == 24 and key != b"client's own" and raw.count(b"sec-websocket-key") + raw.count(
        b"Sec-WebSocket-Key") == 1
    for field in (b"sec-websocket-version: 13", b"sec-websocket-protocol: chat", b"origin: https://a.test"):
        assert b"\r\n" + field + b"\r\n" in raw
    assert header_value(render_request(CONNECT, False), b"sec-websocket-key") != key  # a new one each time


def test_the_upstreams_101_becomes_a_200_without_the_handshake_fields():
    block = (b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: abc="
             b"\r\nSec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate\r\nX-A: 1\r\n\r\n")
    assert tunnel_headers(block) == [(b":status", b"200"), (b"sec-websocket-protocol", b"chat"),
                                     (b"sec-websocket-extensions", b"permessage-deflate"), (b"x-a", b"1")]


def test_the_accept_is_rfc_6455s():
    assert accept_of(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
