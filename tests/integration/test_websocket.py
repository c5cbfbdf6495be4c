"""WebSocket through the gateway: the upgrade is tunnelled after the upstream's 101, messages echo both ways."""

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect


@pytest.fixture
def gw(gateways, ws_upstream, upstream):
    return gateways.start({
        "upstreams": [ws_upstream.config("ws"), upstream.config("http")],
        "routes": [{"name": "ws", "path_prefix": "/ws/", "upstream": "ws"},
                   {"name": "plain", "path_prefix": "/plain/", "upstream": "http"}],
    })


def test_messages_echo_through_the_tunnel(gw):
    with connect(f"ws://127.0.0.1:{gw.port}/ws/chat", max_size=None, compression=None, open_timeout=10) as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
        big = bytes(range(256)) * 16 * 1024  # 4 MiB
        ws.send(big)
        assert ws.recv(timeout=30) == big
        for i in range(50):
            ws.send(f"message {i}")
        assert [ws.recv(timeout=10) for _ in range(50)] == [f"message {i}" for i in range(50)]
        ws.close()
    assert ws.close_code == 1000


def test_upstream_sees_the_upgrade_and_forwarding_headers(gw, ws_upstream):
    with connect(f"ws://127.0.0.1:{gw.port}/ws/headers?x=1", open_timeout=10) as ws:
        ws.send("ping")
        assert ws.recv(timeout=10) == "ping"
    handshake = ws_upstream.handshakes[-1]
    assert handshake["path"] == ["/ws/headers?x=1"]
    assert [v.lower() for v in handshake["upgrade"]] == ["websocket"]
    assert handshake["x-forwarded-for"] == ["127.0.0.1"]


def test_upgrade_refused_by_upstream_is_relayed(gw):
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{gw.port}/plain/ws?status=403", open_timeout=10)
    assert refused.value.response.status_code == 403
