"""Retries after a request was sent: idempotent requests without a body go again to another
server when theirs fails; the attempt cap holds; other requests are never replayed."""

import signal
import subprocess
import sys
import threading

import httpx
import pytest

from tests.support.ports import free_port
from tests.support.wait import wait_until


def gateway(gateways, servers, **upstream):
    return gateways.start({"upstreams": [{"name": "up", "servers": [s.address for s in servers], **upstream}],
                           "routes": [{"path_prefix": "/", "upstream": "up"}]})


def answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/page").status_code == 200
    except httpx.HTTPError:
        return False


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


def test_killing_one_of_three_servers_under_load_costs_no_request(gateways, tmp_path):
    (tmp_path / "page").write_text("hello\n")
    ports = [free_port() for _ in range(3)]
    servers = [subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for port in ports]
    try:
        for port in ports:
            wait_until(lambda: answers(port), f"http.server on {port} answers")
        gw = gateways.start({"upstreams": [{"name": "up", "servers": [f"127.0.0.1:{p}" for p in ports]}],
                             "routes": [{"path_prefix": "/", "upstream": "up"}]}, workers=2)
        failures: list[str] = []
        done = threading.Event()
        counts = [0]

        def load() -> None:
            with httpx.Client(base_url=gw.url(), timeout=10) as client:
                while not done.is_set():
                    try:
                        response = client.get("/page")
                        if response.status_code != 200 or response.text != "hello\n":
                            failures.append(f"{response.status_code} {response.text[:80]!r}")
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))
                    counts[0] += 1

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        wait_until(lambda: counts[0] >= 100, "the load runs")
        servers[1].send_signal(signal.SIGKILL)
        servers[1].wait()
        before = counts[0]
        wait_until(lambda: counts[0] >= before + 300, "the load goes on after the kill")
        done.set()
        for t in threads:
            t.join(20)
        assert failures == [], f"{len(failures)} of {counts[0]} requests failed, e.g. {failures[:5]}"
    finally:
        for server in servers:
            server.kill()
            server.wait()


def test_a_server_that_dies_after_its_head_is_retried_or_answered_502(gateways, three_upstreams):
    """Nothing of a failed response reached the client (its head was still held back): the
    request may go again, and when no attempt is left the client gets a JSON 502, not a bare close."""
    gw = gateway(gateways, three_upstreams, retries=1, retry_backoff="1ms")
    response = httpx.get(gw.url("/dies?fail=headonly"))
    assert response.status_code == 502 and response.json()["status"] == 502
    assert reached(three_upstreams, "/dies?") == 2
