"""WebSocket over HTTP/2 (RFC 8441 extended CONNECT) reaches the same WebSocket upstreams as an HTTP/1.1
Upgrade: the real gateway (h2c and TLS with ALPN h2), the websockets library's echo server upstream, and
a client made of the h2 library and wsproto's frames (tests/support/h2_websocket.py): curl, nghttp and
the websockets client cannot speak RFC 8441.
"""

import hashlib
import json
import os
import ssl
from pathlib import Path

import pytest

from tests.support.certs import site_pki
from tests.support.gateway import Gateway
from tests.support.metrics import settled, value
from tests.support.h2_websocket import (
    BytesMessage, CloseConnection, H2WebSocketClient, Ping, Pong, TextMessage,
)
from tests.support.ports import free_port
from tests.support.procfs import memory_kib
from tests.support.raw_upstream import RawUpstream
from tests.support.wait import wait_until
from tests.support.ws_upstream import CLOSE_REQUEST


class WsH2Gateway(Gateway):
    """The test gateway with h2c on its plain listener and a TLS listener (ALPN h2)."""

    def __init__(self, directory: Path, config: dict, pki: Path) -> None:
        super().__init__(directory, config)
        self.pki = pki
        self.tls_port = 0

    def start(self) -> "WsH2Gateway":
        self.tls_port = free_port()
        return super().start()

    def full_config(self, config: dict) -> dict:
        full = super().full_config(config)
        full["listeners"] = [{**full["listeners"][0], "http2": True},
                             {"address": f"127.0.0.1:{self.tls_port}", "tls": {"certificates": [
                                 {"cert": str(self.pki / "site.pem"), "key": str(self.pki / "site.key")}]}}]
        return full


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("wsh2pki")
    site_pki(directory)
    return directory


def start_gateway(gateways, pki: Path, tmp_path: Path, upstreams: list, routes: list) -> WsH2Gateway:
    config = {"upstreams": upstreams, "routes": routes,
              "access_log": {"path": str(tmp_path / "access.log"), "format": "json"}}
    gateway = WsH2Gateway(gateways.base_dir / "wsh2", config, pki)
    gateways.started.append(gateway)
    return gateway.start()


@pytest.fixture
def gw(gateways, pki, tmp_path, ws_upstream, upstream):
    return start_gateway(gateways, pki, tmp_path, [ws_upstream.config("ws"), upstream.config("http")], [
        {"name": "ws", "path_prefix": "/ws/", "upstream": "ws"},
        {"name": "nows", "path_prefix": "/nows/", "upstream": "ws", "upgrades": []},
        {"name": "plain", "path_prefix": "/plain/", "upstream": "http"},
    ])


def client_for(gw: WsH2Gateway, pki: Path, transport: str) -> H2WebSocketClient:
    if transport == "h2c":
        return H2WebSocketClient(gw.port)
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    context.set_alpn_protocols(["h2"])
    return H2WebSocketClient(gw.tls_port, tls=context, server_name="site.test")


def access_lines(gw: WsH2Gateway, count: int) -> list[dict]:
    path = Path(gw.config["access_log"]["path"])
    return wait_until(lambda: (lines := [json.loads(line) for line in path.read_text().splitlines()]
                               if path.exists() else []) and len(lines) >= count and lines,
                      f"{count} access log lines")


def close_both_ways(client: H2WebSocketClient, stream) -> None:
    """The client's close handshake: Close sent, the server's Close received, then the stream's end."""
    client.send(stream, CloseConnection(code=1000, reason="bye"), end_stream=True)
    client.wait(lambda: stream.ended, "the end of the stream after the close handshake")
    closes = [e for e in stream.events if isinstance(e, CloseConnection)]
    assert [c.code for c in closes] == [1000]


