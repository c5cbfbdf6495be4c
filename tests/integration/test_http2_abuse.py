"""HTTP/2 limits and defences (``[http2]``) against the real gateway, with hand-built frames
(tests/support/h2frames.py): what the client sees (SETTINGS, REFUSED_STREAM, GOAWAY with its code and
last stream id, the connection closed), what the upstream received (bounded), and what an operator sees
(/metrics by reason, the same worker still serving everyone else)."""

import hashlib

import pytest
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame, DataFrame, HeadersFrame, PingFrame, PriorityFrame, RstStreamFrame, SettingsFrame,
    WindowUpdateFrame,
)

from tests.support import procfs
from tests.support.gateway import Gateway
from tests.support.h2frames import (
    ENHANCE_YOUR_CALM, FLOW_CONTROL_ERROR, PROTOCOL_ERROR, REFUSED_STREAM, STREAM_CLOSED, RawH2, request_headers,
)
from tests.support.metrics import settled, value
from tests.support.upstream import pattern_sha256
from tests.support.wait import wait_stable, wait_until

HTTP2 = {
    "max_concurrent_streams": 8, "max_frame_size": "32KiB", "max_header_list_size": "4KiB",
    "header_table_size": "4KiB", "initial_window_size": "128KiB", "connection_window_size": "2MiB",
    "max_resets": 20, "max_overhead_frames": 100,
}


class H2cGateway(Gateway):
    """The test gateway with ``http2 = true`` (h2c with prior knowledge) on its listener."""

    def full_config(self, config: dict) -> dict:
        full = super().full_config(config)
        full["listeners"] = [{**full["listeners"][0], "http2": True}]
        return full


@pytest.fixture(scope="module")
def gw(module_gateways, module_upstream):
    config = {"upstreams": [module_upstream.config()], "http2": HTTP2,
              "routes": [{"name": "echo", "path_prefix": "/echo", "upstream": "up"}]}
    gateway = H2cGateway(module_gateways.base_dir / "h2abuse", config)
    module_gateways.started.append(gateway)
    gateway.start()
    gateway.first_workers = gateway.worker_pids()
    return gateway


def still_serves(gw, path: str = "/echo/after") -> None:
    """Another connection is answered by the same worker as before."""
    with RawH2(gw.port) as client:
        client.send(client.request(1, path))
        client.read(lambda c: 1 in c.ended)
        assert client.statuses[1] == 200
    assert gw.worker_pids() == gw.first_workers


def abuse_count(gw, reason: str) -> float:
    return value(settled(gw), "fastgate_http2_abuse_total", reason=reason)


# -- limits announced and enforced -------------------------------------------------------

def test_settings_announce_the_limits_and_a_stream_past_the_concurrency_limit_is_refused(gw, module_upstream):
    with RawH2(gw.port) as client:
        client.read(lambda c: c.settings())
        settings = client.settings()
        assert settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == 8
        assert settings[SettingsFrame.MAX_FRAME_SIZE] == 32 * 1024
        assert settings[SettingsFrame.MAX_HEADER_LIST_SIZE] == 4096
        assert settings[SettingsFrame.HEADER_TABLE_SIZE] == 4096
        assert settings[SettingsFrame.INITIAL_WINDOW_SIZE] == 128 * 1024
        assert settings[SettingsFrame.ENABLE_PUSH] == 0
        connection_window = [f.window_increment for f in client.frames
                             if isinstance(f, WindowUpdateFrame) and f.stream_id == 0]
        assert connection_window == [2 * 1024 * 1024 - 65535]

        ids = list(range(1, 2 * 9, 2))  # nine streams in flight, one more than allowed
        client.send(b"".join(client.request(i, f"/echo/concurrent{i}?delay=1") for i in ids))
        client.read(lambda c: all(i in c.ended or i in c.resets() for i in ids))
        assert client.resets() == {ids[-1]: REFUSED_STREAM}
        assert all(client.statuses[i] == 200 for i in ids[:-1])
        assert client.goaway() is None
        # the client may send it again once a place is free
        client.send(client.request(ids[-1] + 2, "/echo/concurrent-again"))
        client.read(lambda c: ids[-1] + 2 in c.ended)
        assert client.statuses[ids[-1] + 2] == 200
    assert not module_upstream.requests_with(f"/echo/concurrent{ids[-1]}?")


def test_a_client_that_reads_nothing_holds_a_bounded_response_buffer(gateways, upstream):
    """64 streams of 8 MiB with wide-open windows to a client that never reads: the upstreams pause once
    the connection holds response_buffer_size (256 KiB here; one stream alone would hold 256 KiB, so
    without the bound the worker would hold 16 MiB more)."""
    config = {"upstreams": [upstream.config()], "http2": {"response_buffer_size": "256KiB"},
              "routes": [{"name": "echo", "path_prefix": "/echo", "upstream": "up"}]}
    gw = H2cGateway(gateways.base_dir / "buffer", config)
    gateways.started.append(gw)
    gw.start()
    (worker,) = gw.worker_pids()
    with RawH2(gw.port) as warm:  # the code paths run once before the worker is measured
        warm.send(warm.request(1, "/echo/warm?bytes=50000"))
        warm.read(lambda c: 1 in c.ended)
    before = procfs.memory_kib(worker)["VmRSS"]
    ids = range(1, 129, 2)
    with RawH2(gw.port, settings={SettingsFrame.INITIAL_WINDOW_SIZE: (1 << 31) - 1}, rcvbuf=4096) as client:
        client.send(WindowUpdateFrame(0, (1 << 31) - 1 - 65535).serialize()
                    + b"".join(client.request(i, f"/echo/unread{i}?bytes={8 << 20}") for i in ids))
        upstream.wait_for(lambda s: sum("/echo/unread" in r.target for r in s.requests) == len(ids),
                          "every request reached the upstream")
        wait_stable(lambda: upstream.read(lambda s: s.bytes_sent))
        grown_kib = procfs.memory_kib(worker)["VmRSS"] - before
        assert grown_kib < 8 * 1024, grown_kib
