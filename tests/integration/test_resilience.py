"""Upstream resilience under load, with real upstream processes: a server killed mid-load costs no
client a request, is ejected, and takes requests again when it returns; the retry budget keeps
retries from snowballing; a request whose body was sent is never replayed."""

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support.file_server import FileServer
from tests.support.ports import free_port
from tests.support.wait import wait_stable, wait_until


def connect_errors(gw, server: FileServer) -> int:
    """What the gateway's metrics say: connects to ``server`` that failed, all workers together."""
    text = httpx.get(f"http://127.0.0.1:{gw.admin_port}/metrics", timeout=10).text
    pattern = r'fastgate_upstream_connect_errors_total\{[^}]*server="%s"[^}]*\} (\S+)' % re.escape(server.address)
    return int(sum(float(v) for v in re.findall(pattern, text)))


class SteadyLoad:
    """Four threads sending GET /page over keep-alive connections until stopped; every answer that
    is not 200 "hello" is a failure."""

    def __init__(self, gw) -> None:
        self.gw = gw
        self.sent = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(4)]

    def __enter__(self) -> "SteadyLoad":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self) -> None:
        with httpx.Client(base_url=self.gw.url(), timeout=10) as client:
            while not self._stop.is_set():
                try:
                    response = client.get("/page")
                    failure = None if response.status_code == 200 and response.text == "hello\n" else (
                        f"{response.status_code} {response.text[:80]!r}")
                except httpx.HTTPError as exc:
                    failure = repr(exc)
                with self._lock:
                    self.sent += 1
                    if failure:
                        self.failures.append(failure)

    def wait_more(self, n: int, what: str) -> None:
        target = self.sent + n
        wait_until(lambda: self.sent >= target, f"{n} more requests were answered ({what})", timeout_s=60)


def test_killing_one_of_three_servers_under_load(gateways, tmp_path):
    (tmp_path / "page").write_text("hello\n")
    servers = [FileServer(tmp_path, free_port()).start() for _ in range(3)]
    victim = servers[1]
    try:
        gw = gateways.start({"upstreams": [{"name": "up", "servers": [s.address for s in servers],
                                            "eject_after_failures": 3, "ejection_time": "2s"}],
                             "routes": [{"path_prefix": "/", "upstream": "up"}]}, workers=2)
        with SteadyLoad(gw) as load:
            load.wait_more(100, "before the kill")
            assert victim.served() > 0
            victim.kill()
            load.wait_more(300, "after the kill")
            wait_until(lambda: f"server {victim.address} ejected" in gw.log_text(), "the dead server is ejected")
            # while it is out, the gateway stops trying it: its connect errors stop growing under load
            before = load.sent
            wait_stable(lambda: connect_errors(gw, victim), settle_s=1.0)
            assert load.sent > before
            served = victim.served()
            victim.start()  # back on the same port
            wait_until(lambda: victim.served() > served, "the server that came back takes requests again",
                       timeout_s=60)
            load.wait_more(100, "after it came back")
        assert load.failures == [], f"{len(load.failures)} of {load.sent} requests failed, e.g. {load.failures[:5]}"
        assert "Traceback" not in gw.log_text()
    finally:
        for server in servers:
            server.kill()


def reached(servers, marker: str) -> int:
    return sum(len(s.requests_with(marker)) for s in servers)


def test_the_retry_budget_bounds_retries_when_every_server_fails(gateways, three_upstreams):
    """Thirty requests fail at once on every server. Without a budget each would be tried three
    times; with a budget of 20% only a few of them retry (3, or 20% of the requests in flight)."""
    gw = gateways.start({"upstreams": [{"name": "up", "servers": [s.address for s in three_upstreams],
                                        "retries": 2, "retry_budget": 0.2, "retry_backoff": "1ms",
                                        "eject_after_failures": 0}],
                         "routes": [{"path_prefix": "/", "upstream": "up"}]}, workers=1)
    for server in three_upstreams:
        server.answer("/failing", "delay=1&status=503")
    with ThreadPoolExecutor(30) as pool:
        statuses = list(pool.map(lambda i: httpx.get(gw.url("/failing?i=%d" % i), timeout=30).status_code,
                                 range(30)))
    assert statuses == [503] * 30
    attempts = reached(three_upstreams, "/failing")
    retried = attempts - 30
    assert 0 < retried <= 2 * (0.2 * 30 + 3), f"{retried} retries"  # at most 9 requests, two retries each


def test_a_post_whose_body_was_sent_is_never_replayed(gateways, three_upstreams):
    gw = gateways.start({"upstreams": [{"name": "up", "servers": [s.address for s in three_upstreams],
                                        "retries": 2, "retry_on_status": [500, 502, 503, 504]}],
                         "routes": [{"path_prefix": "/", "upstream": "up"}]}, workers=1)
    body = b"x" * 100_000
    assert httpx.post(gw.url("/reset?fail=reset"), content=body, timeout=30).status_code == 502
    assert httpx.post(gw.url("/busy?status=503"), content=body, timeout=30).status_code == 503
    for marker in ("/reset?", "/busy?"):
        seen = [r for s in three_upstreams for r in s.requests_with(marker)]
        assert len(seen) == 1 and seen[0].body_len == len(body), marker
