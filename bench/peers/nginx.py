"""nginx as the reference reverse proxy, and the nginx.conf frame the origin shares."""

import functools
import re
import subprocess
from pathlib import Path

from bench.peers.base import Proxy, ProxySpec, first_line
from bench.procs import fd_limit


def nginx_conf(workdir: Path, log: Path, workers: int, connections: int, http: str) -> str:
    """A whole nginx.conf that runs in the foreground with every path under ``workdir``.

    ``connections`` counts both sides: clients and upstream connections.
    """
    return f"""\
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile {fd_limit()};
pid {workdir}/nginx.pid;
error_log {log} warn;
events {{
    worker_connections {connections};
}}
http {{
    client_body_temp_path {workdir}/client_body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
{http}
}}
"""


def nginx_argv(workdir: Path, conf: Path, log: Path) -> list[str]:
    # -e: errors before the config is read go to our log, not /var/log/nginx.
    return ["nginx", "-e", str(log), "-p", str(workdir), "-c", str(conf)]


def nginx_version() -> str:
    out = subprocess.run(["nginx", "-v"], capture_output=True, text=True, timeout=10)
    return first_line(out.stderr or out.stdout).removeprefix("nginx version: ")


HTTP2_ON_SINCE = (1, 25, 1)
"""The nginx that has the ``http2 on;`` directive; before it, HTTP/2 is a ``listen`` parameter."""


@functools.cache
def _build() -> tuple[tuple[int, ...], str]:
    """(version numbers, configure arguments) of the installed nginx, from ``nginx -V``."""
    out = subprocess.run(["nginx", "-V"], capture_output=True, text=True, timeout=10)
    text = out.stderr + out.stdout
    version = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", text)
    return (tuple(int(n) for n in version.groups()) if version else (0, 0, 0)), text


def _gateway(features: frozenset[str], workdir: Path) -> tuple[list[str], list[str]]:
    """nginx directives for the gateway ``features``: (http level, location level)."""
    http, location = [], []
    if "request_id" in features:
        http.append('map $http_x_request_id $bench_request_id { "" $request_id; default $http_x_request_id; }')
        location += ["proxy_set_header X-Request-ID $bench_request_id;",
                     "add_header X-Request-ID $bench_request_id always;"]
    if "forwarded_headers" in features:
        location += ["proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
                     "proxy_set_header X-Forwarded-Proto $scheme;",
                     "proxy_set_header X-Forwarded-Host $host;"]
    if "rate_limit" in features:
        http.append("limit_req_zone $binary_remote_addr zone=bench:1m rate=1000000r/s;")
        location.append("limit_req zone=bench burst=100000 nodelay;")
    if "json_access_log" in features:
        http += [
            "log_format bench_json escape=json '{\"time\":\"$time_iso8601\",\"client\":\"$remote_addr\","
            "\"request_id\":\"$sent_http_x_request_id\",\"method\":\"$request_method\",\"uri\":\"$request_uri\","
            "\"status\":$status,\"bytes\":$body_bytes_sent,\"duration_s\":$request_time,"
            "\"upstream\":\"$upstream_addr\",\"upstream_s\":\"$upstream_response_time\"}';",
            f"access_log {workdir}/access.json bench_json buffer=64k flush=1s;",
        ]
    else:
        http.append("access_log off;")
    return http, location


class Nginx(Proxy):
    name = "nginx"
    binary = "nginx"
    install_hint = "apt-get install -y nginx-light"
    required = True
    multiprocess = True

    def version(self) -> str:
        return nginx_version()

    def http2_missing(self) -> str | None:
        if "--with-http_v2_module" in _build()[1]:
            return None
        return "this nginx is built without the HTTP/2 module (--with-http_v2_module); Debian's nginx-light has it"

    def configure(self, spec: ProxySpec, log: Path) -> tuple[list[str], list[str]]:
        http, location = _gateway(spec.features, spec.workdir)
        body = f"""\
{_indent(http, 4)}
    upstream origin {{
        server 127.0.0.1:{spec.origin_port};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
{_indent(_listen(spec), 8)}
{_indent(_tls(spec), 8)}
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_max_temp_file_size 0;
{_indent(location, 12)}
        }}
    }}"""
        conf = spec.workdir / "nginx.conf"
        # Room for the upstream keep-alive pool and requests in flight to the origin.
        connections = spec.max_connections + 256
        conf.write_text(nginx_conf(spec.workdir, log, spec.workers, connections, body))
        return nginx_argv(spec.workdir, conf, log), sorted(spec.features)


def _listen(spec: ProxySpec) -> list[str]:
    """The ``listen`` of the server, and ``http2 on;`` where this nginx has it (h2c, prior
    knowledge, on a plain port; ALPN h2 with ``ssl``)."""
    http2_on = _build()[0] >= HTTP2_ON_SINCE
    params = (" ssl" if spec.tls else "") + (" http2" if spec.http2 and not http2_on else "")
    return [f"listen 127.0.0.1:{spec.port}{params} reuseport backlog=1024;",
            *(["http2 on;"] if spec.http2 and http2_on else [])]


def _tls(spec: ProxySpec) -> list[str]:
    if spec.tls is None:
        return []
    cert, key = spec.tls
    return [f"ssl_certificate {cert};", f"ssl_certificate_key {key};"]


def _indent(lines: list[str], spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in lines)
