"""gRPC as the core sees it: which requests are gRPC calls, their grpc-timeout, and the gRPC status
the gateway answers instead of a JSON error (proxy/errors.py, the one place that maps them)."""

import pytest

from fastgate.proxy.errors import gateway_error
from fastgate.wire import grpc
from fastgate.wire.h1 import new_request_parser, parse_request_head


def head(fields: bytes, http2: bool = True):
    raw = b"POST /pkg.Svc/Do HTTP/1.1\r\nHost: h" + fields + b"\r\n\r\n"
    parsed = parse_request_head(raw, 8192, 100, new_request_parser())
    parsed.grpc = http2 and grpc.is_grpc(raw)
    return parsed


@pytest.mark.parametrize("content_type,expected", [
    (b"application/grpc", True), (b"application/grpc+proto", True), (b"Application/GRPC;x=1", True),
    (b"application/grpc-web", False), (b"application/grpc-web+proto", False), (b"application/json", False),
])
def test_a_grpc_call_is_told_by_its_content_type(content_type, expected):
    assert grpc.is_grpc(b"POST / HTTP/1.1\r\nContent-Type: " + content_type + b"\r\n\r\n") is expected


@pytest.mark.parametrize("value,seconds", [
    (b"1H", 3600.0), (b"2M", 120.0), (b"3S", 3.0), (b"250m", 0.25), (b"5000u", 0.005), (b"99999999n", 0.099999999),
    (b"123456789S", 0.0), (b"5s", 0.0), (b"S", 0.0), (b"-1S", 0.0),
])
def test_grpc_timeout(value, seconds):
    assert grpc.timeout_s(b"POST / HTTP/1.1\r\ngrpc-timeout: " + value + b"\r\n\r\n") == pytest.approx(seconds)


@pytest.mark.parametrize("status,code", [
    (400, 13), (401, 16), (403, 7), (404, 12), (429, 8), (502, 14), (503, 14), (504, 4), (408, 2), (413, 2), (500, 2),
])
def test_gateway_errors_on_grpc_calls_are_trailers_only_statuses(status, code):
    fields, body, sent = gateway_error(head(b"\r\nContent-Type: application/grpc"), status, "100% wrong", b"rid-1",
                                       b"\r\nRetry-After: 3")
    assert sent == 200 and body == b""
    assert fields == (b"\r\nContent-Type: application/grpc\r\ngrpc-status: %d\r\ngrpc-message: 100%%25 wrong"
                      b"\r\nRetry-After: 3\r\nX-Request-ID: rid-1" % code)


def test_gateway_errors_elsewhere_are_json():
    for request in (None, head(b"\r\nContent-Type: application/json"),
                    head(b"\r\nContent-Type: application/grpc", http2=False)):
        fields, body, sent = gateway_error(request, 429, "rate limit exceeded", b"r")
        assert sent == 429 and body.startswith(b'{"error":"rate limit exceeded","status":429')
        assert b"Content-Type: application/json" in fields


def test_health_check_messages_match_protobuf(tmp_path):
    from tests.support.grpc_service import Protos

    from fastgate.health.h2_probe import ProbeFailed, health_check_request, serving_status

    protos = Protos(tmp_path)
    for service in ("", "fgtest.Echo", "x" * 300):
        frame = health_check_request(service)
        message = protos.health_pb.HealthCheckRequest.FromString(frame[5:])
        assert message.service == service and frame[1:5] == (len(frame) - 5).to_bytes(4, "big")
    for status in (0, 1, 2, 3):
        answer = protos.health_pb.HealthCheckResponse(status=status).SerializeToString()
        assert serving_status(b"\x00" + len(answer).to_bytes(4, "big") + answer) == status
    with pytest.raises(ProbeFailed):
        serving_status(b"\x01\x00\x00\x00\x00")
