"""Route header edits: set, add and remove, on the request sent upstream and on the response."""

import pytest

from tests.support.rawhttp import RawConnection, request_bytes


@pytest.fixture(scope="module")
def gw(module_gateways, module_upstream):
    return module_gateways.start({
        "upstreams": [module_upstream.config()],
        "routes": [
            {"name": "edit", "path_prefix": "/edit/", "upstream": "up",
             "request_headers": {"set": {"X-Set": "new"}, "add": {"X-Add": "added"}, "remove": ["x-remove"]},
             "response_headers": {"set": {"X-Resp-Set": "new"}, "add": {"X-Resp-Add": "added"},
                                  "remove": ["x-resp-remove"]}},
            {"name": "plain", "path_prefix": "/plain/", "upstream": "up"},
        ],
    })


def _exchange(gw, target: str, headers: list[tuple[str, str]]):
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("GET", target, headers=headers))
        response = conn.read_response()
    assert response.status == 200, response.body
    return response


def _upstream_header(response, name: str) -> list[str]:
    return [v for k, v in response.json()["headers"] if k.lower() == name.lower()]


CLIENT_HEADERS = [("X-Set", "old"), ("X-Add", "client"), ("X-Remove", "gone"), ("X-Other", "kept")]
RESPONSE_HEADERS = "hdr=X-Resp-Set:old&hdr=X-Resp-Add:upstream&hdr=X-Resp-Remove:gone&hdr=X-Resp-Other:kept"


def test_request_headers_are_edited(gw):
    response = _exchange(gw, "/edit/r", CLIENT_HEADERS)
    assert _upstream_header(response, "X-Set") == ["new"]
    assert sorted(_upstream_header(response, "X-Add")) == ["added", "client"]
    assert _upstream_header(response, "X-Remove") == []
    assert _upstream_header(response, "X-Other") == ["kept"]


def test_request_edits_apply_when_client_sent_none(gw):
    response = _exchange(gw, "/edit/r", [])
    assert _upstream_header(response, "X-Set") == ["new"]
    assert _upstream_header(response, "X-Add") == ["added"]


def test_response_headers_are_edited(gw):
    response = _exchange(gw, "/edit/r?" + RESPONSE_HEADERS, [])
    assert response.header_all("X-Resp-Set") == ["new"]
    assert sorted(response.header_all("X-Resp-Add")) == ["added", "upstream"]
    assert response.header_all("X-Resp-Remove") == []
    assert response.header_all("X-Resp-Other") == ["kept"]


def test_routes_without_edits_relay_headers_unchanged(gw):
    response = _exchange(gw, "/plain/r?" + RESPONSE_HEADERS, CLIENT_HEADERS)
    for name, value in CLIENT_HEADERS:
        assert _upstream_header(response, name) == [value]
    assert response.header_all("X-Resp-Set") == ["old"]
    assert response.header_all("X-Resp-Remove") == ["gone"]
