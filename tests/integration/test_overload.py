"""Overload: past max_concurrent_requests in flight, requests are answered 503 at once, not queued."""

from concurrent.futures import ThreadPoolExecutor

import httpx


def test_requests_past_the_limit_get_503_at_once(gateways, upstream):
    gw = gateways.start({"upstreams": [upstream.config(max_concurrent_requests=2)],
                         "routes": [{"path_prefix": "/", "upstream": "up"}]}, workers=1)
    with ThreadPoolExecutor(2) as pool:
        slow = [pool.submit(httpx.get, gw.url("/slow?delay=2&i=%d" % i), timeout=10) for i in range(2)]
        upstream.wait_for(lambda s: len([r for r in s.requests if "/slow?" in r.target]) == 2,
                          "both slow requests reached the upstream")
        refused = httpx.get(gw.url("/more"), timeout=10)
        assert refused.status_code == 503
        assert refused.json()["error"] == "upstream overloaded"
        assert refused.elapsed.total_seconds() < 1.0  # answered at once, not after the slow ones
        assert [f.result().status_code for f in slow] == [200, 200]
    assert httpx.get(gw.url("/after")).status_code == 200  # capacity is back
    assert not upstream.requests_with("/more")
