"""Active health checks: one checker process per gateway probes the servers; a server whose health
path fails is taken out of every worker's balancing and put back when it recovers."""

import os
import signal
import time

import httpx

from tests.support.wait import wait_until

HEALTH = "/healthz"
WORK = "/work"


def _health(**fields) -> dict:
    return {"path": HEALTH, "interval": "400ms", "timeout": "300ms", "rise": 2, "fall": 2, **fields}


def _config(servers: list, **health) -> dict:
    return {"upstreams": [{"name": "up", "servers": servers, "health": _health(**health)}],
            "routes": [{"path_prefix": "/", "upstream": "up"}]}


def _probes(server) -> int:
    return len(server.requests_with(HEALTH))


def _work_reaching(server) -> int:
    return len(server.requests_with(WORK))


def _get(gw, i: int = 0) -> httpx.Response:
    """A request on a new connection (so the kernel spreads them over the workers)."""
    return httpx.get(gw.url(f"{WORK}?n={i}"), timeout=10)


def _batch_avoids(gw, server, n: int = 10) -> bool:
    """n requests, all answered 200, and none of them reached ``server``."""
    before = _work_reaching(server)
    statuses = [_get(gw, i).status_code for i in range(n)]
    return statuses == [200] * n and _work_reaching(server) == before


def _batch_reaches(gw, server, n: int = 10) -> bool:
    before = _work_reaching(server)
    statuses = [_get(gw, i).status_code for i in range(n)]
    return statuses == [200] * n and _work_reaching(server) > before


def _checker(gw) -> int:
    return wait_until(lambda: pids.pop() if len(pids := gw.checker_pids()) == 1 else None,
                      "exactly one health checker runs")


def test_failing_server_is_taken_out_and_put_back(gateways, three_upstreams):
    a, b, _ = three_upstreams
    gw = gateways.start(_config([a.address, b.address]), workers=2)
    wait_until(lambda: _batch_reaches(gw, b), "both servers take requests at first")

    b.answer(HEALTH, "status=503")
    wait_until(lambda: f"server {b.address} is down" in gw.log_text(), "the checker finds the server down")
    wait_until(lambda: _batch_avoids(gw, b), "every worker stops sending requests to it")
    probes = _probes(b)
    assert _batch_avoids(gw, b, 30)
    wait_until(lambda: _probes(b) > probes, "the server that is down is still probed")

    b.answer(HEALTH, None)
    wait_until(lambda: f"server {b.address} is up" in gw.log_text(), "the checker finds it up again")
    wait_until(lambda: _batch_reaches(gw, b), "it takes requests again")
    assert f"server {a.address} is down" not in gw.log_text()


def test_backup_takes_over_and_with_every_server_down_the_answer_is_a_503(gateways, three_upstreams):
    primary, spare, _ = three_upstreams
    gw = gateways.start(_config([primary.address, {"address": spare.address, "backup": True}]), workers=2)
    assert _batch_avoids(gw, spare)  # a backup takes nothing while the primary can

    primary.answer(HEALTH, "fail=reset")  # a broken connection fails a check like a bad status
    wait_until(lambda: _batch_reaches(gw, spare), "the backup takes over from the primary that is down")
    wait_until(lambda: _batch_avoids(gw, primary), "every worker (each sees the table on its tick) left the primary")

    spare.answer(HEALTH, "status=500")
    wait_until(lambda: [_get(gw, i).status_code for i in range(10)] == [503] * 10,
               "with both down every worker (each on its tick) answers 503 itself")
    before = _work_reaching(primary) + _work_reaching(spare)
    response = _get(gw)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "no upstream server available"
    assert _work_reaching(primary) + _work_reaching(spare) == before


def test_probes_do_not_multiply_with_workers(gateways, three_upstreams):
    one, four, _ = three_upstreams
    gw1 = gateways.start(_config([one.address], interval="250ms", timeout="200ms"), workers=1)
    gw4 = gateways.start(_config([four.address], interval="250ms", timeout="200ms"), workers=4)
    wait_until(lambda: len(gw4.worker_pids()) == 4, "4 workers run")
    assert len(gw4.checker_pids()) == 1 and len(gw1.checker_pids()) == 1
    wait_until(lambda: _probes(one) and _probes(four), "both gateways probe")

    start_one, start_four = _probes(one), _probes(four)
    time.sleep(4.0)  # both gateways run side by side, so machine load slows both alike
    got_one, got_four = _probes(one) - start_one, _probes(four) - start_four

    assert got_one >= 4, f"only {got_one} probes in 4 s at a 250 ms interval"
    assert abs(got_four - got_one) <= max(4, got_one // 4), (got_one, got_four)  # per worker would be 4x
    probe = four.requests_with(HEALTH)[-1]
    assert (probe.method, probe.target, probe.header("host"), probe.header("connection")) == \
        ("GET", HEALTH, four.address, "close")


def test_killed_checker_is_respawned_and_verdicts_survive(gateways, three_upstreams):
    a, b, _ = three_upstreams
    gw = gateways.start(_config([a.address, b.address]), workers=2)
    b.answer(HEALTH, "status=503")
    wait_until(lambda: _batch_avoids(gw, b), "the server that fails its checks is out")

    victim = _checker(gw)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: (pids := gw.checker_pids()) and victim not in pids, "a new checker replaces the killed one")
    replacement = _checker(gw)
    wait_until(lambda: f"health checker {victim} exited (killed by signal 9)" in gw.log_text(),
               "the master logs the checker's death")

    probes = _probes(b)
    wait_until(lambda: _probes(b) >= probes + 3, "the new checker probes")
    assert _batch_avoids(gw, b, 20)  # the server is still out: its verdict lives in shared memory
    assert gw.log_text().count(f"server {b.address} is up") == 0
    b.answer(HEALTH, None)
    wait_until(lambda: _batch_reaches(gw, b), "the new checker puts the recovered server back")
    assert gw.checker_pids() == {replacement}


def test_reload_keeps_checking_with_the_new_config(gateways, three_upstreams):
    a, b, c = three_upstreams
    gw = gateways.start(_config([a.address, b.address]), workers=2)
    b.answer(HEALTH, "status=503")
    wait_until(lambda: _batch_avoids(gw, b), "the server that fails its checks is out")
    before = _checker(gw)

    gw.write_config(_config([a.address, b.address, c.address], interval="300ms", timeout="200ms"))
    gw.signal(signal.SIGHUP)
    wait_until(lambda: "reloaded: generation 2" in gw.log_text(), "the reload is done")
    after = wait_until(lambda: (pids := gw.checker_pids()) and before not in pids and len(pids) == 1 and pids,
                       "one checker, for the new config, replaces the old one").pop()
    wait_until(lambda: _probes(c) >= 2, "the server the reload added is probed")
    assert _batch_avoids(gw, b, 20)  # the verdict carried over: no new rounds of failures needed
    wait_until(lambda: _batch_reaches(gw, c), "the added server takes requests")

    b.answer(HEALTH, None)
    wait_until(lambda: _batch_reaches(gw, b), "the checker of the new config puts the server back")
    assert gw.checker_pids() == {after}

    gw.write_config({"upstreams": [{"name": "up", "servers": [a.address, b.address]}],
                     "routes": [{"path_prefix": "/", "upstream": "up"}]})
    gw.signal(signal.SIGHUP)
    wait_until(lambda: "reloaded: generation 3" in gw.log_text(), "the second reload is done")
    wait_until(lambda: not gw.checker_pids(), "without health tables no checker runs")
    probes = _probes(a)
    time.sleep(1.0)  # more than two intervals of the last config
    assert _probes(a) == probes
