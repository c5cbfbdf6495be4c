"""gRPC through the gateway, end to end over HTTP/2: real grpcio clients -> fastgate (h2c, or TLS with
ALPN h2) -> real grpcio servers (tests/support/grpc_service.py; the .proto is compiled at test time).

The four kinds of call, trailers relayed, a long bidirectional stream checked message by message, a
stream that outlives a reload, deadlines (grpc-timeout), balancing per call, retries on UNAVAILABLE,
every status the gateway makes itself, rate limits, health checks by grpc.health.v1 and the access log.
"""

import json
import queue
import signal
import time

import grpc
import httpx
import pytest
import trustme

from tests.support.certs import write_leaf
from tests.support.gateway import Gateway
from tests.support.grpc_service import EchoServer, Protos
from tests.support.h2_upstream import H2Upstream
from tests.support.metrics import settled, value
from tests.support.ports import free_port, refused_port
from tests.support.wait import wait_until


@pytest.fixture(scope="module")
def protos(tmp_path_factory) -> Protos:
    return Protos(tmp_path_factory.mktemp("protos"))


@pytest.fixture
def echo(protos):
    with EchoServer(protos, "a") as server:
        yield server


class GrpcGateway(Gateway):
    """The test gateway whose plain listener takes h2c (``http2 = true``), with an access log, and, when
    given a certificate directory, a TLS listener too."""

    def __init__(self, directory, config: dict, tls_dir=None) -> None:
        super().__init__(directory, config)
        self.tls_dir = tls_dir
        self.tls_port = 0

    def start(self) -> "GrpcGateway":
        if self.tls_dir is not None:
            self.tls_port = free_port()
        return super().start()

    def full_config(self, config: dict) -> dict:
        full = super().full_config(config)
        listeners = [{**full["listeners"][0], "http2": True}]
        if self.tls_dir is not None:
            listeners.append({"address": f"127.0.0.1:{self.tls_port}", "tls": {"certificates": [
                {"cert": str(self.tls_dir / "site.pem"), "key": str(self.tls_dir / "site.key")}]}})
        full["listeners"] = listeners
        full.setdefault("access_log", {"path": str(self.dir / "access.log")})
        return full

    def access_lines(self) -> list[dict]:
        path = self.dir / "access.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def start(gateways, upstream: dict, tls_dir=None, **route: object) -> GrpcGateway:
    gw = GrpcGateway(gateways.base_dir / f"gw{len(gateways.started)}", {
        "upstreams": [upstream],
        "routes": [{"name": "grpc", "path_prefix": "/fgtest.Echo/", "upstream": upstream["name"], **route}],
    }, tls_dir)
    gateways.started.append(gw)
    return gw.start()


def grpc_upstream(*servers: EchoServer, **fields: object) -> dict:
    return {"name": "grpc", "protocol": "h2", "servers": [s.address for s in servers], **fields}


def stub(protos: Protos, gw: GrpcGateway):
    channel = grpc.insecure_channel(f"127.0.0.1:{gw.port}")
    return channel, protos.rpc.EchoStub(channel)


