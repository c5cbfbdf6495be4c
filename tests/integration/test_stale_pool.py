"""A pooled upstream connection that the server closes as it is reused (its keep-alive
timeout racing ours) must not cost the client an error when the request can be replayed."""

import httpx


def test_bodiless_request_is_replayed_on_a_new_connection(gateways, upstream):
    gw = gateways.start({"upstreams": [upstream.config()],
                         "routes": [{"path_prefix": "/", "upstream": "up"}]})
    with httpx.Client(base_url=gw.url()) as client:
        assert client.get("/first").status_code == 200  # opens the pooled connection
        response = client.get("/second?fail=stale")
    assert response.status_code == 200
    assert response.json()["target"] == "/second?fail=stale"
    assert response.json()["index_on_conn"] == 0  # served on a new connection
    assert upstream.read(lambda s: s.accepted) == 2


def test_request_with_a_body_is_not_replayed(gateways, upstream):
    gw = gateways.start({"upstreams": [upstream.config()],
                         "routes": [{"path_prefix": "/", "upstream": "up"}]})
    with httpx.Client(base_url=gw.url()) as client:
        assert client.get("/first").status_code == 200
        response = client.post("/second?fail=stale", content=b"x" * 100)
    assert response.status_code == 502
    assert response.json()["status"] == 502
    assert len(upstream.requests_with("/second")) == 1
