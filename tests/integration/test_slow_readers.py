"""Slow readers of a large answer cost the worker a bounded amount of memory, and it is given back.

Each reader announces a small receive buffer and an Ethernet-sized MSS
(TCP_MAXSEG) before it connects, sends a GET for a 1 MiB answer and then
reads nothing. Without the smaller MSS the loopback's 64 KiB segments would
let the kernel take the whole answer into the gateway's socket buffers, and
nothing would be left waiting in the worker; over a real network the kernel
takes far less. Memory is the worker's resident set (VmRSS) from /proc.

The bounds are generous next to what the gateway needs (about 35 KiB per
reader, and back to within 2 MiB of the start after they left): before the
write-buffer bounds each reader cost the worker 100 KiB to 250 KiB, and glibc
kept it all after the readers left.
"""

import socket

import httpx
import pytest

from tests.support import procfs
from tests.support.upstream import BLOCK
from tests.support.wait import wait_stable, wait_until

READERS = 100
ANSWER_BYTES = 1024 * 1024
PER_READER_KIB = 64
"""Most the worker may grow per stalled reader: its read buffer of the answer (32 KiB) plus the
tail of the previous one still being sent (at most another 32 KiB) and the connections' objects."""
KEPT_KIB = 1024
"""What the worker may stay above its size from before the readers came, once they are gone, if
that is more than a quarter of what it grew by."""
READER_RCVBUF = 4096
READER_MSS = 1448

pytestmark = pytest.mark.slow


def _rss_kib(pid: int) -> int:
    return procfs.memory_kib(pid)["VmRSS"]


def _settled_rss_kib(pid: int) -> int:
    return wait_stable(lambda: _rss_kib(pid), settle_s=1.0, timeout_s=20.0)


def _slow_reader(port: int, path: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, READER_RCVBUF)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, READER_MSS)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: gw.test\r\n\r\n".encode())
    except BaseException:
        sock.close()
        raise
    return sock


def _has_answer_head(sock: socket.socket) -> bool:
    """The 200 head is waiting in the reader's socket (peeked, not read)."""
    try:
        return sock.recv(12, socket.MSG_PEEK | socket.MSG_DONTWAIT).startswith(b"HTTP/1.1 200")
    except BlockingIOError:
        return False


def test_slow_readers_cost_bounded_memory_that_is_given_back(gateways, upstream):
    gw = gateways.start({
        "http": {"send_timeout": "60s"},  # no reader is dropped while it is measured
        "upstreams": [upstream.config()],
        "routes": [{"name": "all", "path_prefix": "/", "upstream": "up"}],
    }, workers=1)
    (worker,) = gw.worker_pids()
    # one whole answer first, so that what every request needs once is there before the first figure
    warm = httpx.get(gw.url(f"/warm?bytes={ANSWER_BYTES}"), timeout=30)
    assert warm.status_code == 200 and len(warm.content) == ANSWER_BYTES
    before = _settled_rss_kib(worker)

    readers: list[socket.socket] = []
    try:
        for i in range(READERS):
            readers.append(_slow_reader(gw.port, f"/slow/{i}?bytes={ANSWER_BYTES}"))
        wait_until(lambda: all(_has_answer_head(sock) for sock in readers),
                   "every slow reader has the head of its answer")
        during = _settled_rss_kib(worker)

        # a client that reads is served meanwhile
        normal = httpx.get(gw.url("/normal?bytes=65536"), timeout=10)
        assert normal.status_code == 200 and normal.content == BLOCK[:65536]
        assert all(_has_answer_head(sock) for sock in readers), "a slow reader was dropped"
    finally:
        for sock in readers:
            sock.close()
    wait_until(lambda: upstream.read(lambda s: s.closed) >= READERS, "the upstream connections of the readers closed")
    after = _settled_rss_kib(worker)

    per_reader = (during - before) / READERS
    assert per_reader < PER_READER_KIB, (
        f"each slow reader cost the worker {per_reader:.0f} KiB ({before} KiB -> {during} KiB for {READERS})")
    assert after - before < max(KEPT_KIB, (during - before) // 4), (
        f"the worker kept {after - before} KiB after the slow readers left ({before} -> {during} -> {after} KiB)")
    assert gw.alive()
