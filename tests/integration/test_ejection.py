"""Passive health: a server that keeps failing is ejected (clients see no error meanwhile),
gets no traffic while out, and is put back when its ejection ends."""

import time

import httpx

from tests.support.file_server import FileServer
from tests.support.ports import free_port
from tests.support.wait import wait_until


def test_failing_server_is_ejected_and_put_back(gateways, tmp_path):
    (tmp_path / "page").write_text("hello\n")
    servers = [FileServer(tmp_path, free_port()).start() for _ in range(3)]
    try:
        gw = gateways.start({"upstreams": [{"name": "up", "servers": [f"127.0.0.1:{s.port}" for s in servers],
                                            "eject_after_failures": 2, "ejection_time": "3s"}],
                             "routes": [{"path_prefix": "/", "upstream": "up"}]}, workers=1)
        get = lambda: httpx.get(gw.url("/page"), timeout=10)  # noqa: E731 (a new connection each time)
        servers[1].kill()
        assert [get().status_code for _ in range(12)] == [200] * 12  # connect retries hide the dead server
        wait_until(lambda: "ejected" in gw.log_text(), "the dead server is ejected")
        servers[1].start()  # back on the same port, but still ejected
        before = servers[1].served()
        ejected_at = time.monotonic()
        assert [get().status_code for _ in range(12)] == [200] * 12
        if time.monotonic() - ejected_at < 2.5:  # all twelve were sent while it was out
            assert servers[1].served() == before
        wait_until(lambda: "back after ejection" in gw.log_text(), "the ejection ends")
        assert [get().status_code for _ in range(12)] == [200] * 12
        assert servers[1].served() > before  # it takes requests again
    finally:
        for server in servers:
            server.kill()
