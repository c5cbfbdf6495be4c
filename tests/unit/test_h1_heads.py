"""Request and response heads: what is extracted, what is dropped, what is refused."""

import pytest

from fastgate.wire.h1 import (
    HeadError, allowed_upgrade, new_request_parser, parse_request_head, parse_response_head, splice_headers,
)


def request(raw: bytes):
    return parse_request_head(raw, 8192, 100, new_request_parser())


def spliced(head) -> bytes:
    parts: list[bytes] = []
    splice_headers(parts, head.raw, head.line_end, head.drops)
    return b"".join(parts)


def test_fields_that_decide():
    head = request(
        b"POST /a/b?x=1 HTTP/1.1\r\nHost: Example.COM:8080\r\nContent-Length: 5\r\n"
        b"X-Request-ID: AbC-1\r\nX-Forwarded-For: 10.0.0.1\r\nExpect: 100-continue\r\n\r\n"
    )
    assert (head.method, head.path, head.query) == (b"POST", b"/a/b", b"?x=1")
    assert head.host == b"example.com:8080"
    assert head.content_length == 5 and not head.chunked
    assert head.request_id == b"AbC-1"  # case kept
    assert head.forwarded_for == b"10.0.0.1"
    assert head.expect_continue


def test_hop_by_hop_headers_are_dropped_and_others_kept_verbatim():
    head = request(
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: 5\r\n"
        b"X-Secret: 1\r\nTE: trailers\r\nProxy-Authorization: x\r\nX-Keep: Value\r\n\r\n"
    )
    assert spliced(head) == b"\r\nHost: a\r\nX-Keep: Value"


def test_absolute_form_to_the_same_host_becomes_origin_form():
    head = request(b"GET http://a.example/p?q=1 HTTP/1.1\r\nHost: a.example\r\n\r\n")
    assert head.target == b"/p?q=1"


@pytest.mark.parametrize("raw,status", [
    (b"GET http://evil.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),                                             # no Host
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405),
    (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417),
    # the request line: one SP each side of the target
    (b"GET /admin  HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET  /admin HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),                                  # asterisk-form is for OPTIONS
    (b"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),                        # userinfo
    (b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET /%2e%2e/x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    # Host per RFC 9110 7.2
    (b"GET / HTTP/1.1\r\nHost: a@evil\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x evil\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a,b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a%2eb\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
    # Connection may not name what frames or routes the request
    (b"POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nConnection: close, Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n",
     400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: host\r\n\r\n", 400),
    # Transfer-Encoding: exactly chunked, HTTP/1.1 only
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    # an upgrade carries no body
    (b"POST /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\n", 400),
])
def test_refused(raw, status):
    with pytest.raises(HeadError) as info:
        request(raw)
    assert info.value.status == status


@pytest.mark.parametrize("host", [b"a", b"a.example:8080", b"xn--bcher-kva.example", b"[::1]:443", b"127.0.0.1",
                                  b"A.Example", b"a_b~c", b"a:"])
def test_valid_hosts(host):
    assert request(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n").host == host.lower()


def test_normalised_path_is_what_goes_upstream():
    head = request(b"GET //x/../%61dmin?q=%2F HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (head.path, head.query, head.target) == (b"/admin", b"?q=%2F", b"/admin?q=%2F")
    assert not head.line_as_is
    assert request(b"GET /a/b?c HTTP/1.1\r\nHost: a\r\n\r\n").line_as_is


def test_connection_named_fields_the_gateway_reads_are_forgotten():
    head = request(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Request-ID, X-Forwarded-For\r\n"
                   b"X-Request-ID: client\r\nX-Forwarded-For: 10.9.9.9\r\nX-Keep: 1\r\n\r\n")
    assert head.request_id == b"" and head.forwarded_for == b""
    assert spliced(head) == b"\r\nHost: a\r\nX-Keep: 1"


def test_chunked_span_is_the_transfer_encoding_field():
    head = request(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  Chunked \r\n\r\n")
    assert head.chunked and head.raw[slice(*head.chunked_span)] == b"\r\nTransfer-Encoding:  Chunked "


@pytest.mark.parametrize("value, allowed, kept", [
    (b"websocket", {b"websocket"}, b"websocket"),
    (b"WebSocket", {b"websocket"}, b"WebSocket"),
    (b"h2c", {b"websocket"}, b""),
    (b"h2c, websocket", {b"websocket"}, b"websocket"),
    (b"HTTP/2.0, IRC/6.9", {b"irc"}, b"IRC/6.9"),
])
def test_allowed_upgrade(value, allowed, kept):
    assert allowed_upgrade(value, frozenset(allowed)) == kept


def test_limits():
    with pytest.raises(HeadError) as info:
        parse_request_head(b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 64, 100, new_request_parser())
    assert info.value.status == 414
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(20))
    with pytest.raises(HeadError) as info:
        parse_request_head(b"GET / HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n", 8192, 10, new_request_parser())
    assert info.value.status == 431


def test_parser_is_reusable_after_a_bodiless_request():
    parser = new_request_parser()
    for _ in range(3):
        head = parse_request_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 8192, 100, parser)
        assert head.method == b"GET"


def test_upgrade_request():
    head = request(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    assert head.upgrade == b"websocket"
    assert spliced(head) == b"\r\nHost: a"


@pytest.mark.parametrize("raw,method,framing", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"GET", ("length", 5)),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"GET", ("chunked", -1)),
    (b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", b"GET", ("close", -1)),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"HEAD", ("length", 0)),
    (b"HTTP/1.1 204 No Content\r\n\r\n", b"GET", ("length", 0)),
    (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", b"GET", ("length", 0)),
])
def test_response_framing(raw, method, framing):
    head = parse_response_head(raw, method)
    kind = "chunked" if head.chunked else "close" if head.until_close else "length"
    assert (kind, head.content_length) == framing
    assert head.keep_alive == (kind != "close")


def test_response_hop_by_hop_dropped():
    head = parse_response_head(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\nX-A: 1\r\n\r\n",
        b"GET",
    )
    assert spliced(head) == b"\r\nContent-Length: 0\r\nX-A: 1"


def test_broken_response_is_502():
    with pytest.raises(HeadError) as info:
        parse_response_head(b"HTTP/1.1 abc\r\n\r\n", b"GET")
    assert info.value.status == 502
