"""Load balancing across real upstream servers, through a gateway with two workers."""

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.wait import wait_until


def served_by(servers, marker: str) -> list[int]:
    return [len(s.requests_with(marker)) for s in servers]


def send(gw, paths: list[str], headers=None) -> list[int]:
    """Send the requests over a few keep-alive clients in parallel; return their statuses."""
    def run(chunk):
        with httpx.Client(base_url=gw.url(), headers=headers) as client:
            return [client.get(p).status_code for p in chunk]
    chunks = [paths[i::4] for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        return [status for statuses in pool.map(run, chunks) for status in statuses]


def gateway(gateways, servers, **upstream):
    entries = upstream.pop("entries", [s.address for s in servers])
    return gateways.start({"upstreams": [{"name": "up", "servers": entries, **upstream}],
                           "routes": [{"path_prefix": "/", "upstream": "up"}]}, workers=2)


def test_weighted_round_robin_follows_the_weights(gateways, three_upstreams):
    entries = [{"address": s.address, "weight": w} for s, w in zip(three_upstreams, (1, 2, 3))]
    gw = gateway(gateways, three_upstreams, balance="weighted_round_robin", entries=entries)
    assert set(send(gw, ["/w?i=%d" % i for i in range(3000)])) == {200}
    shares = [n / 3000 for n in served_by(three_upstreams, "/w?")]
    assert shares == pytest.approx([1 / 6, 2 / 6, 3 / 6], abs=0.03)


def test_consistent_hash_keeps_each_key_on_one_server(gateways, three_upstreams):
    gw = gateway(gateways, three_upstreams, balance="consistent_hash", hash_key="header:X-User")
    owners = {}
    for user in range(30):
        statuses = send(gw, ["/h?u=%d&i=%d" % (user, i) for i in range(8)], headers={"X-User": f"user-{user}"})
        assert set(statuses) == {200}
        counts = served_by(three_upstreams, "/h?u=%d&" % user)
        assert sorted(counts) == [0, 0, 8], f"user-{user} was spread over servers: {counts}"
        owners[user] = counts.index(8)
    assert len(set(owners.values())) == 3  # 30 keys do not all land on one server


def test_drained_servers_get_nothing_and_backups_only_when_needed(gateways, three_upstreams):
    a, b, spare = three_upstreams
    entries = [{"address": a.address, "drain": True}, b.address, {"address": spare.address, "backup": True}]
    gw = gateway(gateways, three_upstreams, entries=entries)
    assert set(send(gw, ["/d?i=%d" % i for i in range(40)])) == {200}
    assert served_by(three_upstreams, "/d?") == [0, 40, 0]

    entries[1] = {"address": b.address, "drain": True}
    gw.write_config({"upstreams": [{"name": "up", "servers": entries}],
                     "routes": [{"path_prefix": "/", "upstream": "up"}]})
    assert gw.cli("-s", "reload").returncode == 0
    wait_until(lambda: "generation 2 serving" in gw.log_text(), "the reload is done")
    assert set(send(gw, ["/e?i=%d" % i for i in range(40)])) == {200}
    assert served_by(three_upstreams, "/e?") == [0, 0, 40]


def test_no_server_left_answers_503_with_json(gateways, three_upstreams):
    entries = [{"address": s.address, "drain": True} for s in three_upstreams]
    gw = gateway(gateways, three_upstreams, entries=entries)
    response = httpx.get(gw.url("/x"))
    assert response.status_code == 503
    assert response.json()["error"] == "no upstream server available"


def test_least_connections_avoids_the_busy_servers(gateways, three_upstreams):
    """In-flight counts are per worker (as in Envoy, per thread): one worker sees all of them here."""
    gw = gateways.start({"upstreams": [{"name": "up", "servers": [s.address for s in three_upstreams],
                                        "balance": "least_connections"}],
                         "routes": [{"path_prefix": "/", "upstream": "up"}]}, workers=1)
    with ThreadPoolExecutor(2) as pool:
        slow = [pool.submit(httpx.get, gw.url("/slow?delay=2&i=%d" % i), timeout=10) for i in range(2)]
        wait_until(lambda: sum(served_by(three_upstreams, "/slow?")) == 2, "both slow requests are in flight")
        with httpx.Client(base_url=gw.url()) as client:
            quick = [client.get("/q?i=%d" % i).status_code for i in range(30)]
        assert [f.result().status_code for f in slow] == [200, 200]
    assert set(quick) == {200}
    busy = served_by(three_upstreams, "/slow?")
    assert sorted(busy) == [0, 1, 1]  # the second slow request avoided the first one's server
    quick_counts = served_by(three_upstreams, "/q?")
    assert quick_counts[busy.index(0)] == 30, f"quick requests went to busy servers: {quick_counts}"
