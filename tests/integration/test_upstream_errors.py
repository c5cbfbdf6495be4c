"""Upstream failures become 502 or 504 with a JSON body; a response broken midway is never completed."""

import h11
import httpx
import pytest

from tests.support.checks import assert_json_error
from tests.support.ports import BlackholeListener, refused_port
from tests.support.rawhttp import RawConnection, request_bytes


@pytest.fixture(scope="module")
def blackhole():
    with BlackholeListener() as listener:
        yield listener


@pytest.fixture(scope="module")
def gw(module_gateways, module_upstream, blackhole):
    return module_gateways.start({
        "upstreams": [
            module_upstream.config("up", read_timeout="500ms"),
            {"name": "refused", "servers": [f"127.0.0.1:{refused_port()}"]},
            {"name": "blackhole", "servers": [f"127.0.0.1:{blackhole.port}"], "connect_timeout": "300ms"},
            module_upstream.config("total", read_timeout="1s", total_timeout="1s"),
        ],
        "routes": [
            {"name": "echo", "path_prefix": "/echo/", "upstream": "up"},
            {"name": "refused", "path_prefix": "/refused/", "upstream": "refused"},
            {"name": "blackhole", "path_prefix": "/blackhole/", "upstream": "blackhole"},
            {"name": "total", "path_prefix": "/total/", "upstream": "total"},
        ],
    })


@pytest.mark.parametrize("path, status", [
    pytest.param("/refused/x", 502, id="connection-refused"),
    pytest.param("/echo/x?fail=reset", 502, id="reset-before-answer"),
    pytest.param("/echo/x?fail=close", 502, id="closed-before-answer"),
    pytest.param("/echo/x?fail=garbage", 502, id="garbage-answer"),
    pytest.param("/echo/x?delay=3", 504, id="read-timeout"),
    pytest.param("/blackhole/x", 504, id="connect-timeout"),
    pytest.param("/total/x?drip=3", 504, id="total-timeout"),
])
def test_upstream_failure_answer(gw, path, status):
    response = httpx.get(gw.url(path), headers={"X-Request-ID": "upstream-err-1"}, timeout=30)
    assert assert_json_error(response, status)["request_id"] == "upstream-err-1"
    # the gateway goes on serving
    assert httpx.get(gw.url("/echo/fine"), timeout=10).status_code == 200


@pytest.mark.parametrize("frame", ["cl", "chunked"])
def test_response_broken_midway_is_not_completed(gw, frame):
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("GET", f"/echo/broken?bytes=400000&frame={frame}&fail=midbody"))
        with pytest.raises((h11.RemoteProtocolError, ConnectionError)):
            conn.read_response()