@pytest.mark.parametrize("transport", ["h2c", "tls"])
def test_messages_echo_through_an_extended_connect(gw, pki, ws_upstream, transport):
    with client_for(gw, pki, transport) as client:
        assert client.connect_protocol_enabled  # SETTINGS_ENABLE_CONNECT_PROTOCOL = 1
        stream = client.connect("/ws/chat?room=1", extra=((b"sec-websocket-protocol", b"chat.v1, other"),
                                                          (b"x-app", b"a")))
        assert stream.status == 200, (stream.status, stream.body)
        assert stream.headers.get(b"sec-websocket-protocol") == b"chat.v1"
        for name in (b"sec-websocket-accept", b"upgrade", b"connection"):
            assert name not in stream.headers
        client.send(stream, TextMessage("hello"))
        client.send(stream, BytesMessage(b"\x00\x01binary\xff"))
        assert client.wait_messages(stream, 2) == ["hello", b"\x00\x01binary\xff"]
        for i in range(50):
            client.send(stream, TextMessage(f"message {i}"))
        assert client.wait_messages(stream, 52)[2:] == [f"message {i}" for i in range(50)]
        client.send(stream, Ping(b"are you there"))
        client.wait(lambda: any(isinstance(e, Pong) for e in stream.events), "the pong")
        assert [e.payload for e in stream.events if isinstance(e, Pong)] == [b"are you there"]
        close_both_ways(client, stream)
    wait_until(lambda: ws_upstream.ended, "the upstream to see the WebSocket end")
    assert ws_upstream.ended == [1000]
    handshake = ws_upstream.handshakes[-1]
    assert handshake["path"] == ["/ws/chat?room=1"]
    assert [v.lower() for v in handshake["upgrade"]] == ["websocket"]
    assert handshake["sec-websocket-version"] == ["13"]
    assert len(handshake["sec-websocket-key"]) == 1 and len(handshake["sec-websocket-key"][0]) == 24
    assert handshake["x-app"] == ["a"]
    assert handshake["x-forwarded-for"] == ["127.0.0.1"]
    assert handshake["x-forwarded-proto"] == ["http" if transport == "h2c" else "https"]
    (line,) = [line for line in access_lines(gw, 2) if line["path"] == "/ws/chat?room=1"]
    assert line["status"] == 200 and line["method"] == "GET" and line["protocol"] == "HTTP/2.0", line


@pytest.mark.parametrize("transport", ["h2c", "tls"])
def test_a_large_message_crosses_both_ways_whole(gw, pki, transport):
    big = os.urandom(6 * 1024 * 1024)
    with client_for(gw, pki, transport) as client:
        stream = client.connect("/ws/big")
        assert stream.status == 200
        client.send(stream, BytesMessage(big))  # its echo is read while it is sent
        (echo,) = client.wait_messages(stream, 1)
        assert len(echo) == len(big) and hashlib.sha256(echo).digest() == hashlib.sha256(big).digest()
        close_both_ways(client, stream)


def test_the_upstream_closing_ends_the_stream(gw, pki, ws_upstream):
    with client_for(gw, pki, "h2c") as client:
        stream = client.connect("/ws/bye")
        client.send(stream, TextMessage(CLOSE_REQUEST))
        client.wait(lambda: any(isinstance(e, CloseConnection) for e in stream.events), "the server's Close")
        (close,) = [e for e in stream.events if isinstance(e, CloseConnection)]
        assert close.code == 4001 and close.reason == "asked to"
        client.send(stream, close.response())
        client.wait(lambda: stream.ended, "END_STREAM once the upstream closed")
        assert stream.reset is None
        # the connection goes on serving
        again = client.connect("/ws/again")
        client.send(again, TextMessage("still here"))
        assert client.wait_messages(again, 1) == ["still here"]
    wait_until(lambda: len(ws_upstream.ended) == 2, "both WebSockets to end upstream")
    assert ws_upstream.ended[0] == 4001


def test_a_reset_stream_cancels_its_upstream(gw, pki, ws_upstream):
    with client_for(gw, pki, "h2c") as client:
        stream = client.connect("/ws/cut")
        client.send(stream, TextMessage("one"))
        assert client.wait_messages(stream, 1) == ["one"]
        client.reset(stream)
        wait_until(lambda: ws_upstream.ended, "the upstream WebSocket to be dropped")
        assert ws_upstream.ended == [None]  # cut, no close handshake
        other = client.connect("/ws/other")
        client.send(other, TextMessage("two"))
        assert client.wait_messages(other, 1) == ["two"]


