"""Pipelined requests on one connection are answered in order, whatever answers each of them."""

import hashlib

import pytest

from tests.support.rawhttp import RawConnection, request_bytes


@pytest.fixture(scope="module")
def gw(module_gateways, module_upstream):
    return module_gateways.start({
        "upstreams": [module_upstream.config()],
        "routes": [{"name": "echo", "path_prefix": "/echo/", "upstream": "up"},
                   {"name": "hello", "path": "/hello", "respond": {"body": "hello"}}],
    })


def test_pipelined_requests_are_answered_in_order(gw, module_upstream):
    body = b"b" * 50000
    requests = [
        ("GET", "/echo/pipe-1?delay=0.3", b""),       # slowest first
        ("GET", "/hello", b""),                       # answered by the gateway itself
        ("POST", "/echo/pipe-3", body),
        ("GET", "/no-such-route", b""),               # 404 from the gateway
        ("HEAD", "/echo/pipe-5?bytes=1000", b""),
        ("GET", "/echo/pipe-6?bytes=70000&frame=chunked", b""),
        ("GET", "/echo/pipe-7", b""),
    ]
    with RawConnection(gw.port) as conn:
        conn.send(b"".join(request_bytes(m, t, body=b) for m, t, b in requests))
        responses = [conn.read_response(m) for m, _, _ in requests]

    assert [r.status for r in responses] == [200, 200, 200, 404, 200, 200, 200]
    assert responses[0].json()["target"] == "/echo/pipe-1?delay=0.3"
    assert responses[1].body == b"hello"
    assert responses[2].json()["target"] == "/echo/pipe-3"
    assert responses[2].json()["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert responses[4].body == b"" and responses[4].header("Content-Length") == "1000"
    assert len(responses[5].body) == 70000
    assert responses[6].json()["target"] == "/echo/pipe-7"
    sent_upstream = [r.path for r in module_upstream.requests_with("/echo/pipe-")]
    assert sent_upstream == ["/echo/pipe-1", "/echo/pipe-3", "/echo/pipe-5", "/echo/pipe-6", "/echo/pipe-7"]
