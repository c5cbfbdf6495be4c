"""Retries after a request was sent: idempotent requests without a body go again to another
server when theirs fails; the attempt cap holds; other requests are never replayed. (A server
killed under load: test_resilience.py.)"""

import httpx
import pytest


def gateway(gateways, servers, **upstream):
    return gateways.start({"upstreams": [{"name": "up", "servers": [s.address for s in servers], **upstream}],
                           "routes": [{"path_prefix": "/", "upstream": "up"}]})


def reached(servers, marker: str) -> int:
    return sum(len(s.requests_with(marker)) for s in servers)


@pytest.mark.parametrize("retries", [1, 2])
def test_attempt_cap(gateways, three_upstreams, retries):
    gw = gateway(gateways, three_upstreams, retries=retries, retry_backoff="1ms")
    response = httpx.get(gw.url("/cap?fail=reset"))
    assert response.status_code == 502 and response.json()["status"] == 502
    assert reached(three_upstreams, "/cap?") == 1 + retries


def test_a_request_with_a_body_or_not_idempotent_is_sent_once(gateways, three_upstreams):
    gw = gateway(gateways, three_upstreams, retries=2)
    assert httpx.put(gw.url("/body?fail=reset"), content=b"x" * 100).status_code == 502
    assert httpx.post(gw.url("/post?fail=reset")).status_code == 502
    assert reached(three_upstreams, "/body?") == 1
    assert reached(three_upstreams, "/post?") == 1


def test_retry_on_status_relays_the_last_answer(gateways, three_upstreams):
    gw = gateway(gateways, three_upstreams, retries=2, retry_backoff="1ms")
    response = httpx.get(gw.url("/busy?status=503"))
    assert response.status_code == 503  # every server said 503: the last answer goes to the client
    assert reached(three_upstreams, "/busy?") == 3
    gw2 = gateway(gateways, three_upstreams, retries=2, retry_on_status=[])
    assert httpx.get(gw2.url("/once?status=503")).status_code == 503
    assert reached(three_upstreams, "/once?") == 1


def test_a_server_that_dies_after_its_head_is_retried_or_answered_502(gateways, three_upstreams):
    """Nothing of a failed response reached the client (its head was still held back): the
    request may go again, and when no attempt is left the client gets a JSON 502, not a bare close."""
    gw = gateway(gateways, three_upstreams, retries=1, retry_backoff="1ms")
    response = httpx.get(gw.url("/dies?fail=headonly"))
    assert response.status_code == 502 and response.json()["status"] == 502
    assert reached(three_upstreams, "/dies?") == 2
