"""A worker killed with SIGKILL under load is replaced, and its listening slot keeps serving."""

import os
import signal
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.load import Load, Probe
from tests.support.wait import wait_until

FRESH_REQUESTS = 40
"""New connections after the kill: the kernel spreads them over both slots (all on one: 2**-39)."""


def _get_echo(gw, i: int) -> int:
    response = httpx.get(gw.url(f"/echo/after-kill-{i}"), headers={"Host": "respawn.test"}, timeout=20)
    return response.status_code


@pytest.mark.slow
def test_killed_worker_is_respawned_and_serving_resumes(gateways, upstream):
    gw = gateways.start({
        "upstreams": [upstream.config()],
        "routes": [{"name": "echo", "path_prefix": "/echo/", "upstream": "up"},
                   {"name": "hello", "path": "/hello", "respond": {"body": "hello"}}],
    }, workers=2)
    before = wait_until(lambda: pids if len(pids := gw.worker_pids()) == 2 else None, "2 workers run")
    probes = [Probe("GET", "/echo/load", lambda r: r.status_code == 200),
              Probe("GET", "/hello", lambda r: r.status_code == 200 and r.text == "hello")]
    with Load(gw.port, probes) as load:
        wait_until(lambda: load.ok >= 20, "the load is running")
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        # Connections made while the slot has no worker wait in its accept queue (the master
        # keeps the socket) and are served by the replacement.
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda i: _get_echo(gw, i), range(FRESH_REQUESTS)))
        after = wait_until(lambda: pids if len(pids := gw.worker_pids()) == 2 and victim not in pids else None,
                           "a new worker replaces the killed one")
        served = load.ok
        wait_until(lambda: load.ok >= served + 50, "the load is served after the respawn")
        load.stop()
    assert statuses == [200] * FRESH_REQUESTS
    assert gw.alive()
    assert len(after - before) == 1, (before, after)
    assert [_get_echo(gw, i) for i in range(FRESH_REQUESTS)] == [200] * FRESH_REQUESTS
