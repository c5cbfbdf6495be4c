"""Expect: 100-continue: the gateway answers 100 itself once routing and limits pass, else the final status."""

import hashlib

import pytest

from tests.support.checks import assert_json_error
from tests.support.rawhttp import RawConnection, request_bytes


@pytest.fixture(scope="module")
def gw(module_gateways, module_upstream):
    return module_gateways.start({
        "upstreams": [module_upstream.config()],
        "routes": [{"name": "echo", "path_prefix": "/echo/", "upstream": "up"},
                   {"name": "small", "path_prefix": "/small/", "upstream": "up", "max_body_size": "1KiB"}],
    })


def _head(target: str, length: int) -> bytes:
    return request_bytes("POST", target, headers=[("Expect", "100-continue"), ("Content-Length", str(length))])


def test_100_continue_then_body_is_forwarded(gw, module_upstream):
    body = bytes(range(256)) * 20
    with RawConnection(gw.port) as conn:
        conn.send(_head("/echo/expect", len(body)))
        assert conn.read_interim().status == 100
        conn.send(body)
        conn.finish_request_for_parser()
        response = conn.read_response()
    assert response.status == 200
    assert response.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
    received = module_upstream.wait_request("/echo/expect")
    assert received.header("Expect") is None, "the gateway answered the expectation; it must not pass it on"


@pytest.mark.parametrize("target, length, status", [
    ("/small/too-big", 5000, 413),
    ("/no-route-here", 10, 404),
])
def test_refused_request_gets_final_status_without_100(gw, module_upstream, target, length, status):
    with RawConnection(gw.port) as conn:
        conn.send(_head(target, length))
        response = conn.read_response("POST")
    assert response.informational == [], "no 100 Continue may precede a refusal"
    assert_json_error(response, status)
    assert module_upstream.requests_with(target) == []
