"""A server that cannot be connected to costs the client nothing when another server can take
the request: the request goes again, whole, to another server (connect_retries)."""

import httpx

from tests.support.ports import BlackholeListener, refused_port


def gateway(gateways, servers, **upstream):
    return gateways.start({"upstreams": [{"name": "up", "servers": servers, **upstream}],
                           "routes": [{"path_prefix": "/", "upstream": "up"}]})


def statuses(gw, n: int, body: bytes | None = None) -> list[int]:
    # a new client each time, so requests do not all ride one pooled upstream connection
    return [httpx.post(gw.url("/r?i=%d" % i), content=body).status_code if body
            else httpx.get(gw.url("/r?i=%d" % i)).status_code for i in range(n)]


def test_refused_server_is_skipped_for_any_method(gateways, upstream):
    gw = gateway(gateways, [f"127.0.0.1:{refused_port()}", upstream.address])
    assert statuses(gw, 10) == [200] * 10
    assert statuses(gw, 10, body=b"x" * 50_000) == [200] * 10  # the body goes again, whole
    posts = [r for r in upstream.requests_with("/r?") if r.method == "POST"]
    assert len(posts) == 10 and all(r.body_len == 50_000 for r in posts)


def test_without_retries_the_refused_server_answers_502(gateways, upstream):
    gw = gateway(gateways, [f"127.0.0.1:{refused_port()}", upstream.address], connect_retries=0)
    result = statuses(gw, 10)
    assert 502 in result and 200 in result


def test_connect_timeout_moves_on_to_another_server(gateways, upstream):
    with BlackholeListener() as hole:
        gw = gateway(gateways, [f"127.0.0.1:{hole.port}", upstream.address], connect_timeout="300ms")
        assert statuses(gw, 6) == [200] * 6
