"""Reload (SIGHUP and `fastgate -s reload`): new config served, nothing lost, bad config ignored."""

import json
import signal

import httpx
import pytest

from tests.support.load import Load, Probe
from tests.support.wait import wait_until

RELOADS = 10


def _config(upstream, generation: str, gen_upstream: str | None = None) -> dict:
    gen_route = {"name": "gen", "path": "/gen", "respond": {"body": generation}}
    if gen_upstream is not None:
        gen_route = {"name": "gen", "path": "/gen", "upstream": gen_upstream}
    return {
        "upstreams": [upstream.config()],
        "routes": [gen_route, {"name": "echo", "path_prefix": "/echo/", "upstream": "up"}],
    }


def _generation(gw) -> str:
    """The body of /gen on a new connection."""
    return httpx.get(gw.url("/gen"), headers={"Host": "reload.test"}, timeout=10).text


def _echo_ok(path: str, body: bytes = b""):
    def check(response: httpx.Response) -> bool:
        if response.status_code != 200:
            return False
        echo = response.json()
        return echo["target"] == path and echo["body_len"] == len(body)
    return check


PROBES = [
    Probe("GET", "/gen", lambda r: r.status_code == 200 and r.text.startswith("gen-")),
    Probe("GET", "/echo/get", _echo_ok("/echo/get")),
    Probe("POST", "/echo/post", _echo_ok("/echo/post", b"p" * 30000), body=b"p" * 30000),
]


@pytest.mark.slow
def test_reloads_under_load_lose_no_request(gateways, upstream):
    gw = gateways.start(_config(upstream, "gen-0"), workers=2)
    with Load(gw.port, PROBES) as load:
        wait_until(lambda: load.ok >= 20, "the load is running")
        for i in range(1, RELOADS + 1):
            gw.write_config(_config(upstream, f"gen-{i}"))
            if i % 2:
                gw.signal(signal.SIGHUP)
            else:
                result = gw.cli("-s", "reload")
                assert result.returncode == 0, result.stdout + result.stderr
            wait_until(lambda: all(_generation(gw) == f"gen-{i}" for _ in range(4)),
                       f"reload {i} is served on new connections")
            served = load.ok
            wait_until(lambda: load.ok >= served + 20, f"the load goes on after reload {i}")
        result = load.stop()
    assert result.failures == [], (f"{len(result.failures)} of {result.ok + len(result.failures)} requests "
                                   f"failed across {RELOADS} reloads, e.g.:\n" + "\n".join(result.failures[:10]))
    assert gw.alive()
    wait_until(lambda: len(gw.worker_pids()) == 2,
               f"old worker generations exit after draining (workers now {gw.worker_pids()})")


def test_bad_config_on_reload_is_logged_and_old_config_keeps_serving(gateways, upstream):
    gw = gateways.start(_config(upstream, "gen-before"), workers=2)
    workers = wait_until(lambda: pids if len(pids := gw.worker_pids()) == 2 else None, "2 workers run")

    gw.write_config(_config(upstream, "gen-bad", gen_upstream="missing"))
    gw.signal(signal.SIGHUP)
    wait_until(lambda: "routes[0].upstream" in gw.log_text(), "the master logs what is wrong with the new config")

    assert gw.alive()
    assert gw.worker_pids() == workers, "a bad config must not replace the workers"
    assert [_generation(gw) for _ in range(4)] == ["gen-before"] * 4
    echo = httpx.get(gw.url("/echo/still"), headers={"Host": "reload.test"}, timeout=10)
    assert echo.status_code == 200 and json.loads(echo.content)["target"] == "/echo/still"

    gw.write_config(_config(upstream, "gen-after"))
    gw.signal(signal.SIGHUP)
    wait_until(lambda: _generation(gw) == "gen-after", "a later good config is loaded")
