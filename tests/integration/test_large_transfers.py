"""Large bodies stream through with flat memory, and back-pressure holds each side when the other stalls.

Memory is the gateway worker's resident set from /proc: its peak (VmHWM) over
whole transfers, and its current size while a transfer is stalled.
FASTGATE_TEST_BIG_MIB sets the transfer size (default 256 MiB).
"""

import hashlib
import os
import socket
import subprocess
import threading

import httpx
import pytest

from tests.support import procfs
from tests.support.rawhttp import RawConnection, request_bytes
from tests.support.upstream import pattern, pattern_sha256
from tests.support.wait import wait_stable

BIG = int(os.environ.get("FASTGATE_TEST_BIG_MIB", "256")) * 1024 * 1024
RSS_LIMIT_KIB = 200 * 1024

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gw(module_gateways, module_upstream):
    return module_gateways.start({
        "http": {"send_timeout": "60s", "body_timeout": "60s"},
        "upstreams": [module_upstream.config()],
        "routes": [{"name": "big", "path_prefix": "/big/", "upstream": "up", "max_body_size": "4GiB"}],
    }, workers=1)


def _worker(gw) -> int:
    (pid,) = gw.worker_pids()
    return pid


def _assert_memory_bounded(gw, key: str) -> None:
    used = procfs.memory_kib(_worker(gw))[key]
    assert used < RSS_LIMIT_KIB, f"worker {key} {used // 1024} MiB for a {BIG // 2**20} MiB transfer"


@pytest.mark.parametrize("frame", ["cl", "chunked"])
def test_large_download_with_bounded_memory(gw, frame):
    curl = subprocess.Popen(["curl", "-sS", "--fail", "--max-time", "300",
                             gw.url(f"/big/down?bytes={BIG}&frame={frame}&chunk=1048576")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    digest, received = hashlib.sha256(), 0
    while chunk := curl.stdout.read(1 << 20):
        digest.update(chunk)
        received += len(chunk)
    assert curl.wait(60) == 0, curl.stderr.read()
    assert received == BIG
    assert digest.hexdigest() == pattern_sha256(BIG)
    _assert_memory_bounded(gw, "VmHWM")


def _upload_body():
    for piece in pattern(BIG):
        yield bytes(piece)


@pytest.mark.parametrize("frame", ["cl", "chunked"])
def test_large_upload_with_bounded_memory(gw, frame):
    headers = {"Content-Length": str(BIG)} if frame == "cl" else {}
    response = httpx.post(gw.url("/big/up"), content=_upload_body(), headers=headers, timeout=300)
    assert response.status_code == 200
    assert response.json()["body_len"] == BIG
    assert response.json()["body_sha256"] == pattern_sha256(BIG)
    _assert_memory_bounded(gw, "VmHWM")


def test_client_that_reads_nothing_holds_back_the_upstream(gw, module_upstream):
    sent_before = module_upstream.read(lambda s: s.bytes_sent)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(60)
    sock.connect(("127.0.0.1", gw.port))
    try:
        sock.sendall(request_bytes("GET", f"/big/held?bytes={BIG}"))
        stalled_at = wait_stable(lambda: module_upstream.read(lambda s: s.bytes_sent)) - sent_before
        assert stalled_at < BIG, "the upstream sent everything although the client read nothing"
        _assert_memory_bounded(gw, "VmRSS")
        digest, received, head = hashlib.sha256(), 0, b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(65536)
        head, _, first = head.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        digest.update(first)
        received = len(first)
        while received < BIG and (chunk := sock.recv(1 << 20)):
            digest.update(chunk)
            received += len(chunk)
    finally:
        sock.close()
    assert received == BIG and digest.hexdigest() == pattern_sha256(BIG)


def test_upstream_that_reads_nothing_holds_back_the_client(gw, module_upstream):
    sent = 0
    conn = RawConnection(gw.port, timeout_s=120)
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)

    def upload() -> None:
        nonlocal sent
        conn.send(request_bytes("POST", "/big/held-up?hold=1", headers=[("Content-Length", str(BIG))]))
        for piece in pattern(BIG):
            conn.send(piece)
            sent += len(piece)

    uploader = threading.Thread(target=upload, daemon=True)
    uploader.start()
    try:
        stalled_at = wait_stable(lambda: sent)
        assert stalled_at < BIG, "the client sent everything although the upstream read nothing"
        _assert_memory_bounded(gw, "VmRSS")
    finally:
        module_upstream.release()
    uploader.join(120)
    assert sent == BIG
    response = conn.read_response("POST")
    conn.close()
    assert response.status == 200
    assert response.json()["body_len"] == BIG and response.json()["body_sha256"] == pattern_sha256(BIG)