def wait_for_log(gw: GrpcGateway, predicate, timeout_s: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in gw.access_lines():
            if predicate(line):
                return line
        time.sleep(0.1)
    raise AssertionError(f"no such access log line in {gw.access_lines()}")


# -- the four kinds of call -----------------------------------------------------------------

def test_the_four_kinds_of_call(gateways, protos, echo):
    gw = start(gateways, grpc_upstream(echo))
    Msg = protos.pb.Msg
    channel, echo_stub = stub(protos, gw)
    with channel:
        reply, call = echo_stub.Unary.with_call(Msg(seq=7, text="hello", blob=b"\x00\xff" * 1000), timeout=10)
        assert (reply.seq, reply.text, reply.blob, reply.server) == (7, "hello", b"\x00\xff" * 1000, "a")
        assert call.code() == grpc.StatusCode.OK

        replies = list(echo_stub.ServerStream(Msg(text="s", count=50), timeout=10))
        assert [(m.seq, m.text) for m in replies] == [(i, f"s-{i}") for i in range(50)]

        reply = echo_stub.ClientStream(iter([Msg(seq=i) for i in range(100)]), timeout=10)
        assert (reply.count, reply.seq) == (100, sum(range(100)))

        replies = list(echo_stub.Bidi(iter([Msg(seq=i, text=str(i)) for i in range(20)]), timeout=10))
        assert [(m.seq, m.text) for m in replies] == [(i, str(i)) for i in range(20)]
    assert echo.calls == {"Unary": 1, "ServerStream": 1, "ClientStream": 1, "Bidi": 1}


def test_a_bidi_stream_of_ten_thousand_messages_both_ways(gateways, protos, echo):
    gw = start(gateways, grpc_upstream(echo))
    Msg = protos.pb.Msg
    count = 10_000
    channel, echo_stub = stub(protos, gw)
    with channel:
        sent = (Msg(seq=i, text=f"m{i}", blob=bytes([i % 256]) * (i % 300)) for i in range(count))
        received = 0
        for i, reply in enumerate(echo_stub.Bidi(sent, timeout=120)):
            assert (reply.seq, reply.text, reply.blob) == (i, f"m{i}", bytes([i % 256]) * (i % 300))
            received += 1
    assert received == count


def test_a_bidi_call_in_lock_step(gateways, protos, echo):
    """Each message is sent only once the answer to the one before came back: nothing of a call may
    wait in the gateway for more of it (a buffered request body would hold the first message)."""
    gw = start(gateways, grpc_upstream(echo))
    Msg = protos.pb.Msg
    answered = queue.Queue()

    def messages():
        for i in range(30):
            yield Msg(seq=i, text=f"step{i}")
            assert answered.get(timeout=10) == i

    channel, echo_stub = stub(protos, gw)
    with channel:
        for reply in echo_stub.Bidi(messages(), timeout=30):
            assert reply.text == f"step{reply.seq}"
            answered.put(reply.seq)
    assert answered.empty() and echo.calls == {"Bidi": 1}


def test_grpc_over_tls_with_alpn_h2(gateways, protos, echo, tmp_path):
    authority = trustme.CA()
    write_leaf(tmp_path, "site", authority.issue_cert("grpc.test"))
    gw = start(gateways, grpc_upstream(echo), tls_dir=tmp_path)
    credentials = grpc.ssl_channel_credentials(root_certificates=authority.cert_pem.bytes())
    with grpc.secure_channel(f"127.0.0.1:{gw.tls_port}", credentials,
                             options=[("grpc.ssl_target_name_override", "grpc.test")]) as channel:
        reply = protos.rpc.EchoStub(channel).Unary(protos.pb.Msg(seq=1, text="tls"), timeout=10)
    assert (reply.text, reply.server) == ("tls", "a")


def test_calls_of_one_channel_are_balanced_across_servers(gateways, protos):
    with EchoServer(protos, "a") as first, EchoServer(protos, "b") as second:
        gw = start(gateways, grpc_upstream(first, second))
        channel, echo_stub = stub(protos, gw)
        with channel:
            servers = [echo_stub.Unary(protos.pb.Msg(seq=i), timeout=10).server for i in range(10)]
    assert servers.count("a") == 5 and servers.count("b") == 5
    assert first.calls == {"Unary": 5} and second.calls == {"Unary": 5}


def test_a_stream_outlives_a_reload(gateways, protos, echo):
    gw = start(gateways, grpc_upstream(echo))
    Msg = protos.pb.Msg
    before = gw.worker_pids()
    reloaded = []

    def messages():
        for i in range(40):
            if i == 20:  # mid-stream: reload, and go on once the new generation serves
                gw.signal(signal.SIGHUP)
                deadline = time.monotonic() + 20
                while not gw.worker_pids() - before and time.monotonic() < deadline:
                    time.sleep(0.05)
                reloaded.append(gw.worker_pids() - before)
            yield Msg(seq=i, text=str(i))

    channel, echo_stub = stub(protos, gw)
    with channel:
        replies = [(m.seq, m.text) for m in echo_stub.Bidi(messages(), timeout=60)]
        assert replies == [(i, str(i)) for i in range(40)]
        assert reloaded and reloaded[0]  # the reload happened mid-stream
        assert echo_stub.Unary(Msg(seq=1), timeout=10).seq == 1  # the new generation serves new calls
    deadline = time.monotonic() + 20
    while gw.worker_pids() & before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not gw.worker_pids() & before  # the old worker left once its stream was done


# -- deadlines ------------------------------------------------------------------------------

def grpc_frame(payload: bytes = b"") -> bytes:
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def test_grpc_timeout_is_the_call_deadline(gateways):
    """A server that never answers (the HTTP/2 test server ignores grpc-timeout): the gateway ends the
    call at its grpc-timeout with DEADLINE_EXCEEDED in a trailers-only answer."""
    with H2Upstream() as server:
        gw = start(gateways, server.config(name="grpc", read_timeout="30s"))
        with httpx.Client(http1=False, http2=True, timeout=20) as client:
            response = client.post(gw.url("/fgtest.Echo/Unary?silent=1"), content=grpc_frame(),
                                   headers={"content-type": "application/grpc", "te": "trailers",
                                            "grpc-timeout": "300m"})
    assert response.status_code == 200 and response.content == b""
    assert response.headers["grpc-status"] == "4"
    assert response.headers["grpc-message"] == "upstream timed out"
    assert response.headers["content-type"] == "application/grpc"


def test_the_route_total_timeout_caps_a_longer_grpc_timeout(gateways, protos, echo):
    gw = start(gateways, grpc_upstream(echo), total_timeout="300ms")
    channel, echo_stub = stub(protos, gw)
    with channel, pytest.raises(grpc.RpcError) as info:
        echo_stub.Slow(protos.pb.Msg(count=3000), timeout=20)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert info.value.details() == "upstream timed out"  # the gateway's, not the client's nor the server's


# -- statuses the gateway makes ---------------------------------------------------------------

def expect_status(call, code: grpc.StatusCode, details: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == code, info.value
    assert info.value.details() == details


def test_no_route_is_unimplemented(gateways, protos, echo):
    gw = start(gateways, grpc_upstream(echo))
    channel = grpc.insecure_channel(f"127.0.0.1:{gw.port}")
    with channel:
        other = channel.unary_unary("/other.Service/Method")
        expect_status(lambda: other(b"", timeout=10), grpc.StatusCode.UNIMPLEMENTED, "no route matches this request")
    line = wait_for_log(gw, lambda line: line["path"] == "/other.Service/Method")
    assert line["status"] == 404 and line["protocol"] == "HTTP/2.0"


def test_an_unreachable_upstream_is_unavailable(gateways, protos):
    gw = start(gateways, {"name": "grpc", "protocol": "h2", "servers": [f"127.0.0.1:{refused_port()}"],
                          "connect_retries": 0})
    channel, echo_stub = stub(protos, gw)
    with channel:
        expect_status(lambda: echo_stub.Unary(protos.pb.Msg(), timeout=10), grpc.StatusCode.UNAVAILABLE,
                      "upstream refused the connection")


def test_no_server_available_is_unavailable(gateways, protos, echo):
    gw = start(gateways, {"name": "grpc", "protocol": "h2", "servers": [{"address": echo.address, "drain": True}]})
    channel, echo_stub = stub(protos, gw)
    with channel:
        expect_status(lambda: echo_stub.Unary(protos.pb.Msg(), timeout=10), grpc.StatusCode.UNAVAILABLE,
                      "no upstream server available")


def test_a_rate_limit_is_resource_exhausted_logged_and_counted(gateways, protos, echo):
    gw = start(gateways, grpc_upstream(echo), limits=[{"key": ["ip"], "rate": "2/m"}])
    channel, echo_stub = stub(protos, gw)
    with channel:
        assert echo_stub.Unary(protos.pb.Msg(seq=1), timeout=10).seq == 1
        assert echo_stub.Unary(protos.pb.Msg(seq=2), timeout=10).seq == 2
        expect_status(lambda: echo_stub.Unary(protos.pb.Msg(seq=3), timeout=10),
                      grpc.StatusCode.RESOURCE_EXHAUSTED, "rate limit exceeded")
    assert echo.calls == {"Unary": 2}
    lines = [wait_for_log(gw, lambda line, n=n: line.get("ratelimit") == n) for n in ("allowed", "limited")]
    allowed, limited = lines
    assert allowed["status"] == 200 and allowed["path"] == "/fgtest.Echo/Unary"
    assert allowed["protocol"] == "HTTP/2.0" and allowed["route"] == "grpc" and allowed["upstream"] == echo.address
    assert limited["status"] == 429 and "upstream" not in limited
    metrics = settled(gw)
    assert value(metrics, "fastgate_requests_total", route="grpc", method="POST", status="2xx") == 2
    assert value(metrics, "fastgate_requests_total", route="grpc", method="POST", status="4xx") == 1
    assert value(metrics, "fastgate_ratelimit_decisions_total", route="grpc", outcome="limited") == 1


# -- retries ---------------------------------------------------------------------------------

def test_unavailable_is_retried_on_another_server_for_retryable_methods(gateways, protos):
    with EchoServer(protos, "down", unavailable=True) as down, EchoServer(protos, "up") as up:
        gw = start(gateways, grpc_upstream(down, up, retries=1, eject_after_failures=0),
                   grpc_retry_methods=["/fgtest.Echo/Unary"])
        channel, echo_stub = stub(protos, gw)
        with channel:
            for i in range(6):
                reply = echo_stub.Unary(protos.pb.Msg(seq=i), timeout=10)
                assert (reply.seq, reply.server) == (i, "up")
        assert down.calls["Unary"] >= 3 and up.calls["Unary"] == 6


def test_unavailable_is_relayed_for_other_methods(gateways, protos):
    with EchoServer(protos, "down", unavailable=True) as down:
        gw = start(gateways, grpc_upstream(down, retries=1), grpc_retry_methods=["/fgtest.Echo/Slow"])
        channel, echo_stub = stub(protos, gw)
        with channel:
            expect_status(lambda: echo_stub.Unary(protos.pb.Msg(), timeout=10), grpc.StatusCode.UNAVAILABLE,
                          "down is unavailable")  # the server's own status, relayed
        assert down.calls == {"Unary": 1}


# -- health checks ----------------------------------------------------------------------------

def test_grpc_health_checks_take_a_not_serving_server_out(gateways, protos):
    with EchoServer(protos, "ill") as ill, EchoServer(protos, "well") as well:
        ill.health = protos.health_pb.HealthCheckResponse.NOT_SERVING
        gw = start(gateways, grpc_upstream(ill, well, retries=0, health={
            "grpc_service": "", "interval": "300ms", "timeout": "250ms", "rise": 1, "fall": 1}))
        wait_until(lambda: ill.health_checks >= 2 and well.health_checks >= 2, "both are checked by "
                   "grpc.health.v1.Health/Check")
        channel, echo_stub = stub(protos, gw)
        with channel:
            def served_by() -> set:
                return {echo_stub.Unary(protos.pb.Msg(seq=i), timeout=10).server for i in range(4)}

            # the worker follows the checker's verdict on its clock tick
            wait_until(lambda: served_by() == {"well"}, "calls avoid the server that is not serving")
            calls = ill.calls.get("Unary", 0)
            assert served_by() == {"well"} and ill.calls.get("Unary", 0) == calls
        assert "health: upstream grpc server %s is down (checks failed in a row: 1, last: serving status 2)" \
            % ill.address in gw.log_text()
