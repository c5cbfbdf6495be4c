"""What the upstream is asked for: prefix_rewrite, host_rewrite, and otherwise the target with its path
in the normal form it was routed in (wire/target.py) and its query as it came."""

import pytest

from tests.support.rawhttp import RawConnection, request_bytes


@pytest.fixture(scope="module")
def gw(module_gateways, module_upstream):
    return module_gateways.start({
        "upstreams": [module_upstream.config()],
        "routes": [
            {"name": "strip", "path_prefix": "/api/", "prefix_rewrite": "/", "upstream": "up"},
            {"name": "swap", "path_prefix": "/v1/", "prefix_rewrite": "/v2/", "upstream": "up"},
            {"name": "hosted", "path_prefix": "/hosted/", "host_rewrite": "internal.svc", "upstream": "up"},
            {"name": "plain", "path_prefix": "/plain/", "upstream": "up"},
        ],
    })


def _forward(gw, target: str, host: str = "front.test") -> dict:
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("GET", target, host=host))
        response = conn.read_response()
    assert response.status == 200, response.body
    return response.json()


@pytest.mark.parametrize("sent, received", [
    ("/api/users?x=1", "/users?x=1"),
    ("/api/", "/"),
    ("/api/a/b/c", "/a/b/c"),
    ("/v1/items/7?q=a%20b", "/v2/items/7?q=a%20b"),
    ("/plain/%41b/./c?q=%2F&r", "/plain/Ab/c?q=%2F&r"),  # the path's normal form; the query as it came
    ("/api//x/%7Ey/../z?%41", "/x/z?%41"),               # normalised before the prefix rewrite
])
def test_target_sent_upstream(gw, sent, received):
    assert _forward(gw, sent)["target"] == received


def _header(echo: dict, name: str) -> list[str]:
    return [v for k, v in echo["headers"] if k.lower() == name.lower()]


def test_host_rewrite_replaces_host_and_keeps_it_in_forwarded_host(gw):
    echo = _forward(gw, "/hosted/x", host="front.test")
    assert _header(echo, "Host") == ["internal.svc"]
    assert _header(echo, "X-Forwarded-Host") == ["front.test"]


def test_client_host_is_kept_without_host_rewrite(gw):
    echo = _forward(gw, "/plain/x", host="front.test:8080")
    assert _header(echo, "Host") == ["front.test:8080"]
