"""Request buffering: a body that fits request_buffer_size is read whole, and its framing checked,
before the request takes an upstream connection; a chunked one goes upstream with a Content-Length.

Whether a request took an upstream connection is told by the upstream's accepted connections: a
request still sending its body holds the connection it took, so a later request on another client
connection needs a second one. A request answered on another connection after the first one's
bytes were sent has been handled after them by the worker's one event loop.
"""

import httpx

from tests.support.checks import assert_json_error
from tests.support.rawhttp import RawConnection, request_bytes

CHUNKED_HEAD = b"POST /echo/c HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"


def start(gateways, upstream, **route):
    return gateways.start({"upstreams": [upstream.config()],
                           "routes": [{"name": "echo", "path_prefix": "/echo/", "upstream": "up", **route}]})


def served_after(gw) -> None:
    """A request on another connection is answered: the worker handled every byte sent before it."""
    assert httpx.get(gw.url("/echo/sentinel"), timeout=10).status_code == 200


def test_a_chunked_body_goes_upstream_with_a_content_length(gateways, upstream):
    gw = start(gateways, upstream)
    with RawConnection(gw.port) as conn:
        conn.send(CHUNKED_HEAD + b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n")
        echo = conn.read_response().json()
    headers = {name.lower(): value for name, value in echo["headers"]}
    assert echo["body"] == "hello world"
    assert headers["content-length"] == "11"
    assert "transfer-encoding" not in headers and "x-sum" not in headers


def test_a_slow_body_takes_no_upstream_connection_until_it_is_complete(gateways, upstream):
    gw = start(gateways, upstream)
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("POST", "/echo/slow", headers=[("Content-Length", "10")]) + b"hello")
        served_after(gw)
        assert upstream.stats.accepted == 1, upstream.summary()  # the sentinel's connection only
        conn.send(b"world")
        echo = conn.read_response().json()
    assert echo["body"] == "helloworld"


def test_a_route_that_streams_takes_the_connection_at_once(gateways, upstream):
    """The control for the test above: without buffering the slow body holds its own connection."""
    gw = start(gateways, upstream, request_buffering=False)
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("POST", "/echo/slow", headers=[("Content-Length", "10")]) + b"hello")
        served_after(gw)
        assert upstream.stats.accepted == 2, upstream.summary()
        conn.send(b"world")
        assert conn.read_response().json()["body"] == "helloworld"


def test_a_body_larger_than_the_buffer_streams(gateways, upstream):
    gw = start(gateways, upstream, request_buffer_size="1KiB")
    body = bytes(range(256)) * 16  # 4 KiB
    with RawConnection(gw.port) as conn:
        conn.send(CHUNKED_HEAD + b"800\r\n" + body[:2048] + b"\r\n")
        served_after(gw)
        assert upstream.stats.accepted == 2, upstream.summary()
        conn.send(b"800\r\n" + body[2048:] + b"\r\n0\r\n\r\n")
        echo = conn.read_response().json()
    assert echo["body_len"] == len(body)
    assert dict((k.lower(), v) for k, v in echo["headers"])["transfer-encoding"] == "chunked"


def test_many_slow_bodies_hold_no_upstream_connection(gateways, upstream):
    gw = start(gateways, upstream)
    clients = [RawConnection(gw.port) for _ in range(50)]
    try:
        for i, conn in enumerate(clients):
            conn.send(request_bytes("POST", f"/echo/many-{i}", headers=[("Content-Length", "8")]) + b"half")
        served_after(gw)
        assert upstream.stats.accepted == 1, upstream.summary()
        for conn in clients:
            conn.send(b"done")
        assert all(conn.read_response().json()["body"] == "halfdone" for conn in clients)
    finally:
        for conn in clients:
            conn.close()


def test_a_malformed_chunked_body_is_refused_before_anything_goes_upstream(gateways, upstream):
    gw = start(gateways, upstream)
    with RawConnection(gw.port) as conn:
        conn.send(CHUNKED_HEAD + b"5\r\nhello\r\n")
        conn.send(b'5;a="open\r\nworld\r\n0\r\n\r\n' + request_bytes("GET", "/echo/pipelined"))
        assert_json_error(conn.read_response("POST"), 400)
        assert b"HTTP/1.1" not in conn.wait_closed()
    served_after(gw)
    assert upstream.stats.accepted == 1 and [r.target for r in upstream.stats.requests] == ["/echo/sentinel"]


def test_an_h2c_upgrade_is_served_as_a_plain_request(gateways, upstream):
    gw = start(gateways, upstream)
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("GET", "/echo/h2c", headers=[
            ("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"), ("HTTP2-Settings", "AAMAAABkAAQAoAAAAAIAAAAA")]))
        response = conn.read_response()
        assert response.status == 200
        names = {name.lower() for name, _ in response.json()["headers"]}
        assert not names & {"upgrade", "connection", "http2-settings"}, names
        conn.send(request_bytes("GET", "/echo/after"))  # still plain HTTP/1.1 on this connection
        assert conn.read_response().status == 200


def test_a_body_on_a_get_does_not_leave_its_upstream_connection_pooled(gateways, upstream):
    """CL.0: a server that ignores a GET's body reads it as a request of its own, whose late answer
    would go to the next request sent on that connection; so that connection is not used again."""
    gw = start(gateways, upstream)
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("GET", "/echo/cl0", body=b"hello"))
        assert conn.read_response().json()["body"] == "hello"
        conn.send(request_bytes("GET", "/echo/next"))
        assert conn.read_response().json()["conn_id"] == 2
        conn.send(request_bytes("POST", "/echo/post", body=b"hello"))
        assert conn.read_response().json()["conn_id"] == 2  # a POST's body is read: pooled
        conn.send(request_bytes("GET", "/echo/after-post"))
        assert conn.read_response().json()["conn_id"] == 2
