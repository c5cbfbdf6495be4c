"""W3C trace context through the real gateway: what the upstream receives, what the access log
says, and spans exported over OTLP/HTTP to a local receiver that decodes them with opentelemetry-proto."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.support import metrics
from tests.support.ports import refused_port
from tests.support.wait import wait_until

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


class OtlpReceiver:
    """An OTLP/HTTP traces endpoint on 127.0.0.1 that keeps every span it receives."""

    def __init__(self) -> None:
        self.spans: list = []
        self.resources: list = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                ok = self.path == "/v1/traces" and self.headers["Content-Type"] == "application/x-protobuf"
                with receiver.lock:
                    for resource_spans in request.resource_spans:
                        receiver.resources.append(resource_spans.resource)
                        for scope_spans in resource_spans.scope_spans:
                            receiver.spans.extend(scope_spans.spans)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "OtlpReceiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def by_request_id(self) -> dict:
        """The spans received, by request id, but for the test harness's readiness probes."""
        with self.lock:
            return {attributes(span)["fastgate.request_id"]: span for span in self.spans if span.name != "readiness"}


def attributes(span) -> dict:
    out = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = value.string_value if value.HasField("string_value") else value.int_value
    return out


def traced_gateway(gateways, upstream, tmp_path, tracing=None, workers=1):
    config = {
        "upstreams": [upstream.config(), {"name": "dead", "servers": [f"127.0.0.1:{refused_port()}"],
                                          "connect_retries": 0}],
        "routes": [{"name": "api", "path_prefix": "/api/", "upstream": "up"},
                   {"name": "dead", "path_prefix": "/dead/", "upstream": "dead"}],
        "access_log": {"path": str(tmp_path / "access.log")},
    }
    config["tracing"] = {"enabled": True, **(tracing or {})}
    return gateways.start(config, workers=workers)


def upstream_traceparents(upstream, marker: str) -> list[str]:
    return upstream.wait_request(marker).header_all("traceparent")


def log_line(tmp_path, request_id: str) -> dict:
    def find():
        path = tmp_path / "access.log"
        lines = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        return next((line for line in lines if line["request_id"] == request_id), None)
    return wait_until(find, f"the access log has {request_id}")


def test_the_client_trace_continues_with_the_gateway_as_parent(gateways, upstream, tmp_path):
    gw = traced_gateway(gateways, upstream, tmp_path)
    httpx.get(gw.url("/api/continue"), headers={
        "traceparent": f"00-{TRACE}-{PARENT}-01", "tracestate": "vendor=abc,other=1", "X-Request-ID": "c1"})
    received = upstream.wait_request("/api/continue")
    [value] = received.header_all("traceparent")
    trace_id, span_id, flags = TRACEPARENT.fullmatch(value).groups()
    assert (trace_id, flags) == (TRACE, "01") and span_id != PARENT
    assert received.header_all("tracestate") == ["vendor=abc,other=1"]  # relayed unchanged
    line = log_line(tmp_path, "c1")
    assert (line["trace_id"], line["span_id"]) == (TRACE, span_id)


def test_a_trace_is_started_when_the_client_sends_none(gateways, upstream, tmp_path):
    gw = traced_gateway(gateways, upstream, tmp_path)
    for i in range(2):
        httpx.get(gw.url(f"/api/new{i}"), headers={"X-Request-ID": f"n{i}"})
    ids = []
    for i in range(2):
        [value] = upstream_traceparents(upstream, f"/api/new{i}")
        trace_id, span_id, flags = TRACEPARENT.fullmatch(value).groups()
        assert flags == "01" and trace_id != "0" * 32
        assert log_line(tmp_path, f"n{i}")["trace_id"] == trace_id
        ids.append(trace_id)
    assert ids[0] != ids[1]
    local = httpx.get(gw.url("/nowhere"), headers={"X-Request-ID": "n404"})
    assert local.status_code == 404 and re.fullmatch("[0-9a-f]{32}", log_line(tmp_path, "n404")["trace_id"])


@pytest.mark.parametrize("bad", [
    f"00-{TRACE.upper()}-{PARENT}-01",
    f"00-{'0' * 32}-{PARENT}-01",
    f"00-{TRACE}-{'0' * 16}-01",
    f"ff-{TRACE}-{PARENT}-01",
    f"00-{TRACE}-{PARENT}-01-extra",
    "nonsense",
])
def test_an_invalid_traceparent_is_replaced(gateways, upstream, tmp_path, bad):
    gw = traced_gateway(gateways, upstream, tmp_path)
    httpx.get(gw.url("/api/bad"), headers={"traceparent": bad, "X-Request-ID": "b1"})
    [value] = upstream_traceparents(upstream, "/api/bad")
    trace_id, _, _ = TRACEPARENT.fullmatch(value).groups()
    assert trace_id != TRACE
    assert log_line(tmp_path, "b1")["trace_id"] == trace_id


def test_two_traceparent_headers_are_replaced_by_one(gateways, upstream, tmp_path):
    gw = traced_gateway(gateways, upstream, tmp_path)
    httpx.get(gw.url("/api/two"), headers=[("traceparent", f"00-{TRACE}-{PARENT}-01"),
                                           ("traceparent", f"00-{'1' * 32}-{PARENT}-01")])
    [value] = upstream_traceparents(upstream, "/api/two")
    assert TRACEPARENT.fullmatch(value).group(1) not in (TRACE, "1" * 32)