def test_what_may_not_be_tunnelled_is_refused(gw, pki, ws_upstream, upstream):
    with client_for(gw, pki, "h2c") as client:
        # a route whose upgrades leave out websocket: 403, nothing upstream
        refused = client.connect("/nows/chat")
        client.wait(lambda: refused.ended, "the refusal's end")
        assert refused.status == 403 and json.loads(refused.body)["status"] == 403
        # an upstream that does not switch protocols: its answer is relayed ...
        forbidden = client.connect("/plain/ws?status=403")
        client.wait(lambda: forbidden.ended, "the relayed answer's end")
        assert forbidden.status == 403
        # ... but a 2xx would tell the client the WebSocket is open: 502
        ignored = client.connect("/plain/ws")
        client.wait(lambda: ignored.ended, "the 502's end")
        assert ignored.status == 502
        # CONNECT without :protocol, and another protocol: stream errors
        plain = client.connect("/ws/x", method=b"CONNECT", protocol=b"connect-udp")
        assert plain.reset == 1 and plain.status == 0
        # the connection still serves WebSockets
        ok = client.connect("/ws/fine")
        client.send(ok, TextMessage("fine"))
        assert client.wait_messages(ok, 1) == ["fine"]
    assert len(ws_upstream.handshakes) == 1
    assert len(upstream.requests_with("/plain/ws")) == 2


def test_a_101_whose_accept_does_not_answer_the_key_is_502(gateways, pki, tmp_path):
    wrong = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
    with RawUpstream(answers={"/ws/": wrong}) as raw:
        mark = raw.mark()
        gw = start_gateway(gateways, pki, tmp_path, [raw.config("ws")], [{"name": "ws", "path_prefix": "/ws/",
                                                                          "upstream": "ws"}])
        with client_for(gw, pki, "h2c") as client:
            stream = client.connect("/ws/accept")
            client.wait(lambda: stream.ended or stream.reset is not None, "the 502")
            assert stream.status == 502 and json.loads(stream.body)["status"] == 502
        (request,) = raw.requests_since(mark)
        fields = {name.lower(): value for name, value in request.headers}
        assert fields[b"upgrade"].lower() == b"websocket" and len(fields[b"sec-websocket-key"]) == 24


def test_a_slow_reader_pauses_the_upstream_and_other_streams_go_on(gw, pki):
    message = os.urandom(64 * 1024)
    most_bytes = 48 * 1024 * 1024
    worker = next(iter(gw.worker_pids()))
    rss_before = memory_kib(worker)["VmRSS"]
    with client_for(gw, pki, "h2c") as client:
        slow = client.connect("/ws/slow")
        slow.acking = False  # the stream's window closes once 64 KiB of echo came: the client "does not read"
        sent_messages = 0
        sent_bytes = 0
        frame = b""
        while sent_bytes < most_bytes:
            if not frame:
                frame = slow.ws.send(BytesMessage(message))
                sent_messages += 1
            went = client.try_send_bytes(slow, frame)
            frame = frame[went:]
            sent_bytes += went
            if not went and not client.window_opens(slow, quiet_s=1.0):
                break  # the gateway stopped taking what the client sends
        assert sent_bytes < most_bytes // 2, "the client could send on and on: nothing paused its upstream"
        assert slow.received_bytes <= 65535  # not a byte past its window
        assert memory_kib(worker)["VmRSS"] - rss_before < 32 * 1024  # KiB: what waits is not held by the worker
        # the connection's other streams go on meanwhile
        other = client.connect("/ws/other")
        client.send(other, TextMessage("not stalled"))
        assert client.wait_messages(other, 1) == ["not stalled"]
        plain = client.get("/plain/beside")
        client.wait(lambda: client.responses[plain]["ended"], "an ordinary request beside the stalled one")
        assert client.responses[plain]["status"] == 200
        # once the client reads, everything sent comes back, whole and in order
        client.ack(slow)
        client.send_bytes(slow, frame)
        echoes = client.wait_messages(slow, sent_messages)
        assert len(echoes) == sent_messages and all(echo == message for echo in echoes)
        close_both_ways(client, slow)


