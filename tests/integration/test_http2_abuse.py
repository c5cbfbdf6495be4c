"""HTTP/2 limits and defences (``[http2]``) against the real gateway, with hand-built frames
(tests/support/h2frames.py): what the client sees (SETTINGS, REFUSED_STREAM, GOAWAY with its code and
last stream id, the connection closed), what the upstream received (bounded), and what an operator sees
(/metrics by reason, the same worker still serving everyone else)."""

import hashlib
import signal
import socket

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
from tests.support.metrics import scrape, settled, value
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


# -- rapid reset -------------------------------------------------------------------------

def test_rapid_reset_ends_the_connection_and_the_upstream_sees_a_bounded_number(gw, module_upstream):
    before = abuse_count(gw, "rapid_reset")
    pairs = 500
    with RawH2(gw.port) as client:
        client.send(b"".join(client.request(i, f"/echo/rapid{i}?delay=2") + RstStreamFrame(i, error_code=8).serialize()
                             for i in range(1, 2 * pairs, 2)))
        goaway = client.read_to_goaway()
    assert goaway.error_code == ENHANCE_YOUR_CALM
    assert goaway.last_stream_id < 2 * pairs - 1  # the rest was never looked at
    assert client.closed
    # max_resets (20) cancelled streams, and the streams open when the budget ran out, at most
    assert len(module_upstream.requests_with("/echo/rapid")) <= 20 + 8
    assert abuse_count(gw, "rapid_reset") == before + 1
    still_serves(gw)


def upstream_requests_in_flight(gw) -> float:
    return sum(v for (name, _), v in scrape(gw).items() if name == "fastgate_upstream_active_requests")


def test_a_reset_stream_cancels_its_upstream_exchange(gw, module_upstream):
    ids = range(1, 11, 2)
    with RawH2(gw.port) as client:
        client.send(b"".join(client.request(i, f"/echo/cancelled{i}?delay=30") for i in ids))
        module_upstream.wait_for(lambda s: sum("/echo/cancelled" in r.target for r in s.requests) == len(ids),
                                 "the requests reached the upstream")
        wait_until(lambda: upstream_requests_in_flight(gw) == len(ids), "the gateway counts them in flight")
        client.send(b"".join(RstStreamFrame(i, error_code=8).serialize() for i in ids))
        # the gateway lets go of the upstream exchanges at once, not when the 30 s answers come
        wait_until(lambda: upstream_requests_in_flight(gw) == 0, "the exchanges are dropped", timeout_s=10)
        client.send(client.request(13, "/echo/after-cancel"))  # a few resets are no abuse
        client.read(lambda c: 13 in c.ended)
        assert client.statuses[13] == 200 and client.goaway() is None


# -- header blocks ---------------------------------------------------------------------

def header_block(client: RawH2, fields: int) -> bytes:
    return client.encoder.encode(request_headers("/echo/block", extra=tuple(
        (b"x-filler-%d" % i, b"v" * 90) for i in range(fields))))


@pytest.mark.parametrize("payload", ["growing", "empty"])
def test_continuation_flood_is_cut_before_the_block_ends(gw, module_upstream, payload):
    before = abuse_count(gw, "header_block")
    with RawH2(gw.port) as client:
        if payload == "growing":  # a block of ~100 KiB in 1000-byte pieces, against a 4 KiB limit
            block = header_block(client, 1000)
            pieces = [block[i:i + 1000] for i in range(0, len(block), 1000)]
        else:  # endless empty CONTINUATION frames
            pieces = [header_block(client, 1)] + [b""] * 5000
        frames = HeadersFrame(1, pieces[0]).serialize() + b"".join(
            ContinuationFrame(1, piece).serialize() for piece in pieces[1:])
        try:
            client.send(frames)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway may close before it took everything
        goaway = client.read_to_goaway()
    # h2 alone would buffer 64 frames of up to max_frame_size, then answer PROTOCOL_ERROR
    assert goaway.error_code == ENHANCE_YOUR_CALM and goaway.last_stream_id == 0
    assert abuse_count(gw, "header_block") == before + 1
    assert not module_upstream.requests_with("/echo/block")
    still_serves(gw)


def test_hpack_bomb_is_a_connection_error(gw, module_upstream):
    """One 3000-byte field in the dynamic table, then a 600-byte block naming it 600 times: 1.8 MB of
    header list from a few bytes. Refused as the decoder passes the limit (a connection error: the HPACK
    state cannot be trusted after a half-decoded block), nothing forwarded."""
    before = abuse_count(gw, "header_list")
    with RawH2(gw.port) as client:
        big = (b"x-big", b"b" * 3000)
        first = client.encoder.encode(request_headers("/echo/bomb-seed") + [big])
        client.send(HeadersFrame(1, first, flags=["END_HEADERS", "END_STREAM"]).serialize())
        client.read(lambda c: 1 in c.ended)
        assert client.statuses[1] == 200  # one field of 3000 bytes is within the 4 KiB list
        bomb = client.encoder.encode(request_headers("/echo/bomb") + [big] * 600)
        assert len(bomb) < 1000
        client.send(HeadersFrame(3, bomb, flags=["END_HEADERS", "END_STREAM"]).serialize())
        goaway = client.read_to_goaway()
    assert goaway.error_code == ENHANCE_YOUR_CALM
    assert abuse_count(gw, "header_list") == before + 1
    assert not module_upstream.requests_with("/echo/bomb?") and not module_upstream.requests_with("/echo/bomb ")
    still_serves(gw)


