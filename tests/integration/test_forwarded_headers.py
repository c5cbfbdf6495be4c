"""Headers the gateway adds: X-Forwarded-For/-Proto/-Host, and X-Request-ID kept or generated and echoed."""

import httpx
import pytest

from tests.support.checks import assert_json_error
from tests.support.rawhttp import RawConnection, request_bytes


@pytest.fixture(scope="module")
def gw(module_gateways, module_upstream):
    return module_gateways.start({
        "upstreams": [module_upstream.config()],
        "routes": [
            {"name": "echo", "path_prefix": "/echo/", "upstream": "up"},
            {"name": "no-id", "path_prefix": "/no-id/", "upstream": "up", "request_id": False},
        ],
    })


def _exchange(gw, target: str, headers: list[tuple[str, str]] = (), host: str = "front.test"):
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("GET", target, host=host, headers=list(headers)))
        return conn.read_response()


def _upstream_header(response, name: str) -> list[str]:
    return [v for k, v in response.json()["headers"] if k.lower() == name.lower()]


@pytest.mark.parametrize("sent, received", [
    ([], "127.0.0.1"),
    (["203.0.113.7"], "203.0.113.7, 127.0.0.1"),
    (["203.0.113.7, 198.51.100.2"], "203.0.113.7, 198.51.100.2, 127.0.0.1"),
    (["203.0.113.7", "198.51.100.2"], "203.0.113.7, 198.51.100.2, 127.0.0.1"),
], ids=["none", "one", "list", "two-fields"])
def test_forwarded_for_appends_the_client_address(gw, sent, received):
    response = _exchange(gw, "/echo/xff", [("X-Forwarded-For", v) for v in sent])
    assert response.status == 200
    assert [", ".join(_upstream_header(response, "X-Forwarded-For"))] == [received]


def test_forwarded_proto_and_host_are_set_not_trusted(gw):
    response = _exchange(gw, "/echo/xfp", [("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.test")],
                         host="front.test:8080")
    assert _upstream_header(response, "X-Forwarded-Proto") == ["http"]
    assert _upstream_header(response, "X-Forwarded-Host") == ["front.test:8080"]


def test_client_request_id_is_kept_and_echoed(gw):
    response = _exchange(gw, "/echo/rid", [("X-Request-ID", "client-id-123")])
    assert _upstream_header(response, "X-Request-ID") == ["client-id-123"]
    assert response.header_all("X-Request-ID") == ["client-id-123"]


def test_request_id_is_generated_unique_and_echoed(gw):
    ids = []
    for _ in range(3):
        response = _exchange(gw, "/echo/gen")
        sent_upstream = _upstream_header(response, "X-Request-ID")
        assert len(sent_upstream) == 1 and sent_upstream[0]
        assert response.header_all("X-Request-ID") == sent_upstream
        ids.append(sent_upstream[0])
    assert len(set(ids)) == 3


def test_request_id_can_be_turned_off(gw):
    response = _exchange(gw, "/no-id/x")
    assert response.status == 200
    assert _upstream_header(response, "X-Request-ID") == []
    assert response.header_all("X-Request-ID") == []


def test_error_answer_carries_the_request_id(gw):
    response = httpx.get(gw.url("/no-route"), headers={"X-Request-ID": "err-id-7"}, timeout=10)
    assert assert_json_error(response, 404)["request_id"] == "err-id-7"
