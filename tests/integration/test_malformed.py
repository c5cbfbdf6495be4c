"""Malformed requests: 400 with a JSON body, the connection closes, and nothing of the rejected
request (nor the request pipelined behind it) reaches the upstream.
"""

import uuid

import httpx
import pytest

from tests.support.checks import assert_json_error
from tests.support.rawhttp import RawConnection, request_bytes


@pytest.fixture(scope="module")
def gw(module_gateways, module_upstream):
    return module_gateways.start({
        "upstreams": [module_upstream.config()],
        "routes": [{"name": "echo", "path_prefix": "/echo/", "upstream": "up"}],
    })


H = "Host: gw.test\r\n"
MALFORMED = [
    # "{m}" is replaced by a unique marker in the path
    pytest.param("POST /echo/{m} HTTP/1.1\r\n" + H + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "0\r\n\r\n", id="content-length-with-transfer-encoding"),
    pytest.param("POST /echo/{m} HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
                 id="chunk-size-not-hex"),
    pytest.param("POST /echo/{m} HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
                 id="chunk-data-without-crlf"),
    pytest.param("POST /echo/{m} HTTP/1.1\r\n" + H + "Transfer-Encoding: gzip\r\n\r\nabc",
                 id="transfer-encoding-not-chunked"),
    pytest.param("POST /echo/{m} HTTP/1.1\r\n" + H + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
                 id="conflicting-content-lengths"),
    pytest.param("POST /echo/{m} HTTP/1.1\r\n" + H + "Content-Length: five\r\n\r\nhello", id="content-length-not-a-number"),
    pytest.param("POST /echo/{m} HTTP/1.1\r\n" + H + "Content-Length: +5\r\n\r\nhello", id="content-length-with-sign"),
    pytest.param("GET /echo/{m} HTTP/1.1\r\n" + H + "X-Bad: a\x00b\r\n\r\n", id="nul-in-header-value"),
    pytest.param("GET /echo/{m} HTTP/1.1\r\n" + H + "X-Bad : v\r\n\r\n", id="space-before-colon"),
    pytest.param("GET /echo/{m} HTTP/1.1\r\n" + H + "X\x01Bad: v\r\n\r\n", id="control-char-in-header-name"),
    pytest.param("GET /echo/{m} HTTP/1.1\r\n" + H + "X-Folded: a\r\n  b\r\n\r\n", id="obsolete-line-folding"),
    pytest.param("GET /echo/{m} HTTP/1.1\r\n" + H + "NoColonHere\r\n\r\n", id="header-without-colon"),
    pytest.param("G(T /echo/{m} HTTP/1.1\r\n" + H + "\r\n", id="bad-method-token"),
    pytest.param("GET /echo/{m} x HTTP/1.1\r\n" + H + "\r\n", id="space-in-target"),
    pytest.param("GET http://elsewhere.test/echo/{m} HTTP/1.1\r\n" + H + "\r\n", id="absolute-form-foreign-host"),
    pytest.param("GET /echo/{m} HTTP/1.1\r\n\r\n", id="http11-without-host"),
    pytest.param("GET /echo/{m} HTTP/1.1\r\n" + H + "Host: other.test\r\n\r\n", id="two-hosts"),
]


@pytest.mark.parametrize("template", MALFORMED)
def test_malformed_request_is_refused_and_closed_and_never_forwarded(gw, module_upstream, template):
    marker = f"bad-{uuid.uuid4().hex[:12]}"
    bad = template.format(m=marker).encode("latin-1")
    pipelined = request_bytes("GET", f"/echo/{marker}-pipelined")
    with RawConnection(gw.port) as conn:
        conn.send(bad + pipelined)
        assert_json_error(conn.read_response(), 400)
        rest = conn.wait_closed()
    assert b"HTTP/1.1" not in rest, "the pipelined request behind a rejected one must not be answered"
    # the gateway still serves, and by now has handled (or not) everything sent before
    sentinel = httpx.get(gw.url(f"/echo/{marker}-sentinel"), timeout=10)
    assert sentinel.status_code == 200
    assert [r.target for r in module_upstream.requests_with(marker)] == [f"/echo/{marker}-sentinel"]


def test_absolute_form_naming_the_host_is_served(gw, module_upstream):
    with RawConnection(gw.port) as conn:
        conn.send(b"GET http://gw.test/echo/absolute?q=1 HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        response = conn.read_response()
    assert response.status == 200
    assert response.json()["target"] == "/echo/absolute?q=1"
