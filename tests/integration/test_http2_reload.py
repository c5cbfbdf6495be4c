"""HTTP/2 through reloads: h2load (nghttp2's load client, several streams per connection) keeps
connections busy while the master reloads ten times; the old workers' connections end with GOAWAY
(first with the largest stream id, then with the last one served) and no request h2load sent is lost.

h2load does not open a new connection after a GOAWAY: it counts the requests it had not sent yet as
failed, without sending them (h2load_http2_session.cc: submit_request gives up once
nghttp2_session_check_request_allowed says no). So h2load runs again and again through the reloads,
and each run must show every request it started done and answered 2xx: "S started, S done, S
succeeded", with its only failures the requests never sent.
"""

import re
import signal
import subprocess
import threading

import pytest

from tests.support.certs import self_signed_certificate
from tests.support.gateway import Gateway
from tests.support.wait import wait_until

RELOADS = 10
REQUESTS_LINE = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                           r"(\d+) errored, (\d+) timeout")


class ReloadGateway(Gateway):
    """Two workers; the listener serves h2c with prior knowledge, or TLS with ALPN h2."""

    def __init__(self, directory, config: dict, tls: bool) -> None:
        super().__init__(directory, config, workers=2)
        self.tls = tls

    def full_config(self, config: dict) -> dict:
        full = super().full_config(config)
        listener = {**full["listeners"][0], "http2": True}
        if self.tls:
            cert, key = self_signed_certificate(str(self.dir))
            listener = {**full["listeners"][0], "tls": {"certificates": [{"cert": cert, "key": key}]}}
        full["listeners"] = [listener]
        return full

    def answers_ready(self) -> bool:
        if not self.tls:
            return super().answers_ready()
        result = subprocess.run(["curl", "-sk", "--max-time", "2", f"https://127.0.0.1:{self.port}/__fastgate_ready"],
                                capture_output=True, timeout=10)
        return result.stdout == b"ready"


def run_h2load(url: str, outputs: list, stop: threading.Event) -> None:
    while not stop.is_set():
        result = subprocess.run(["h2load", "-n", "1000", "-c", "4", "-m", "4", url],
                                capture_output=True, text=True, timeout=120)
        outputs.append(result.stdout + result.stderr)


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason="open: now and then one stream in a few thousand through ten reloads ends "
                   "without success on h2load's side (no RST_STREAM or refusal from the gateway logged); not found yet")
@pytest.mark.parametrize("transport", ["h2c", "tls"])
def test_h2load_through_ten_reloads_loses_no_request(gateways, upstream, transport):
    config = {"upstreams": [upstream.config()], "routes": [{"name": "echo", "path_prefix": "/echo", "upstream": "up"}]}
    gw = ReloadGateway(gateways.base_dir / transport, config, tls=transport == "tls")
    gateways.started.append(gw)
    gw.start()
    scheme = "https" if transport == "tls" else "http"
    outputs: list[str] = []
    stop = threading.Event()
    load = threading.Thread(target=run_h2load, args=(f"{scheme}://127.0.0.1:{gw.port}/echo/reload", outputs, stop))
    load.start()
    try:
        upstream.wait_request("/echo/reload")
        for i in range(RELOADS):
            old = gw.worker_pids()
            gw.signal(signal.SIGHUP)
            wait_until(lambda: len(gw.worker_pids()) == 2 and not gw.worker_pids() & old,
                       f"reload {i + 1}: the new workers serve, the old ones drained and left", timeout_s=30)
    finally:
        stop.set()
        load.join(timeout=150)
    assert gw.alive()
    cut_short = 0
    for out in outputs:
        m = REQUESTS_LINE.search(out)
        assert m, out
        total, started, done, succeeded, failed, errored, timeout = map(int, m.groups())
        assert started == done == succeeded and timeout == 0, out
        assert f"status codes: {succeeded} 2xx, 0 3xx, 0 4xx, 0 5xx" in out, out
        assert failed == errored == total - started, out
        cut_short += started < total
    assert cut_short, "no h2load run met a reload: " + "\n".join(outputs)
    assert sum(int(REQUESTS_LINE.search(out).group(4)) for out in outputs) >= 1000
