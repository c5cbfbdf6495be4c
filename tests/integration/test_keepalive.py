"""Keep-alive on both sides: client connections reused and timed out, the upstream pool reused and bounded.

Upstream reuse is measured where it happens: the upstream server counts the
TCP connections it accepted. One worker, so every request shares one pool.
"""

import subprocess

import httpx
import pytest

from tests.support.rawhttp import RawConnection, request_bytes


def _start(gateways, upstream, http: dict | None = None, **pool: object):
    return gateways.start({
        "http": http or {},
        "upstreams": [upstream.config(**pool)],
        "routes": [{"name": "echo", "path_prefix": "/echo/", "upstream": "up"},
                   {"name": "hello", "path": "/hello", "respond": {"body": "hello"}}],
    }, workers=1)


def test_curl_reuses_one_client_connection(gateways, upstream):
    gw = _start(gateways, upstream)
    urls = [gw.url(p) for p in ("/hello", "/echo/1", "/hello", "/echo/2", "/echo/3")]
    outputs = [arg for url in urls for arg in ("-o", "/dev/null", url)]
    result = subprocess.run(["curl", "-sS", "--max-time", "30", "-w", "%{http_code} %{num_connects}\\n", *outputs],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert [code for code, _ in lines] == ["200"] * len(urls)
    assert sum(int(n) for _, n in lines) == 1, "curl had to open more than one connection"


@pytest.mark.parametrize("client", ["one-connection", "new-connection-each"])
def test_upstream_connection_is_reused_across_requests(gateways, upstream, client):
    gw = _start(gateways, upstream)
    headers = {"Host": "pool.test"} | ({"Connection": "close"} if client == "new-connection-each" else {})
    with httpx.Client(timeout=10, headers=headers) as http:
        conns = [http.get(gw.url(f"/echo/{i}")).headers["x-upstream-conn"] for i in range(20)]
    assert upstream.read(lambda s: s.accepted) == 1, upstream.summary()
    assert len(set(conns)) == 1


def test_upstream_connection_retires_after_max_requests(gateways, upstream):
    gw = _start(gateways, upstream, max_requests_per_connection=3)
    with httpx.Client(timeout=10) as http:
        for i in range(9):
            assert http.get(gw.url(f"/echo/{i}")).status_code == 200
    assert upstream.read(lambda s: s.accepted) == 3, upstream.summary()
    per_conn = {}
    for request in upstream.requests_with("/echo/"):
        per_conn[request.conn_id] = per_conn.get(request.conn_id, 0) + 1
    assert sorted(per_conn.values()) == [3, 3, 3]


def test_idle_upstream_connection_is_closed_after_idle_timeout(gateways, upstream):
    gw = _start(gateways, upstream, idle_timeout="300ms")
    assert httpx.get(gw.url("/echo/once"), timeout=10).status_code == 200
    upstream.wait_for(lambda s: s.closed == 1, "the gateway closes the idle pooled connection")
    assert httpx.get(gw.url("/echo/again"), timeout=10).status_code == 200
    assert upstream.read(lambda s: s.accepted) == 2


def test_pooled_connection_closed_by_upstream_is_not_used(gateways, upstream):
    gw = _start(gateways, upstream)
    with httpx.Client(timeout=10) as http:
        assert http.get(gw.url("/echo/first?idle_close=1")).status_code == 200
        upstream.wait_for(lambda s: s.idle_closed == 1 and s.closed == 1,
                          "the upstream closes its idle keep-alive connection")
        statuses = [http.get(gw.url(f"/echo/after-{i}")).status_code for i in range(5)]
    assert statuses == [200] * 5
    assert upstream.read(lambda s: s.accepted) == 2


def test_idle_client_connection_is_closed_after_keepalive_timeout(gateways, upstream):
    gw = _start(gateways, upstream, http={"keepalive_timeout": "1s"})
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("GET", "/hello"))
        assert conn.read_response().status == 200
        assert conn.wait_closed() == b""


def test_client_connection_close_is_honoured(gateways, upstream):
    gw = _start(gateways, upstream)
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("GET", "/echo/bye", headers=[("Connection", "close")]))
        response = conn.read_response()
        assert response.status == 200
        assert "close" in ",".join(response.header_all("Connection")).lower()
        assert conn.wait_closed() == b""
