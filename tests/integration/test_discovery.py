"""DNS service discovery: an upstream's servers follow what its name resolves to in a real DNS server
(dnslib, started by the test) while requests flow; no request fails when servers come and go."""

import threading
import time

import httpx
import pytest

from tests.support.dns_server import DnsServer
from tests.support.metrics import scrape, value
from tests.support.upstream import Upstream
from tests.support.wait import wait_until

NAME = "api.test"
SRV_NAME = "_http._tcp.api.test"


@pytest.fixture
def dns():
    with DnsServer(ttl=1) as server:
        yield server


@pytest.fixture
def loopback_upstreams():
    """Three servers on one port, on 127.0.0.2, .3 and .4: they differ by address only, as A records do."""
    first = Upstream(host="127.0.0.2").start()
    servers = [first]
    try:
        servers += [Upstream(host=f"127.0.0.{i}", port=first.port).start() for i in (3, 4)]
        yield servers
    finally:
        for server in servers:
            server.stop()


def _config(dns, balance: str = "round_robin", **discovery) -> dict:
    return {"upstreams": [{"name": "up", "balance": balance, "discovery": {"name": NAME, "interval": "1s", "timeout": "500ms",
                                                         "resolvers": [f"127.0.0.1:{dns.port}"], **discovery}}],
            "routes": [{"path_prefix": "/", "upstream": "up"}]}


def _reached(server, marker: str = "/work") -> int:
    return len(server.requests_with(marker))


def _batch(gw, n: int = 12) -> list[int]:
    """n requests on new connections (spread over the workers); their statuses."""
    return [httpx.get(gw.url(f"/work?n={i}"), timeout=10).status_code for i in range(n)]


def _serves_only(gw, wanted: list, unwanted: list) -> bool:
    """A batch of requests all answered 200, each of ``wanted`` reached, none of ``unwanted``."""
    before = {id(s): _reached(s) for s in wanted + unwanted}
    statuses = _batch(gw)
    return statuses == [200] * len(statuses) and (all(_reached(s) > before[id(s)] for s in wanted)
            and all(_reached(s) == before[id(s)] for s in unwanted))


class _Load:
    """Requests in a thread, some slow (in flight while servers change), bounded in count and time."""

    def __init__(self, gw) -> None:
        self.gw = gw
        self.statuses: list = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            for i in range(2000):
                if self.stopping.is_set():
                    return
                query = "delay=0.3" if i % 5 == 0 else "n=%d" % i
                try:
                    self.statuses.append(client.get(self.gw.url(f"/load?{query}")).status_code)
                except httpx.HTTPError as exc:
                    self.statuses.append(repr(exc))

    def __enter__(self) -> "_Load":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join(30)


def test_a_records_are_followed_while_requests_flow(gateways, dns, loopback_upstreams):
    a, b, c = loopback_upstreams
    dns.set(NAME, "A", [a.host, b.host])
    gw = gateways.start(_config(dns, port=a.port), workers=2)
    wait_until(lambda: _serves_only(gw, [a, b], [c]), "the servers of the A records take requests")

    with _Load(gw) as load:
        dns.set(NAME, "A", [b.host, c.host])  # a leaves, c comes
        wait_until(lambda: _serves_only(gw, [b, c], [a]), "every worker follows the new records")
        dns.set(NAME, "A", [a.host, b.host, c.host])
        wait_until(lambda: _serves_only(gw, [a, b, c], []), "a server that comes back takes requests again")
        time.sleep(0.5)
    assert len(load.statuses) > 10
    assert set(load.statuses) == {200}, [s for s in load.statuses if s != 200][:5]
    assert f"upstream up now has 2 servers from A {NAME}: {b.address} {c.address}" in gw.log_text()
    samples = scrape(gw)
    assert value(samples, "fastgate_upstream_servers", upstream="up") == 3
    assert value(samples, "fastgate_upstream_responses_total", upstream="up", server="(runtime)", status="2xx") > 0
    assert "Traceback" not in gw.log_text()


def test_a_request_in_flight_to_a_server_that_left_finishes(gateways, dns, loopback_upstreams):
    a, b, _ = loopback_upstreams
    dns.set(NAME, "A", [a.host])
    gw = gateways.start(_config(dns, port=a.port), workers=1)
    wait_until(lambda: _serves_only(gw, [a], [b]), "the only server takes requests")
    with httpx.Client(timeout=10) as client:
        result: list = []
        slow = threading.Thread(target=lambda: result.append(client.get(gw.url("/slow?delay=3"))))
        slow.start()
        a.wait_request("/slow")
        dns.set(NAME, "A", [b.host])
        wait_until(lambda: _serves_only(gw, [b], [a]), "the new server takes every new request")
        slow.join(10)
    assert result and result[0].status_code == 200 and result[0].json()["target"] == "/slow?delay=3"


def test_a_failed_resolution_keeps_the_last_servers(gateways, dns, loopback_upstreams):
    a, b, _ = loopback_upstreams
    dns.set(NAME, "A", [a.host, b.host])
    gw = gateways.start(_config(dns, port=a.port), workers=2)
    wait_until(lambda: _serves_only(gw, [a, b], []), "both servers take requests")

    dns.fail(True)
    wait_until(lambda: "upstream up keeps its 2 servers" in gw.log_text(), "the failure is logged")
    wait_until(lambda: value(scrape(gw), "fastgate_discovery_resolutions_total", upstream="up", outcome="failed") >= 2,
               "failures count in /metrics")
    assert _serves_only(gw, [a, b], [])

    dns.fail(False)
    dns.set(NAME, "A", [])  # NXDOMAIN: no name, which does not empty the upstream either
    failed = value(scrape(gw), "fastgate_discovery_resolutions_total", upstream="up", outcome="failed")
    wait_until(lambda: value(scrape(gw), "fastgate_discovery_resolutions_total", upstream="up", outcome="failed")
               > failed, "NXDOMAIN counts as a failure")
    assert _serves_only(gw, [a, b], [])
    assert value(scrape(gw), "fastgate_discovery_resolutions_total", upstream="up", outcome="ok") >= 1


def test_srv_records_give_ports_weights_and_backups(gateways, dns, three_upstreams):
    heavy, light, spare = three_upstreams
    dns.set(SRV_NAME, "SRV", [(10, 3, heavy.port, "a.api.test."), (10, 1, light.port, "a.api.test."),
                              (20, 1, spare.port, "a.api.test.")])
    dns.set("a.api.test", "A", ["127.0.0.1"])
    gw = gateways.start(_config(dns, "weighted_round_robin", name=SRV_NAME, type="SRV", port=0), workers=1)
    wait_until(lambda: _serves_only(gw, [heavy, light], [spare]), "the primaries take requests, not the backup")

    before = (_reached(heavy), _reached(light))
    assert _batch(gw, 40) == [200] * 40
    assert (_reached(heavy) - before[0], _reached(light) - before[1]) == (30, 10)  # SRV weights 3:1

    dns.set(SRV_NAME, "SRV", [(20, 1, spare.port, "a.api.test.")])
    wait_until(lambda: _serves_only(gw, [spare], [heavy, light]), "with the primaries gone the backup serves")
