"""Stopping: graceful (SIGQUIT, `-s quit`) finishes in-flight requests; fast (SIGTERM, SIGINT, `-s stop`) does not wait."""

import signal
import socket
import threading

import httpx
import pytest

from tests.support.wait import wait_until


def _start(gateways, upstream):
    return gateways.start({
        "server": {"drain_timeout": "20s"},
        "upstreams": [upstream.config()],
        "routes": [{"name": "echo", "path_prefix": "/echo/", "upstream": "up"}],
    }, workers=2)


def _in_flight(gw, path: str) -> tuple[threading.Thread, list]:
    """A request sent from a thread; its response (or exception) lands in the returned list."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(httpx.get(gw.url(path), headers={"Host": "stop.test"}, timeout=90))
        except httpx.HTTPError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _stop(gw, how: str) -> None:
    if how.startswith("-s"):
        result = gw.cli(*how.split())
        assert result.returncode == 0, result.stdout + result.stderr
    else:
        gw.signal(getattr(signal, how))


def _assert_everything_gone(gw) -> None:
    wait_until(lambda: not gw.group_pids(), f"every gateway process exits (left: {gw.group_pids()})")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", gw.port), timeout=5).close()


@pytest.mark.parametrize("how", ["SIGQUIT", "-s quit"])
def test_graceful_stop_finishes_in_flight_request(gateways, upstream, how):
    gw = _start(gateways, upstream)
    thread, outcome = _in_flight(gw, "/echo/slow?delay=1.5")
    upstream.wait_request("/echo/slow")
    _stop(gw, how)
    assert gw.wait_exit(30) == 0
    thread.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], httpx.Response), outcome
    assert outcome[0].status_code == 200 and outcome[0].json()["target"] == "/echo/slow?delay=1.5"
    _assert_everything_gone(gw)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "-s stop"])
def test_fast_stop_does_not_wait_for_in_flight_request(gateways, upstream, how):
    gw = _start(gateways, upstream)
    thread, outcome = _in_flight(gw, "/echo/stuck?delay=60")
    upstream.wait_request("/echo/stuck")
    _stop(gw, how)
    # The upstream would answer after 60 s; a fast stop exits long before that.
    assert gw.wait_exit(20) == 0
    _assert_everything_gone(gw)
    thread.join(30)
    assert outcome and not (isinstance(outcome[0], httpx.Response) and outcome[0].status_code == 200), outcome
