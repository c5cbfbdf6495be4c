"""The admin listener: health, readiness, metrics summed over workers, status, config, token."""

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support.metrics import admin_get, scrape, settled, value
from tests.support.ports import refused_port
from tests.support.rawhttp import RawConnection
from tests.support.redis_server import RedisServer
from tests.support.wait import wait_until


def _fresh_connections(gw, path: str, count: int) -> list[int]:
    """``count`` GETs, each on its own connection, so the kernel spreads them over the workers."""
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda _: httpx.get(gw.url(path), timeout=10).status_code, range(count)))


def _config(upstream) -> dict:
    return {"upstreams": [upstream.config(), {"name": "dead", "servers": [f"127.0.0.1:{refused_port()}"],
                                               "eject_after_failures": 0, "connect_retries": 0}],
            "routes": [{"name": "api", "path_prefix": "/api/", "upstream": "up"},
                       {"name": "dead", "path_prefix": "/dead/", "upstream": "dead"},
                       {"name": "hello", "path": "/hello", "respond": {"body": "hi"}}]}


def test_health_and_readiness(gateways):
    gw = gateways.start({}, workers=2)
    assert admin_get(gw, "/healthz").json() == {"status": "alive"}
    ready = admin_get(gw, "/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert admin_get(gw, "/nope").status_code == 404
    assert httpx.post(f"http://127.0.0.1:{gw.admin_port}/metrics").status_code == 405


def test_an_admin_request_under_way_when_the_worker_exits_is_answered(gateways):
    """A probe that connected just before the last worker exits gets its answer, not a reset."""
    gw = gateways.start({}, workers=1)
    with RawConnection(gw.admin_port) as probe:
        probe.send(b"GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n")
        assert probe.read_response().status == 200  # the worker has accepted the connection
        probe.send(b"GET /readyz HTTP/1.1\r\n")  # a request under way: not complete yet
        time.sleep(0.2)
        gw.signal(signal.SIGQUIT)  # no client connection to drain: the worker exits at once
        time.sleep(0.3)  # the worker is on its way out; the rest of the request arrives now
        probe.send(b"Host: admin\r\n\r\n")
        response = probe.read_response()
    assert response.status == 503 and response.json() == {"status": "draining"}
    assert gw.wait_exit() == 0


def test_readyz_turns_503_while_draining(gateways, upstream):
    gw = gateways.start(_config(upstream), workers=1)
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(httpx.get, gw.url("/api/slow?delay=2"), timeout=10)
        upstream.wait_request("/api/slow")
        gw.signal(signal.SIGQUIT)
        wait_until(lambda: admin_get(gw, "/readyz").status_code == 503, "readyz says draining")
        assert admin_get(gw, "/readyz").json() == {"status": "draining"}
        assert slow.result().status_code == 200  # the request in flight still finished
    assert gw.wait_exit() == 0


def test_metrics_count_every_request_across_workers(gateways, upstream):
    gw = gateways.start(_config(upstream), workers=2)
    before = scrape(gw)
    assert _fresh_connections(gw, "/api/x", 40) == [200] * 40
    assert _fresh_connections(gw, "/hello", 10) == [200] * 10
    assert _fresh_connections(gw, "/missing", 5) == [404] * 5
    assert _fresh_connections(gw, "/dead/x", 3) == [502] * 3
    samples = settled(gw)
    served_by = {worker["pid"] for worker in admin_get(gw, "/status").json()["workers"] if worker["requests"]}
    assert len(served_by) == 2, "both workers served requests, so the numbers below are sums"
    requests = "fastgate_requests_total"
    assert value(samples, requests, route="api", method="GET", status="2xx") == 40
    assert value(samples, requests, route="hello", method="GET", status="2xx") == 10
    assert value(samples, requests, route="(none)", method="GET", status="4xx") == 5
    assert value(samples, requests, route="dead", method="GET", status="5xx") == 3
    assert value(samples, "fastgate_request_duration_seconds_count", route="api") == 40
    assert value(samples, "fastgate_request_duration_seconds_bucket", route="api", le="+Inf") == 40
    assert value(samples, "fastgate_request_duration_seconds_sum", route="api") > 0
    assert value(samples, "fastgate_upstream_responses_total", upstream="up", server=upstream.address,
                  status="2xx") == 40
    assert value(samples, "fastgate_upstream_duration_seconds_count", upstream="up") == 40
    dead = [key for key in samples if key[0] == "fastgate_upstream_connect_errors_total"
            and ("upstream", "dead") in key[1]]
    assert [samples[key] for key in dead] == [3]
    # a refused connect is a connect error, not a connection opened
    dead_server = dict(dead[0][1])["server"]
    assert value(samples, "fastgate_upstream_connections_opened_total", upstream="dead", server=dead_server) == 0
    assert value(samples, "fastgate_upstream_connections_opened_total", upstream="up", server=upstream.address) >= 1
    accepted = value(samples, "fastgate_connections_accepted_total", protocol="http1")
    assert accepted - value(before, "fastgate_connections_accepted_total", protocol="http1") >= 58
    assert value(samples, "fastgate_request_bytes_total", route="hello") >= 10 * len("GET /hello HTTP/1.1\r\n\r\n")
    assert value(samples, "fastgate_response_bytes_total", route="hello") >= 10 * len("hi")
    # labels come from the config, never from request paths
    assert not [key for key in samples if any("missing" in text for _, text in key[1])]


def test_counts_survive_a_worker_crash_and_a_reload(gateways, upstream):
    gw = gateways.start(_config(upstream), workers=2)
    assert _fresh_connections(gw, "/hello", 20) == [200] * 20
    samples = settled(gw)
    assert value(samples, "fastgate_requests_total", route="hello", method="GET", status="2xx") == 20
    # instance-wide counters are exported from 0, so that rate() and alerts see the first increase
    assert samples[("fastgate_worker_restarts_total", frozenset())] == 0
    assert samples[("fastgate_ratelimit_fallback_total", frozenset())] == 0
    victim = sorted(gw.worker_pids())[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(gw.worker_pids()) == 2 and victim not in gw.worker_pids(), "the worker is respawned")
    samples = scrape(gw)
    assert value(samples, "fastgate_requests_total", route="hello", method="GET", status="2xx") == 20
    assert value(samples, "fastgate_worker_restarts_total") == 1

    gw.cli("-s", "reload")
    wait_until(lambda: value(scrape(gw), "fastgate_reloads_total", result="ok") == 1, "the reload is counted")
    assert _fresh_connections(gw, "/hello", 5) == [200] * 5
    samples = settled(gw)
    assert value(samples, "fastgate_requests_total", route="hello", method="GET", status="2xx") == 25


def test_status_document(gateways, upstream):
    gw = gateways.start(_config(upstream), workers=2)
    assert _fresh_connections(gw, "/api/a", 6) == [200] * 6
    assert _fresh_connections(gw, "/missing", 2) == [404] * 2
    settled(gw)
    status = admin_get(gw, "/status").json()
    assert status["state"] == "ready"
    assert status["master_pid"] == gw.pid
    routes = {r["route"]: r for r in status["routes"]}
    assert routes["api"]["requests"] == 6 and routes["api"]["status"]["2xx"] == 6
    assert routes["(none)"]["status"]["4xx"] == 2
    assert 0 < routes["api"]["latency_s"]["p50"] <= routes["api"]["latency_s"]["p99"]
    servers = {s["server"]: s for u in status["upstreams"] if u["upstream"] == "up" for s in u["servers"]}
    assert servers[upstream.address]["responses"]["2xx"] == 6
    # a server that served nothing yet is listed too, and shown healthy: gauges are kept at 0
    idle = [s for u in status["upstreams"] if u["upstream"] == "dead" for s in u["servers"]
            if s["server"] != "(runtime)"]  # the block of servers added at run time (none here)
    assert [(s["health_down"], s["ejected"], sum(s["responses"].values())) for s in idle] == [(0, 0, 0)]
    dead_server = frozenset({"upstream": "dead", "server": idle[0]["server"]}.items())
    assert scrape(gw)[("fastgate_upstream_health_down", dead_server)] == 0
    assert sorted(w["pid"] for w in status["workers"]) == sorted(gw.worker_pids())
    assert sum(w["requests"] for w in status["workers"]) == status["requests"] >= 8
    # each worker's own numbers add up to the instance's
    for c in ("2xx", "4xx", "5xx"):
        assert sum(w["status"][c] for w in status["workers"]) == status["status"][c]
    for w in status["workers"]:
        assert w["redis_breaker_open"] is False and w["ratelimit_decisions"]["limited"] == 0
        assert 0 < w["latency_s"]["p50"] <= w["latency_s"]["p99"] if w["requests"] else w["latency_s"]["p99"] == 0


def test_token_guards_everything_but_health(gateways, upstream):
    gw = gateways.start({**_config(upstream), "admin": {"token": "s3cret"}}, workers=1)
    assert admin_get(gw, "/healthz").status_code == 200
    assert admin_get(gw, "/readyz").status_code == 200
    for path in ("/metrics", "/status", "/status.html", "/config"):
        refused = admin_get(gw, path)
        assert refused.status_code == 401, path
        assert refused.headers["www-authenticate"] == "Bearer"
        assert admin_get(gw, path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert admin_get(gw, path, headers={"Authorization": "Bearer s3cret"}).status_code == 200, path
    assert admin_get(gw, "/status?token=s3cret").status_code == 200


def test_config_is_shown_with_secrets_redacted(gateways, upstream):
    gw = gateways.start({**_config(upstream), "admin": {"token": "s3cret"}}, workers=1)
    shown = admin_get(gw, "/config", headers={"Authorization": "Bearer s3cret"})
    config = shown.json()
    assert config["admin"]["token"] == "<redacted>"
    assert "s3cret" not in shown.text
    assert [r["name"] for r in config["routes"]][:3] == ["api", "dead", "hello"]
    assert config["upstreams"][0]["servers"] == [upstream.address]


def test_malformed_admin_request_gets_400(gateways):
    gw = gateways.start({}, workers=1)
    import socket

    with socket.create_connection(("127.0.0.1", gw.admin_port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n")
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert sock.recv(4096) == b""  # and the connection is closed
    assert admin_get(gw, "/healthz").status_code == 200  # the worker is fine


def test_admin_listener_can_be_turned_off(gateways):
    gw = gateways.start({"admin": {"address": ""}}, workers=1)
    assert httpx.get(gw.url("/")).status_code in (200, 404)
    try:
        admin_get(gw, "/healthz")
    except httpx.ConnectError:
        pass
    else:
        raise AssertionError("the admin listener answered although it is off")


def test_metrics_off(gateways):
    gw = gateways.start({"admin": {"metrics": False}}, workers=1)
    assert admin_get(gw, "/metrics").status_code == 404
    assert json.loads(admin_get(gw, "/status").text)["metrics"] is False


def test_scrape_is_consistent_under_load(gateways, upstream):
    """Scrapes while requests run: counters never go down between scrapes."""
    gw = gateways.start(_config(upstream), workers=2)
    seen = []
    with ThreadPoolExecutor(3) as pool:
        load = [pool.submit(_fresh_connections, gw, "/hello", 60) for _ in range(2)]
        while not all(f.done() for f in load):
            seen.append(value(scrape(gw), "fastgate_requests_total", route="hello", method="GET", status="2xx"))
            time.sleep(0.02)
        assert all(f.result() == [200] * 60 for f in load)
    seen.append(value(settled(gw), "fastgate_requests_total", route="hello", method="GET", status="2xx"))
    assert seen == sorted(seen)
    assert seen[-1] == 120


def test_rate_limit_decisions_and_redis_round_trips_are_counted(gateways):
    with RedisServer() as redis:
        gw = gateways.start({"routes": [{"name": "otp", "path": "/otp", "respond": {"body": "sent"},
                                         "limits": [{"key": ["ip"], "rate": "3/1m"}]}],
                             "ratelimit": {"store": "redis", "redis": {"url": redis.url, "timeout": "500ms"}}},
                            workers=1)
        assert [httpx.get(gw.url("/otp")).status_code for _ in range(5)] == [200, 200, 200, 429, 429]
        loads = value(settled(gw), "fastgate_ratelimit_redis_script_loads_total")
        redis.cli("SCRIPT", "FLUSH")  # the next check meets NOSCRIPT and loads the script again
        assert httpx.get(gw.url("/otp")).status_code == 429
        samples = settled(gw)
        shown = admin_get(gw, "/status").json()["ratelimit"]["redis"]
    assert value(samples, "fastgate_ratelimit_redis_script_loads_total") == loads + 1
    assert value(samples, "fastgate_ratelimit_decisions_total", route="otp", outcome="allowed") == 3
    assert value(samples, "fastgate_ratelimit_decisions_total", route="otp", outcome="limited") == 3
    assert value(samples, "fastgate_requests_total", route="otp", method="GET", status="4xx") == 3
    trips = value(samples, "fastgate_ratelimit_redis_round_trips_total")
    assert trips >= 6
    # every round trip was answered: the latency histogram holds each, all under the 500 ms deadline
    assert value(samples, "fastgate_ratelimit_redis_round_trip_seconds_count") == trips
    assert value(samples, "fastgate_ratelimit_redis_round_trip_seconds_bucket", le="0.25") == trips
    assert 0 < value(samples, "fastgate_ratelimit_redis_round_trip_seconds_sum") < trips * 0.25
    assert value(samples, "fastgate_ratelimit_redis_timeouts_total") == 0
    assert value(samples, "fastgate_ratelimit_breaker_open") == 0
    # /status shows the same round trips, with percentiles from the histogram
    assert shown["round_trips"] == trips and shown["timeouts"] == 0 and shown["breaker_open_workers"] == 0
    assert 0 < shown["round_trip_s"]["p50"] <= shown["round_trip_s"]["p90"] <= shown["round_trip_s"]["p99"] <= 0.25