def test_a_larger_hpack_table_than_announced_is_refused(gw):
    with RawH2(gw.port) as client:
        encoder = Encoder()
        encoder.header_table_size = 65536  # the block opens with a table size update past the 4 KiB announced
        client.send(HeadersFrame(1, encoder.encode(request_headers("/echo/table")),
                                 flags=["END_HEADERS", "END_STREAM"]).serialize())
        goaway = client.read_to_goaway()
    assert goaway.error_code in (PROTOCOL_ERROR, 0x9)  # COMPRESSION_ERROR is also right
    still_serves(gw)


# -- floods ------------------------------------------------------------------------------

FLOODS = {
    "ping": lambda client: PingFrame(0, b"12345678").serialize(),
    "settings": lambda client: SettingsFrame(0, {SettingsFrame.ENABLE_PUSH: 0}).serialize(),
    "priority": lambda client: PriorityFrame(1, depends_on=0, stream_weight=16).serialize(),
    "empty_data": lambda client: DataFrame(1, b"").serialize(),
    "window_update": lambda client: WindowUpdateFrame(0, 1).serialize(),
    "rst_stream": lambda client: RstStreamFrame(1, error_code=8).serialize(),
}


def sync(client: RawH2) -> None:
    """Wait until the gateway has handled what was sent (its answer to a PING)."""
    client.send(PingFrame(0, b"sync5678").serialize())
    client.read(lambda c: any(isinstance(f, PingFrame) and "ACK" in f.flags for f in c.frames))


@pytest.mark.parametrize("kind", list(FLOODS))
def test_floods_of_frames_without_progress_end_the_connection(gw, module_upstream, kind):
    before = abuse_count(gw, "flood")
    with RawH2(gw.port) as client:
        client.send(client.request(1, "/echo/flood", end_stream=kind not in ("empty_data", "rst_stream"),
                                   extra=((b"content-length", b"5"),) if kind == "empty_data" else ()))
        sync(client)
        try:
            client.send(FLOODS[kind](client) * 5000)
        except (BrokenPipeError, ConnectionResetError):
            pass
        goaway = client.read_to_goaway()
    assert goaway.error_code == ENHANCE_YOUR_CALM and goaway.last_stream_id == 1
    assert abuse_count(gw, "flood") == before + 1
    still_serves(gw)


def test_window_updates_for_every_frame_of_a_large_response_are_no_flood(gw):
    """A client that answers each DATA frame with two WINDOW_UPDATEs (stream and connection) sends far
    more than max_overhead_frames (100) of them over 8 MiB; the response pays for them."""
    size = 8 * 1024 * 1024
    with RawH2(gw.port) as client:
        client.send(client.request(1, f"/echo/updates?bytes={size}"))
        seen = 0
        digest = hashlib.sha256()
        while 1 not in client.ended and not client.closed:
            client.read(lambda c: len(c.frames) > seen or 1 in c.ended)
            updates = b""
            for frame in client.frames[seen:]:
                if isinstance(frame, DataFrame) and frame.data:
                    digest.update(frame.data)
                    updates += (WindowUpdateFrame(1, len(frame.data)).serialize()
                                + WindowUpdateFrame(0, len(frame.data)).serialize())
            seen = len(client.frames)
            if updates:
                client.send(updates)
        assert client.goaway() is None and client.data[1] == size
        assert digest.hexdigest() == pattern_sha256(size)


def test_acknowledgements_to_a_client_that_does_not_read_do_not_pile_up(gateways):
    """PINGs from a client that reads nothing: once its socket is full, the gateway stops reading too,
    so the client's sends block and the worker's memory stays flat (the flood allowance is set out of
    the way here)."""
    gw = H2cGateway(gateways.base_dir / "acks", {"http2": {"max_overhead_frames": 1 << 20}})
    gateways.started.append(gw)
    gw.start()
    (worker,) = gw.worker_pids()
    before = procfs.memory_kib(worker)["VmRSS"]
    pings = PingFrame(0, b"12345678").serialize() * 4096  # 68 KiB
    limit = 64 * 1024 * 1024
    sent = 0
    with RawH2(gw.port, rcvbuf=4096) as client:
        client.sock.settimeout(3)
        try:
            while sent < limit:
                client.sock.sendall(pings)
                sent += len(pings)
        except socket.timeout:
            pass
        grown_kib = procfs.memory_kib(worker)["VmRSS"] - before
    assert sent < limit, "the gateway read everything: it queued an acknowledgement for each"
    assert grown_kib < 16 * 1024, grown_kib
    assert gw.worker_pids() == {worker}


