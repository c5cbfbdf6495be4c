"""Circuit breaking per upstream: max_connections with a bounded queue of pending requests, and the
error-ratio breaker that answers 503 at once without contacting the upstream, half-opens and closes."""

from concurrent.futures import ThreadPoolExecutor, as_completed

import httpx

from tests.support.checks import assert_json_error
from tests.support.wait import wait_until


def gateway(gateways, upstream, **fields):
    # a short connect_timeout keeps the worker's clock tick (the breaker's pace) fine; it also bounds
    # the wait for a connection under max_connections, so the tests that queue set a longer one
    return gateways.start({"upstreams": [upstream.config(**{"connect_timeout": "400ms", **fields})],
                           "routes": [{"path_prefix": "/", "upstream": "up"}]}, workers=1)


def get(gw, path: str) -> httpx.Response:
    return httpx.get(gw.url(path), timeout=30)


def test_requests_wait_for_one_of_max_connections(gateways, upstream):
    gw = gateway(gateways, upstream, max_connections=1, max_pending_requests=10, connect_timeout="20s")
    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(lambda i: get(gw, "/q?delay=0.2&i=%d" % i).status_code, range(6)))
    assert statuses == [200] * 6
    assert upstream.read(lambda s: s.accepted) == 1  # all six went over one connection, in turn


def test_past_max_pending_requests_the_answer_is_503_at_once_and_capacity_comes_back(gateways, upstream):
    gw = gateway(gateways, upstream, max_connections=1, max_pending_requests=1, connect_timeout="20s")
    with ThreadPoolExecutor(3) as pool:
        slow = pool.submit(get, gw, "/slow?delay=4")
        upstream.wait_request("/slow")
        burst = [pool.submit(get, gw, "/burst?i=%d" % i) for i in range(2)]
        refused = next(as_completed(burst, timeout=30))  # one waits, the other is refused
        assert not slow.done()  # the refusal came while the connection was still busy
        assert_json_error(refused.result(), 503)["error"] == "upstream connection limit reached"
        assert slow.result().status_code == 200
        assert sorted(f.result().status_code for f in burst) == [200, 503]
    assert len(upstream.requests_with("/burst")) == 1
    with ThreadPoolExecutor(2) as pool:  # two at a time fit: one on the connection, one waiting
        assert list(pool.map(lambda i: get(gw, "/after?i=%d" % i).status_code, range(8))) == [200] * 8
    assert upstream.read(lambda s: s.accepted) == 1


def test_a_burst_past_the_limits_is_refused_at_once_and_the_rest_is_served(gateways, upstream):
    gw = gateway(gateways, upstream, max_connections=2, max_pending_requests=4, connect_timeout="20s")
    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(lambda i: get(gw, "/burst?delay=2&i=%d" % i).status_code, range(20)))
    assert set(statuses) <= {200, 503}
    assert statuses.count(200) >= 6 and statuses.count(503) >= 1
    assert len(upstream.requests_with("/burst")) == statuses.count(200)  # a refusal never reached it
    assert upstream.read(lambda s: s.accepted) <= 2
    with ThreadPoolExecutor(4) as pool:  # and it recovers
        assert list(pool.map(lambda i: get(gw, "/after?i=%d" % i).status_code, range(8))) == [200] * 8


def test_a_request_waits_for_a_connection_no_longer_than_its_connect_timeout(gateways, upstream):
    gw = gateway(gateways, upstream, max_connections=1, max_pending_requests=5, connect_timeout="500ms")
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(get, gw, "/slow?delay=4")
        upstream.wait_request("/slow")
        waited = get(gw, "/waits")
        assert not slow.done()
        assert assert_json_error(waited, 503)["error"] == "upstream connection limit reached"
        assert slow.result().status_code == 200
    assert not upstream.requests_with("/waits")


def test_with_no_queue_a_request_needing_a_connection_past_the_limit_gets_503(gateways, upstream):
    gw = gateway(gateways, upstream, max_connections=2, max_pending_requests=0)
    with ThreadPoolExecutor(3) as pool:
        slow = [pool.submit(get, gw, "/slow?delay=3&i=%d" % i) for i in range(2)]
        upstream.wait_for(lambda s: len([r for r in s.requests if "/slow?" in r.target]) == 2, "both slow ones arrived")
        refused = get(gw, "/third")
        assert not any(f.done() for f in slow)
        assert_json_error(refused, 503)
        assert [f.result().status_code for f in slow] == [200, 200]
    assert get(gw, "/fourth").status_code == 200
    assert not upstream.requests_with("/third")


def test_the_breaker_opens_refuses_without_contacting_the_upstream_half_opens_and_closes(gateways, upstream):
    gw = gateway(gateways, upstream, retries=0, breaker_error_ratio=0.5, breaker_min_requests=5,
                 breaker_window="10s", breaker_open_time="2s")
    upstream.answer("/api", "status=503")
    for _ in range(6):
        assert get(gw, "/api").status_code == 503  # the upstream's own answers
    wait_until(lambda: "circuit breaker open" in gw.log_text(), "the breaker opens")
    seen = len(upstream.requests_with("/api"))
    refusals = [get(gw, "/api") for _ in range(5)]
    for response in refusals:
        assert assert_json_error(response, 503)["error"] == "upstream circuit breaker open"
        assert 1 <= int(response.headers["retry-after"]) <= 2
    assert len(upstream.requests_with("/api")) == seen  # not one reached the upstream

    # still failing when it half-opens: a probe fails, it opens again
    wait_until(lambda: "half-open" in gw.log_text(), "the breaker half-opens")
    wait_until(lambda: get(gw, "/api").status_code == 503 and "a probe request failed" in gw.log_text(),
               "a failed probe opens the breaker again")
    assert len(upstream.requests_with("/api")) > seen

    upstream.answer("/api", None)  # healthy again
    wait_until(lambda: get(gw, "/api").status_code == 200, "a probe gets through and succeeds")
    wait_until(lambda: "circuit breaker closed" in gw.log_text(), "the breaker closes")
    assert [get(gw, "/api?i=%d" % i).status_code for i in range(10)] == [200] * 10
    assert "Traceback" not in gw.log_text()
