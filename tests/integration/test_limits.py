"""Limits and timeouts on client connections: 414, 431, 413, 408, and dropped stalled bodies and readers."""

import socket
import threading

import pytest

from tests.support.checks import assert_json_error
from tests.support.rawhttp import RawConnection, request_bytes

HTTP_LIMITS = {
    "max_request_line_size": "1KiB",
    "max_header_size": "4KiB",
    "max_headers": 20,
    "max_body_size": "64KiB",
    "header_timeout": "1s",
    "body_timeout": "1s",
    "send_timeout": "1s",
}


@pytest.fixture(scope="module")
def gw(module_gateways, module_upstream):
    return module_gateways.start({
        "http": HTTP_LIMITS,
        "upstreams": [module_upstream.config()],
        "routes": [{"name": "echo", "path_prefix": "/echo/", "upstream": "up"},
                   {"name": "tiny", "path_prefix": "/tiny/", "upstream": "up", "max_body_size": "16"},
                   {"name": "roomy", "path_prefix": "/roomy/", "upstream": "up", "max_body_size": "1MiB"}],
    })


HEAD_CASES = [
    # (method, target, headers, body, status); each target is unique, to look for it upstream
    pytest.param("GET", "/echo/line-" + "a" * 2000, [], b"", 414, id="request-line-too-long"),
    pytest.param("GET", "/echo/head-size", [(f"X-Big-{i}", "v" * 900) for i in range(6)], b"", 431,
                 id="head-too-large"),
    pytest.param("GET", "/echo/head-count", [(f"X-N-{i}", "v") for i in range(30)], b"", 431,
                 id="too-many-headers"),
    pytest.param("POST", "/echo/declared-big", [("Content-Length", "100000")], b"", 413,
                 id="declared-body-over-limit"),
    pytest.param("POST", "/tiny/over", [], b"x" * 100, 413, id="over-route-limit"),
]


@pytest.mark.parametrize("method, target, headers, body, status", HEAD_CASES)
def test_limit_answer(gw, module_upstream, method, target, headers, body, status):
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes(method, target, headers=headers, body=body))
        assert_json_error(conn.read_response(method), status)
    assert module_upstream.requests_with(target[:20]) == []


@pytest.mark.parametrize("path, size", [("/echo/fits", 60_000), ("/roomy/fits", 500_000)])
def test_body_within_limit_is_forwarded(gw, path, size):
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("POST", path, body=b"y" * size))
        response = conn.read_response()
    assert response.status == 200 and response.json()["body_len"] == size


def test_chunked_body_over_limit_gets_413_and_never_completes_upstream(gw, module_upstream):
    conn = RawConnection(gw.port)

    def send() -> None:
        try:
            conn.send(request_bytes("POST", "/echo/chunked-over", headers=[("Transfer-Encoding", "chunked")]))
            for _ in range(20):  # 160 KiB in 8 KiB chunks, over the 64 KiB limit
                conn.send(b"2000\r\n" + b"z" * 0x2000 + b"\r\n")
            conn.send(b"0\r\n\r\n")
        except OSError:
            pass  # the gateway may stop reading once it has refused the body

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        assert_json_error(conn.read_response("POST"), 413)
    finally:
        sender.join(10)
        conn.close()
    assert module_upstream.requests_with("/echo/chunked-over") == []


def test_slow_request_head_gets_408_and_close(gw, module_upstream):
    with RawConnection(gw.port) as conn:
        conn.send(b"GET /echo/slowloris HTTP/1.1\r\nHost: gw.test\r\nX-Drip: 1\r\n")
        assert_json_error(conn.read_response(), 408)
        assert conn.wait_closed() == b""
    assert module_upstream.requests_with("/echo/slowloris") == []


def test_stalled_request_body_closes_the_connection(gw, module_upstream):
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("POST", "/echo/stalled-body", headers=[("Content-Length", "1000")]) + b"x" * 10)
        conn.wait_closed()
    assert module_upstream.requests_with("/echo/stalled-body") == []


def test_client_that_stops_reading_is_dropped_after_send_timeout(gw, module_upstream):
    size = 64 * 1024 * 1024
    aborts_before = module_upstream.read(lambda s: s.write_aborts)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", gw.port))
    try:
        sock.sendall(request_bytes("GET", f"/echo/never-read?bytes={size}"))
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        # We stop reading. Once the gateway gives up on us it abandons the upstream response too.
        module_upstream.wait_for(lambda s: s.write_aborts > aborts_before,
                                 "the gateway drops the stalled client and its upstream response")
        received = 0
        try:
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass
        assert received < size, "the connection ended, but only after the whole body"
    finally:
        sock.close()
