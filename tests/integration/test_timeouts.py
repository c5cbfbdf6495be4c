"""Per-route timeouts and attempt cap: a route's connect_timeout, try_timeout, total_timeout,
idle_timeout and retries override its upstream's; the total timeout bounds a request across
all its attempts and back-offs."""

import time
from contextlib import ExitStack

import httpx
import pytest

from tests.support.checks import assert_json_error
from tests.support.ports import BlackholeListener
from tests.support.upstream import Upstream


@pytest.fixture
def five_upstreams():
    with ExitStack() as stack:
        yield [stack.enter_context(Upstream()) for _ in range(5)]


def reached(servers, marker: str) -> int:
    return sum(len(s.requests_with(marker)) for s in servers)


def gateway(gateways, servers, routes, **upstream):
    # short upstream timeouts keep the worker's clock tick fine (a quarter of the shortest)
    fields = {"connect_timeout": "400ms", "read_timeout": "10s", "retry_backoff": "1ms", **upstream}
    return gateways.start({"upstreams": [{"name": "up", "servers": [s.address for s in servers], **fields}],
                           "routes": routes})


def timed_get(gw, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.get(gw.url(path), timeout=30)
    return response, time.monotonic() - started


def test_total_timeout_is_per_request_not_per_attempt(gateways, three_upstreams):
    """Each server would answer after 5s; the route's 1s total ends the request after its first
    attempt: no retry starts with no time left, so the client gets 504 within about a second."""
    gw = gateway(gateways, three_upstreams, [{"path_prefix": "/", "upstream": "up", "total_timeout": "1s"}],
                 retries=2)
    response, elapsed = timed_get(gw, "/slow?delay=5")
    assert_json_error(response, 504)
    assert elapsed < 2.5  # per attempt it would be three attempts of a second each
    assert reached(three_upstreams, "/slow?") == 1


def test_the_total_timeout_bounds_the_retries(gateways, five_upstreams):
    """Each try times out after 300ms and goes to the next server; the 1s total stops the series
    before every one of the five servers was tried."""
    gw = gateway(gateways, five_upstreams, [{"path_prefix": "/", "upstream": "up", "try_timeout": "300ms",
                                             "total_timeout": "1s", "retries": 10}])
    response, elapsed = timed_get(gw, "/slow?delay=5")
    assert_json_error(response, 504)
    assert 2 <= reached(five_upstreams, "/slow?") <= 4
    assert elapsed < 3.0


def test_try_timeout_moves_on_to_another_server(gateways, three_upstreams):
    """The first server is slow, the others answer: the slow try is abandoned and retried."""
    slow, *_ = three_upstreams
    slow.answer("/t", "delay=5")
    gw = gateway(gateways, three_upstreams, [{"path_prefix": "/", "upstream": "up", "try_timeout": "300ms"}],
                 retries=1)
    statuses = [timed_get(gw, "/t?i=%d" % i) for i in range(6)]
    assert [r.status_code for r, _ in statuses] == [200] * 6
    assert all(elapsed < 3.0 for _, elapsed in statuses)
    assert len(slow.requests_with("/t")) >= 1  # it was tried, and given up on


def test_a_route_sets_its_own_attempt_cap(gateways, three_upstreams):
    gw = gateway(gateways, three_upstreams, [
        {"path_prefix": "/none/", "upstream": "up", "retries": 0},
        {"path_prefix": "/two/", "upstream": "up", "retries": 2},
        {"path_prefix": "/", "upstream": "up"},
    ], retries=1)
    for prefix, attempts in (("/none/", 1), ("/two/", 3), ("/default/", 2)):
        assert_json_error(httpx.get(gw.url(prefix + "x?fail=reset"), timeout=30), 502)
        assert reached(three_upstreams, prefix) == attempts, prefix


def test_a_route_sets_its_own_connect_and_idle_timeouts(gateways, upstream):
    with BlackholeListener() as hole:
        gw = gateways.start({
            "upstreams": [{"name": "up", "servers": [f"127.0.0.1:{hole.port}", upstream.address],
                           "connect_timeout": "20s", "read_timeout": "20s"}],
            "routes": [{"path_prefix": "/", "upstream": "up", "connect_timeout": "300ms", "idle_timeout": "500ms"}]})
        for i in range(4):  # every other request is sent to the black hole first
            response, elapsed = timed_get(gw, "/c?i=%d" % i)
            assert response.status_code == 200 and elapsed < 5.0
        response, elapsed = timed_get(gw, "/idle?delay=3")
        assert_json_error(response, 504)
        assert elapsed < 2.5
