"""Message bodies relayed intact in every framing: response CL/chunked/close-delimited, request CL/chunked,
and the bodiless cases (HEAD, 204, 304, 1xx). Responses are read strictly with h11.
"""

import hashlib

import httpx
import pytest

from tests.support.rawhttp import RawConnection, request_bytes
from tests.support.upstream import pattern, pattern_sha256


@pytest.fixture(scope="module")
def gw(module_gateways, module_upstream):
    return module_gateways.start({
        "upstreams": [module_upstream.config()],
        "routes": [{"name": "echo", "path_prefix": "/echo/", "upstream": "up"}],
    })


def _keeps_alive(response) -> bool:
    return "close" not in ",".join(response.header_all("Connection")).lower()


@pytest.mark.parametrize("size", [0, 1, 300_000])
@pytest.mark.parametrize("frame", ["cl", "chunked", "close"])
def test_response_body_is_relayed_in_any_framing(gw, frame, size):
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("GET", f"/echo/resp?bytes={size}&frame={frame}&chunk=7000"))
        response = conn.read_response()
        assert response.status == 200
        assert len(response.body) == size
        assert hashlib.sha256(response.body).hexdigest() == pattern_sha256(size)
        if _keeps_alive(response):  # the gateway re-framed the body: the connection must still work
            conn.send(request_bytes("GET", "/echo/next"))
            assert conn.read_response().json()["target"] == "/echo/next"


def _chunks(size: int):
    for piece in pattern(size, 10_000):
        yield bytes(piece)


@pytest.mark.parametrize("size", [1, 300_000])
@pytest.mark.parametrize("frame", ["cl", "chunked"])
def test_request_body_is_relayed_in_any_framing(gw, frame, size):
    headers = {"Content-Length": str(size)} if frame == "cl" else {}
    response = httpx.post(gw.url("/echo/req"), content=_chunks(size), headers=headers, timeout=30)
    assert response.status_code == 200
    echo = response.json()
    assert echo["body_len"] == size
    assert echo["body_sha256"] == pattern_sha256(size)


def test_chunked_request_with_extensions_and_trailers(gw, module_upstream):
    body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 42\r\n\r\n"
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("POST", "/echo/trailers", headers=[("Transfer-Encoding", "chunked")], body=body))
        response = conn.read_response()
    assert response.status == 200
    assert response.json()["body"] == "hello world"


def test_head_response_has_headers_but_no_body(gw):
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("HEAD", "/echo/head?bytes=1000"))
        response = conn.read_response("HEAD")
        assert response.status == 200
        assert response.header("Content-Length") == "1000"
        assert response.body == b""
        conn.send(request_bytes("GET", "/echo/after-head"))
        assert conn.read_response().json()["target"] == "/echo/after-head"


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_status_has_no_body(gw, status):
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("GET", f"/echo/nobody?status={status}"))
        response = conn.read_response()
        assert response.status == status
        assert response.body == b""
        assert response.header("Transfer-Encoding") is None
        conn.send(request_bytes("GET", "/echo/after-nobody"))
        assert conn.read_response().json()["target"] == "/echo/after-nobody"


def test_interim_responses_are_relayed_before_the_final_one(gw):
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("GET", "/echo/hints?info=103&info=103"))
        response = conn.read_response()
    assert [status for status, _ in response.informational] == [103, 103]
    assert ("Link", "</style.css>; rel=preload") in response.informational[0][1]
    assert response.status == 200
    assert response.json()["target"] == "/echo/hints?info=103&info=103"