# -- stream id misuse ----------------------------------------------------------------------

def misuse_frames(client: RawH2, case: str) -> bytes:
    if case == "even_id":
        return client.request(2, "/echo/even")
    if case == "ids_going_down":
        return client.request(5, "/echo/five", end_stream=False) + client.request(3, "/echo/three")
    if case == "headers_on_stream_0":
        frame = client.request(1, "/echo/zero")
        return frame[:5] + bytes(4) + frame[9:]  # hyperframe would not build it
    if case == "data_on_idle_stream":
        return DataFrame(7, b"hello").serialize()
    if case == "connection_window_overflow":
        return WindowUpdateFrame(0, (1 << 31) - 1).serialize()
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["even_id", "ids_going_down", "headers_on_stream_0", "data_on_idle_stream",
                                  "connection_window_overflow"])
def test_stream_id_misuse_is_a_connection_error(gw, module_upstream, case):
    before = abuse_count(gw, "protocol_error")
    with RawH2(gw.port) as client:
        client.send(misuse_frames(client, case))
        goaway = client.read_to_goaway()
    assert goaway.error_code == (FLOW_CONTROL_ERROR if case == "connection_window_overflow" else PROTOCOL_ERROR)
    assert abuse_count(gw, "protocol_error") == before + 1
    assert not module_upstream.requests_with("/echo/even") and not module_upstream.requests_with("/echo/zero")
    still_serves(gw)


def test_closed_stream_reuse_and_stream_window_overflow(gw):
    with RawH2(gw.port) as client:
        client.send(client.request(1, "/echo/once"))
        client.read(lambda c: 1 in c.ended)
        client.send(client.request(3, "/echo/slow-window?delay=1")
                    + WindowUpdateFrame(3, (1 << 31) - 1).serialize())  # the stream's window overflows
        client.read(lambda c: 3 in c.resets())
        assert client.resets()[3] == FLOW_CONTROL_ERROR and client.goaway() is None
        client.send(client.request(1, "/echo/again"))  # a closed stream's id
        goaway = client.read_to_goaway()
        assert goaway.error_code in (PROTOCOL_ERROR, STREAM_CLOSED)
    still_serves(gw)


def test_no_http2_connection_is_left_open(gw):
    """After every test above, /metrics counts no HTTP/2 connection still open: none leaked."""
    found = settled(gw)
    assert value(found, "fastgate_connections_active", protocol="h2") == 0
    assert value(found, "fastgate_connections_accepted_total", protocol="h2") >= 20


# -- graceful stop, and the end of a response ----------------------------------------------

def test_graceful_stop_goaway_names_the_last_stream_served(gateways, upstream):
    config = {"upstreams": [upstream.config()], "routes": [{"name": "echo", "path_prefix": "/echo", "upstream": "up"}]}
    gw = H2cGateway(gateways.base_dir / "drain", config)
    gateways.started.append(gw)
    gw.start()
    with RawH2(gw.port) as client:
        client.answer_pings = False
        client.send(client.request(1, "/echo/in-flight?delay=1"))
        upstream.wait_request("/echo/in-flight")
        gw.signal(signal.SIGQUIT)
        client.read(lambda c: any(isinstance(f, PingFrame) for f in c.frames))
        first = client.goaway()
        assert first.last_stream_id == (1 << 31) - 1 and first.error_code == 0
        # a request the client had queued before it saw the GOAWAY, then the PING's answer
        ping = next(f for f in client.frames if isinstance(f, PingFrame))
        client.send(client.request(3, "/echo/queued") + PingFrame(0, ping.opaque_data, flags=["ACK"]).serialize())
        client.read()  # to the end of the connection
        assert client.statuses == {1: 200, 3: 200} and client.ended >= {1, 3}
        final = client.goaways()[-1]
        assert final.last_stream_id == 3 and final.error_code == 0
        assert client.frames.index(first) < min(i for i, f in enumerate(client.frames) if isinstance(f, DataFrame))
    assert gw.wait_exit(20) == 0


def test_the_last_data_frame_carries_end_stream(gw):
    with RawH2(gw.port) as client:
        client.send(client.request(1, "/echo/end?bytes=5000"))
        client.read(lambda c: 1 in c.ended)
    data = [f for f in client.frames if isinstance(f, DataFrame) and f.stream_id == 1]
    assert sum(len(f.data) for f in data) == 5000
    assert all(f.data for f in data) and "END_STREAM" in data[-1].flags  # no empty DATA just for the end
