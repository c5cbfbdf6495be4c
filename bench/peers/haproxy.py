"""HAProxy as a second reference proxy: http mode, one process with ``workers`` threads."""

import subprocess
from pathlib import Path

from bench.peers.base import Proxy, ProxySpec, first_line
from bench.procs import fd_limit

# Fields like nginx's bench_json line; %{+Q} quotes a string field.
_JSON_LOG_FORMAT = (
    "'{\"time\":\"%tr\",\"client\":\"%ci\",\"request_id\":\"%[var(txn.request_id)]\","
    "\"method\":%{+Q}HM,\"uri\":%{+Q}HU,\"status\":%ST,\"bytes\":%B,\"duration_ms\":%Ta,"
    "\"upstream\":\"%si:%sp\",\"upstream_ms\":%Tr}'"
)


def _gateway(features: frozenset[str]) -> tuple[list[str], list[str]]:
    """HAProxy lines for the gateway ``features``: (global section, frontend section)."""
    glob, frontend = [], []
    if "rate_limit" in features:  # first: a denied request needs no other work
        frontend += ["stick-table type ip size 100k expire 10s store http_req_rate(1s)",
                     "http-request track-sc0 src",
                     "http-request deny deny_status 429 if { sc_http_req_rate(0) gt 1000000 }"]
    if "request_id" in features:
        frontend += ["unique-id-format %[uuid()]",
                     "http-request set-header X-Request-ID %[unique-id] unless { req.hdr(x-request-id) -m found }",
                     "http-request set-var(txn.request_id) req.hdr(x-request-id)",
                     "http-response set-header X-Request-ID %[var(txn.request_id)]"]
    if "forwarded_headers" in features:
        frontend += ["option forwardfor",
                     "http-request set-header X-Forwarded-Proto http",
                     "http-request set-header X-Forwarded-Host %[req.hdr(host)]"]
    if "json_access_log" in features:
        # HAProxy cannot write a file itself: the line goes to stdout, which is its log file.
        glob.append("log stdout format raw local0")
        frontend += ["log global", f"log-format {_JSON_LOG_FORMAT}"]
    return glob, frontend


def _bind_params(spec: ProxySpec) -> str:
    """What follows the bind address: `` ssl crt FILE`` (HAProxy reads the certificate and its key
    from one file) with `` alpn h2,http/1.1`` for HTTP/2, or `` proto h2`` for h2c; or ""."""
    if spec.tls is None:
        return " proto h2" if spec.http2 else ""
    cert, key = spec.tls
    combined = spec.workdir / "site.pem"
    combined.write_bytes(cert.read_bytes() + key.read_bytes())
    return f" ssl crt {combined}" + (" alpn h2,http/1.1" if spec.http2 else "")


class HAProxy(Proxy):
    name = "haproxy"
    binary = "haproxy"
    install_hint = "apt-get install -y haproxy"
    required = False
    multiprocess = False

    def version(self) -> str:
        out = subprocess.run(["haproxy", "-v"], capture_output=True, text=True, timeout=10)
        return first_line(out.stdout).removeprefix("HAProxy version ").split(" ")[0]

    def http2_missing(self) -> str | None:
        out = subprocess.run(["haproxy", "-vv"], capture_output=True, text=True, timeout=10)
        if "mux=H2" in out.stdout:  # the H2 multiplexer in "Available multiplexer protocols"
            return None
        return "this HAProxy has no HTTP/2 multiplexer (no mux=H2 in `haproxy -vv`); HAProxy 1.8 or newer has it"

    def max_client_connections(self) -> int:
        # HAProxy refuses to start unless 2 descriptors per connection fit the limit.
        return (fd_limit() - 200) // 2 - 16

    def configure(self, spec: ProxySpec, log: Path) -> tuple[list[str], list[str]]:
        glob, frontend = _gateway(spec.features)
        lines = [
            "global",
            f"    nbthread {spec.workers}",
            # A few spare for probes; HAProxy raises its own open-file limit to fit.
            f"    maxconn {spec.max_connections + 16}",
            *("    " + line for line in glob),
            "defaults",
            "    mode http",
            "    timeout connect 5s",
            "    timeout client 75s",
            "    timeout server 60s",
            "    timeout http-keep-alive 75s",
            "    http-reuse always",
            "frontend bench",
            f"    bind 127.0.0.1:{spec.port}{_bind_params(spec)}",
            *("    " + line for line in frontend),
            "    default_backend origin",
            "backend origin",
            f"    server origin 127.0.0.1:{spec.origin_port}",
            "",
        ]
        conf = spec.workdir / "haproxy.cfg"
        conf.write_text("\n".join(lines))
        return ["haproxy", "-db", "-f", str(conf)], sorted(spec.features)
