"""HTTP/1.0 clients: served without Host, never sent chunked coding, connection closed after the answer."""

import hashlib
import subprocess

import pytest

from tests.support.rawhttp import RawConnection
from tests.support.upstream import pattern_sha256


@pytest.fixture(scope="module")
def gw(module_gateways, module_upstream):
    return module_gateways.start({
        "upstreams": [module_upstream.config()],
        "routes": [{"name": "echo", "path_prefix": "/echo/", "upstream": "up"}],
    })


def _split(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, body


@pytest.mark.parametrize("frame", ["cl", "chunked", "close"])
def test_http10_response_is_not_chunked_and_connection_closes(gw, frame):
    with RawConnection(gw.port) as conn:
        conn.send(f"GET /echo/ten?bytes=200000&frame={frame} HTTP/1.0\r\n\r\n".encode())
        status_line, headers, body = _split(conn.wait_closed())
    assert status_line.split()[1] == "200", status_line
    assert "chunked" not in headers.get("transfer-encoding", "").lower()
    if "content-length" in headers:
        assert int(headers["content-length"]) == 200000
    assert hashlib.sha256(body).hexdigest() == pattern_sha256(200000)


def test_curl_http10_upload_and_download(gw, module_upstream):
    result = subprocess.run(["curl", "-sS", "--http1.0", "--max-time", "30", "--data-binary", "@-",
                             "-H", "Content-Type: application/octet-stream", gw.url("/echo/curl10")],
                            input=b"x" * 10000, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert module_upstream.wait_request("/echo/curl10").body == b"x" * 10000
    assert b'"body_len": 10000' in result.stdout
