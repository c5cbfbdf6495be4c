"""The origin behind every proxy: one nginx worker serving fixed bodies over keep-alive.

It is nginx so that it is never the bottleneck. ``POST /orders`` answers 201
with a small JSON body, for the mixed load of locustfile.py. Each response also carries
the X-Request-ID and X-Forwarded-For the origin received (as X-Seen-*), so a
probe can check what a proxy sent upstream.
"""

from pathlib import Path

from bench.peers.nginx import nginx_argv, nginx_conf
from bench.procs import Proc, free_port, start_listening

BODIES = {"/small": 12, "/16k": 16 * 1024, "/1m": 1024 * 1024}
"""Path -> size in bytes of the body served there."""

ORIGIN_CONNECTIONS = 4096
"""Enough for the keep-alive pools of every proxy running at once."""


def _body(size: int) -> bytes:
    return b"hello world\n" if size == 12 else (b"0123456789abcdef" * (size // 16 + 1))[:size]


def start_origin(workdir: Path, cpus: tuple[int, ...] | None) -> tuple[Proc, int]:
    """Start the origin under ``workdir``; return it and its port once it listens."""
    www = workdir / "www"
    www.mkdir(parents=True)
    for path, size in BODIES.items():
        (www / path.lstrip("/")).write_bytes(_body(size))
    port = free_port()
    log = workdir / "server.log"
    body = f"""\
    access_log off;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=16 inactive=1h;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {www};
        add_header X-Seen-Request-Id $http_x_request_id;
        add_header X-Seen-Forwarded-For $http_x_forwarded_for;
        location = /orders {{
            default_type application/json;
            return 201 '{{"created":true}}\n';
        }}
    }}"""
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_conf(workdir, log, 1, ORIGIN_CONNECTIONS, body))
    return start_listening("origin", nginx_argv(workdir, conf, log), log, cpus, port), port
