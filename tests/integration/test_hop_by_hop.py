"""Hop-by-hop headers stop at the gateway, in both directions; end-to-end ones pass."""

import pytest

from tests.support.rawhttp import RawConnection, request_bytes

HOP_REQUEST_HEADERS = [
    ("Connection", "keep-alive, X-Hop-A"),
    ("X-Hop-A", "1"),
    ("Keep-Alive", "timeout=5"),
    ("TE", "trailers"),
    ("Trailer", "X-Checksum"),
    ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
    ("Proxy-Connection", "keep-alive"),
    ("Upgrade", "h2c"),
    ("X-End", "kept"),
]
HOP_RESPONSE = ("hdr=Connection:X-Resp-Hop&hdr=X-Resp-Hop:1&hdr=Keep-Alive:timeout%3D5"
                "&hdr=Proxy-Authenticate:Basic&hdr=Upgrade:h2c&hdr=Trailer:X-Checksum&hdr=X-End:kept")


@pytest.fixture(scope="module")
def gw(module_gateways, module_upstream):
    return module_gateways.start({
        "upstreams": [module_upstream.config()],
        "routes": [{"name": "echo", "path_prefix": "/echo/", "upstream": "up"}],
    })


def test_request_hop_by_hop_headers_are_not_forwarded(gw):
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("GET", "/echo/hop", headers=HOP_REQUEST_HEADERS))
        response = conn.read_response()
    assert response.status == 200
    received = {}
    for name, value in response.json()["headers"]:
        received.setdefault(name.lower(), []).append(value)
    for name in ("x-hop-a", "keep-alive", "te", "trailer", "proxy-authorization", "proxy-connection", "upgrade"):
        assert name not in received, (name, received)
    assert "x-hop-a" not in ",".join(received.get("connection", [])).lower()
    assert received["x-end"] == ["kept"]


def test_response_hop_by_hop_headers_are_not_relayed(gw):
    with RawConnection(gw.port) as conn:
        conn.send(request_bytes("GET", "/echo/hop?" + HOP_RESPONSE))
        response = conn.read_response()
        names = {name.lower() for name, _ in response.headers}
        for name in ("x-resp-hop", "keep-alive", "proxy-authenticate", "upgrade", "trailer"):
            assert name not in names, (name, response.headers)
        assert "x-resp-hop" not in ",".join(response.header_all("Connection")).lower()
        assert response.header_all("X-End") == ["kept"]
        # the client connection is the gateway's own: still usable for another request
        conn.send(request_bytes("GET", "/echo/again"))
        assert conn.read_response().status == 200