def test_many_websockets_on_one_connection_beside_ordinary_requests(gw, pki):
    with client_for(gw, pki, "tls") as client:
        streams = [client.connect(f"/ws/many{i}") for i in range(40)]
        assert all(stream.status == 200 for stream in streams)
        gets = []
        for round_ in range(5):
            for i, stream in enumerate(streams):
                client.send(stream, TextMessage(f"{i}:{round_}"))
            gets.append(client.get(f"/plain/r{round_}"))
        for i, stream in enumerate(streams):
            assert client.wait_messages(stream, 5) == [f"{i}:{r}" for r in range(5)]
        client.wait(lambda: all(client.responses[g]["ended"] for g in gets), "the ordinary requests")
        assert all(client.responses[g]["status"] == 200 for g in gets)
        for stream in streams:
            close_both_ways(client, stream)


def test_a_silent_tunnel_is_cut_after_the_idle_timeout(gateways, pki, tmp_path, ws_upstream):
    gw = start_gateway(gateways, pki, tmp_path, [ws_upstream.config("ws")], [
        {"name": "ws", "path_prefix": "/ws/", "upstream": "ws", "idle_timeout": "1s"}])
    with client_for(gw, pki, "h2c") as client:
        stream = client.connect("/ws/quiet")
        client.send(stream, TextMessage("then silence"))
        assert client.wait_messages(stream, 1) == ["then silence"]
        client.wait(lambda: stream.reset is not None, "the idle tunnel's reset")
        assert stream.reset == 2  # INTERNAL_ERROR: cut, as a stalled exchange is
    wait_until(lambda: ws_upstream.ended, "the upstream WebSocket to be dropped")
    assert ws_upstream.ended == [None]


def test_the_clients_end_stream_half_closes_the_upstream(gw, pki, ws_upstream):
    with client_for(gw, pki, "h2c") as client:
        stream = client.connect("/ws/half")
        client.send(stream, TextMessage("last words"), end_stream=True)  # no Close frame: only END_STREAM
        assert client.wait_messages(stream, 1) == ["last words"]  # what was under way still comes back
        client.wait(lambda: stream.ended, "END_STREAM once the upstream saw the half-close and closed")
        assert stream.reset is None
    wait_until(lambda: ws_upstream.ended, "the upstream WebSocket to end")
    assert ws_upstream.ended == [None]


def test_rate_limits_and_metrics_count_websockets_as_requests(gateways, pki, tmp_path, ws_upstream):
    gw = start_gateway(gateways, pki, tmp_path, [ws_upstream.config("ws")], [
        {"name": "ws", "path_prefix": "/ws/", "upstream": "ws", "limits": [{"key": ["ip"], "rate": "2/h"}]}])
    with client_for(gw, pki, "h2c") as client:
        opened = [client.connect(f"/ws/{i}") for i in range(2)]
        assert [stream.status for stream in opened] == [200, 200]
        limited = client.connect("/ws/third")
        client.wait(lambda: limited.ended, "the 429's end")
        assert limited.status == 429 and json.loads(limited.body)["status"] == 429
        for stream in opened:
            close_both_ways(client, stream)
    assert len(ws_upstream.handshakes) == 2
    samples = settled(gw)
    assert value(samples, "fastgate_requests_total", route="ws", method="GET", status="2xx") == 2
    assert value(samples, "fastgate_requests_total", route="ws", method="GET", status="4xx") == 1
    lines = [line for line in access_lines(gw, 4) if line["path"].startswith("/ws/")]
    assert sorted(line["status"] for line in lines) == [200, 200, 429]
    assert {(line["method"], line["protocol"]) for line in lines} == {("GET", "HTTP/2.0")}