def test_with_tracing_off_the_header_passes_untouched(gateways, upstream, tmp_path):
    gw = traced_gateway(gateways, upstream, tmp_path, tracing={"enabled": False})
    httpx.get(gw.url("/api/off1"), headers={"traceparent": "whatever-the-client-says", "X-Request-ID": "o1"})
    httpx.get(gw.url("/api/off2"))
    assert upstream_traceparents(upstream, "/api/off1") == ["whatever-the-client-says"]
    assert upstream_traceparents(upstream, "/api/off2") == []
    assert "trace_id" not in log_line(tmp_path, "o1")


def test_sampled_spans_are_exported_over_otlp(gateways, upstream, tmp_path):
    with OtlpReceiver() as receiver:
        gw = traced_gateway(gateways, upstream, tmp_path, workers=2, tracing={
            "otlp_endpoint": f"http://127.0.0.1:{receiver.port}/v1/traces", "service_name": "edge"})
        httpx.get(gw.url("/api/sampled?x=1"), headers={"traceparent": f"00-{TRACE}-{PARENT}-01",
                                                       "X-Request-ID": "s1"})
        httpx.get(gw.url("/api/unsampled"), headers={"traceparent": f"00-{'2' * 32}-{PARENT}-00",
                                                     "X-Request-ID": "s2"})
        httpx.get(gw.url("/dead/x"), headers={"X-Request-ID": "s3"})
        for i in range(30):  # several batches and both workers
            httpx.get(gw.url(f"/api/many{i}"), headers={"X-Request-ID": f"m{i}"})
        wait_until(lambda: len(receiver.by_request_id()) >= 32, "every sampled span arrives")
        spans = receiver.by_request_id()
        counted = metrics.settled(gw)
        received = len(receiver.spans)  # the readiness probes' spans too
    assert "s2" not in spans  # the client said not sampled
    assert len(spans) == 32
    assert metrics.value(counted, "fastgate_tracing_spans_exported_total") == received  # summed over both workers
    assert metrics.value(counted, "fastgate_tracing_spans_dropped_total") == 0

    sampled = spans["s1"]
    [value] = upstream_traceparents(upstream, "/api/sampled")
    trace_id, span_id, _ = TRACEPARENT.fullmatch(value).groups()
    assert (sampled.trace_id.hex(), sampled.span_id.hex(), sampled.parent_span_id.hex()) == (TRACE, span_id, PARENT)
    assert sampled.name == "api" and sampled.kind == 2  # SERVER
    assert 0 < sampled.start_time_unix_nano <= sampled.end_time_unix_nano
    assert attributes(sampled) == {
        "http.request.method": "GET", "url.path": "/api/sampled", "http.response.status_code": 200,
        "server.address": "127.0.0.1", "server.port": upstream.port, "fastgate.route": "api",
        "fastgate.request_id": "s1"}
    assert sampled.status.code == 0
    assert log_line(tmp_path, "s1")["span_id"] == span_id

    failed = spans["s3"]
    assert failed.parent_span_id == b"" and failed.name == "dead" and failed.status.code == 2  # ERROR
    assert attributes(failed)["http.response.status_code"] == 502
    assert failed.trace_id.hex() == log_line(tmp_path, "s3")["trace_id"]
    assert [kv.value.string_value for r in receiver.resources for kv in r.attributes
            if kv.key == "service.name"] == ["edge"] * len(receiver.resources)


def test_sample_ratio_zero_exports_only_what_clients_sampled(gateways, upstream, tmp_path):
    with OtlpReceiver() as receiver:
        gw = traced_gateway(gateways, upstream, tmp_path, tracing={
            "otlp_endpoint": f"http://127.0.0.1:{receiver.port}/v1/traces", "sample_ratio": 0.0})
        for i in range(10):
            httpx.get(gw.url(f"/api/r{i}"), headers={"X-Request-ID": f"r{i}"})
        httpx.get(gw.url("/api/client"), headers={"traceparent": f"00-{TRACE}-{PARENT}-01",
                                                  "X-Request-ID": "client"})
        wait_until(lambda: "client" in receiver.by_request_id(), "the client-sampled span arrives")
        assert list(receiver.by_request_id()) == ["client"]
    assert TRACEPARENT.fullmatch(upstream_traceparents(upstream, "/api/r0")[0]).group(3) == "00"


def test_a_receiver_that_is_down_does_not_stop_the_serving(gateways, upstream, tmp_path):
    gw = traced_gateway(gateways, upstream, tmp_path, tracing={
        "otlp_endpoint": f"http://127.0.0.1:{refused_port()}/v1/traces", "export_queue": 8, "export_batch": 4})
    with httpx.Client(base_url=gw.url()) as client:
        for i in range(50):
            assert client.get(f"/api/{i}").status_code == 200
    wait_until(lambda: "span export to" in gw.log_text(), "the failed export is reported")
    assert gw.alive()
    # all 50 spans are dropped, but for those queued (at most export_queue) for the next try
    wait_until(lambda: metrics.value(metrics.scrape(gw), "fastgate_tracing_spans_dropped_total") >= 50 - 8,
               "the dropped spans are counted")
    assert metrics.value(metrics.scrape(gw), "fastgate_tracing_spans_exported_total") == 0


def test_an_endpoint_without_the_extra_or_with_https_is_refused(gateways, tmp_path):
    from tests.support.gateway import run_cli
    from tests.support.toml_writer import dumps

    path = tmp_path / "gate.conf"
    path.write_text(dumps({"listeners": [{"address": "127.0.0.1:1"}],
                           "tracing": {"otlp_endpoint": "https://collector:4318/v1/traces"}}))
    result = run_cli("-t", "-c", str(path))
    assert result.returncode == 1 and "tracing.otlp_endpoint: must be an http:// URL" in result.stderr
