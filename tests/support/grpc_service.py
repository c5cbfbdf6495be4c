"""Real grpcio servers for the tests, from a .proto compiled at test time (nothing generated is kept).

``compile_protos(directory)`` writes the test's own ``fgtest.proto`` (an Echo
service with the four kinds of call) and the gRPC health protocol
(grpc.health.v1, as grpc/grpc publishes it) into ``directory``, compiles both
with grpc_tools.protoc and imports the generated modules. ``EchoServer``
runs a grpcio server on 127.0.0.1 (port from the OS) that says its ``name``
in every answer, so a test sees which server served a call:

- Unary: the message back, ``server`` set; UNAVAILABLE when ``unavailable``
  is set on the server (trailers-only: no message was sent);
- ServerStream: ``count`` messages ``seq`` 0..count-1;
- ClientStream: one message: ``count`` = messages received, ``seq`` = their sum;
- Bidi: each message back as it comes;
- Slow: answers after ``count`` milliseconds.

``health`` is what grpc.health.v1.Health/Check answers (SERVING by default).
"""

import importlib
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc

ECHO_PROTO = """
syntax = "proto3";
package fgtest;

message Msg {
  int64 seq = 1;
  string text = 2;
  bytes blob = 3;
  int32 count = 4;
  string server = 5;
}

service Echo {
  rpc Unary(Msg) returns (Msg);
  rpc ServerStream(Msg) returns (stream Msg);
  rpc ClientStream(stream Msg) returns (Msg);
  rpc Bidi(stream Msg) returns (stream Msg);
  rpc Slow(Msg) returns (Msg);
}
"""

HEALTH_PROTO = """
syntax = "proto3";
package grpc.health.v1;

message HealthCheckRequest {
  string service = 1;
}

message HealthCheckResponse {
  enum ServingStatus {
    UNKNOWN = 0;
    SERVING = 1;
    NOT_SERVING = 2;
    SERVICE_UNKNOWN = 3;
  }
  ServingStatus status = 1;
}

service Health {
  rpc Check(HealthCheckRequest) returns (HealthCheckResponse);
}
"""


class Protos:
    """The generated modules: ``pb``/``rpc`` (fgtest), ``health_pb``/``health_rpc``."""

    def __init__(self, directory: Path) -> None:
        from grpc_tools import protoc

        directory.mkdir(parents=True, exist_ok=True)
        (directory / "fgtest.proto").write_text(ECHO_PROTO)
        (directory / "fg_health.proto").write_text(HEALTH_PROTO)
        include = str(Path(protoc.__file__).parent / "_proto")
        for name in ("fgtest.proto", "fg_health.proto"):
            code = protoc.main(["protoc", f"-I{directory}", f"-I{include}", f"--python_out={directory}",
                                f"--grpc_python_out={directory}", str(directory / name)])
            assert code == 0, f"protoc failed on {name}"
        sys.path.insert(0, str(directory))
        try:
            self.pb = importlib.import_module("fgtest_pb2")
            self.rpc = importlib.import_module("fgtest_pb2_grpc")
            self.health_pb = importlib.import_module("fg_health_pb2")
            self.health_rpc = importlib.import_module("fg_health_pb2_grpc")
        finally:
            sys.path.remove(str(directory))


class EchoServer:
    """``with EchoServer(protos, "a") as server:``; ``server.address`` is host:port."""

    def __init__(self, protos: Protos, name: str, unavailable: bool = False) -> None:
        self.protos = protos
        self.name = name
        self.unavailable = unavailable
        self.health = protos.health_pb.HealthCheckResponse.SERVING
        self.calls: dict[str, int] = {}
        self.health_checks = 0
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        protos.rpc.add_EchoServicer_to_server(_Echo(self), self.server)
        protos.health_rpc.add_HealthServicer_to_server(_Health(self), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def count(self, method: str) -> None:
        with self._lock:
            self.calls[method] = self.calls.get(method, 0) + 1

    def __enter__(self) -> "EchoServer":
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=None)


class _Echo:
    def __init__(self, server: EchoServer) -> None:
        self.server = server
        self.Msg = server.protos.pb.Msg

    def Unary(self, request, context):
        self.server.count("Unary")
        if self.server.unavailable:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.server.name} is unavailable")
        return self.Msg(seq=request.seq, text=request.text, blob=request.blob, server=self.server.name)

    def ServerStream(self, request, context):
        self.server.count("ServerStream")
        for seq in range(request.count):
            yield self.Msg(seq=seq, text=f"{request.text}-{seq}", server=self.server.name)

    def ClientStream(self, request_iterator, context):
        self.server.count("ClientStream")
        count = total = 0
        for message in request_iterator:
            count += 1
            total += message.seq
        return self.Msg(seq=total, count=count, server=self.server.name)

    def Bidi(self, request_iterator, context):
        self.server.count("Bidi")
        for message in request_iterator:
            yield self.Msg(seq=message.seq, text=message.text, blob=message.blob, server=self.server.name)

    def Slow(self, request, context):
        self.server.count("Slow")
        time.sleep(request.count / 1000)
        return self.Msg(seq=request.seq, server=self.server.name)


class _Health:
    def __init__(self, server: EchoServer) -> None:
        self.server = server

    def Check(self, request, context):
        with self.server._lock:
            self.server.health_checks += 1
        return self.server.protos.health_pb.HealthCheckResponse(status=self.server.health)
