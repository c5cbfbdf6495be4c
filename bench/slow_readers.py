"""``python -m bench.slow_readers``: what slow readers of a large answer cost a proxy's worker.

Starts the bench origin (nginx serving /1m) and a proxy with one worker, and
records the worker's RSS (VmRSS) idle; then opens N client connections on
127.0.0.1, sends ``GET /1m`` on each and never reads (``--read-kib-s`` makes
each read that much per second instead). Before connecting, each sets a
small SO_RCVBUF and an Ethernet-sized MSS (TCP_MAXSEG 1448): with the
loopback's 64 KiB segments the proxy's kernel would take in the whole answer
for it (its send buffer starts at about ten segments), and nothing would be
left waiting in the proxy, which a client over a real network does not
allow. Once the
worker's RSS has stopped growing it is recorded again ("during"), one normal
request is checked to be served meanwhile, every reader is closed, and once
the RSS is stable again it is recorded a last time ("after"). With
``--rounds 2`` the readers come back a second time, to see whether the
memory kept after the first round is reused rather than added to.

The kernel's memory for TCP (/proc/net/sockstat ``mem``, whole machine, the
readers' own receive buffers included) is printed beside it: it is not in
any process's RSS.

    python -m bench.slow_readers                          # fastgate and nginx, 500 readers
    python -m bench.slow_readers --proxies fastgate --readers 100 --read-kib-s 4

Every process it starts is stopped, also on failure and Ctrl-C.
"""

import argparse
import http.client
import shutil
import signal
import socket
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench import procfs
from bench.peers import PROXIES, Proxy, ProxySpec, Running
from bench.peers.fastgate import Fastgate
from bench.peers.origin import BODIES, start_origin
from bench.procs import ProcError, fd_limit, free_port, make_workdir, raise_fd_limit

PATH = "/1m"
CONNECT_TIMEOUT_S = 5.0
STABLE_WINDOW_S = 2.0
"""RSS is stable when it moved less than STABLE_KIB over this long."""
STABLE_KIB = 256
SETTLE_LIMIT_S = 30.0
"""Longest wait for the RSS to settle; past it the last sample is taken."""
SEND_TIMEOUT_S = 600
"""The proxies' send timeout: longer than a run, so no reader is dropped while it is measured."""


class QuietFastgate(Fastgate):
    """fastgate as the bench runs it, with a send timeout longer than the measurement."""

    def configure(self, spec: ProxySpec, log: Path) -> tuple[list[str], list[str]]:
        argv, features = super().configure(spec, log)
        conf = spec.workdir / "fastgate.toml"
        conf.write_text(conf.read_text() + f"\n[http]\nsend_timeout = \"{SEND_TIMEOUT_S}s\"\n")
        return argv, features


PEERS: dict[str, Proxy] = {"fastgate": QuietFastgate(), "nginx": PROXIES["nginx"]}
"""nginx (send_timeout 60 s, the runs are shorter) is the reference: it reads an upstream
answer into its proxy_buffers (8 x 4 KiB here) and stops reading when they are full."""


def tcp_kernel_kib() -> int:
    """Memory the kernel holds for TCP sockets now, machine-wide (/proc/net/sockstat)."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                fields = line.split()
                return int(fields[fields.index("mem") + 1]) * 4
    return 0


@dataclass
class Sample:
    rss_kib: int
    tcp_kib: int


def _sample(pid: int) -> Sample:
    return Sample(procfs.rss_kib(pid), tcp_kernel_kib())


def settle(pid: int, between=None) -> Sample:
    """The worker's RSS once it moved less than STABLE_KIB over STABLE_WINDOW_S (at most SETTLE_LIMIT_S).

    ``between()`` runs between two samples (the trickling readers read).
    """
    start = time.monotonic()
    history: list[tuple[float, int]] = []
    while True:
        now = time.monotonic()
        history.append((now, procfs.rss_kib(pid)))
        window = [rss for t, rss in history if t >= now - STABLE_WINDOW_S]
        if (now - start >= STABLE_WINDOW_S and max(window) - min(window) < STABLE_KIB) or now - start > SETTLE_LIMIT_S:
            return _sample(pid)
        if between is not None:
            between()
        time.sleep(0.2)


def open_readers(port: int, count: int, rcvbuf: int, mss: int) -> list[socket.socket]:
    """``count`` connections that each sent ``GET /1m``; they read nothing yet."""
    request = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    readers = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            readers.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if mss:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
            sock.settimeout(CONNECT_TIMEOUT_S)
            sock.connect(("127.0.0.1", port))
            sock.sendall(request)
            sock.setblocking(False)
    except BaseException:
        close_readers(readers)
        raise
    return readers


def close_readers(readers: list[socket.socket]) -> None:
    for sock in readers:
        sock.close()


class Trickle:
    """Every reader reads ``kib_per_s`` KiB per second (called between samples)."""

    def __init__(self, readers: list[socket.socket], kib_per_s: float) -> None:
        self.readers = readers
        self.rate = kib_per_s * 1024
        self.last = time.monotonic()
        self.received = [0] * len(readers)
        self.starts = [b""] * len(readers)
        """The first bytes each reader got."""

    def __call__(self) -> None:
        if not self.rate:
            return
        now = time.monotonic()
        budget = int(self.rate * (now - self.last))
        if budget <= 0:
            return
        self.last = now
        for i, sock in enumerate(self.readers):
            try:
                data = sock.recv(budget)
            except (BlockingIOError, InterruptedError):
                continue
            if len(self.starts[i]) < 12:
                self.starts[i] += data[:12]
            self.received[i] += len(data)

    def answered(self) -> int:
        """Readers whose answer began with a 200 head."""
        return sum(start.startswith(b"HTTP/1.1 200") for start in self.starts)


def answered(readers: list[socket.socket]) -> int:
    """Readers whose connection holds a 200 answer (peeked, not consumed)."""
    count = 0
    for sock in readers:
        try:
            count += sock.recv(12, socket.MSG_PEEK).startswith(b"HTTP/1.1 200")
        except OSError:
            pass
    return count


def normal_request_ms(port: int) -> float:
    """A client that reads is served while the slow readers wait: time of one GET /small."""
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/small")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200 or len(body) != BODIES["/small"]:
        raise ProcError(f"GET /small during the slow readers: status {response.status}, {len(body)} bytes")
    return (time.monotonic() - start) * 1000


def measure(server: Running, port: int, args) -> dict:
    (worker,) = server.worker_pids
    result = {"idle": settle(worker), "rounds": []}
    for _ in range(args.rounds):
        readers = open_readers(port, args.readers, args.rcvbuf, args.mss)
        try:
            trickle = Trickle(readers, args.read_kib_s)
            during = settle(worker, trickle)
            got = trickle.answered() if args.read_kib_s else answered(readers)
            served_ms = normal_request_ms(port)
            server.check_workers()
        finally:
            close_readers(readers)
        after = settle(worker)
        result["rounds"].append({"during": during, "after": after, "answered": got, "served_ms": served_ms,
                                 "read_kib": sum(trickle.received) / 1024 / len(readers)})
    return result


def report(name: str, result: dict, readers: int) -> None:
    idle = result["idle"]
    print(f"\n{name}: {readers} slow readers of {BODIES[PATH] // 1024} KiB, one worker")
    print(f"  {'':18} {'worker RSS':>11} {'kernel TCP':>11}")
    print(f"  {'before':18} {idle.rss_kib / 1024:8.1f} MiB {idle.tcp_kib / 1024:8.1f} MiB")
    for i, r in enumerate(result["rounds"], 1):
        during, after = r["during"], r["after"]
        tag = f" (round {i})" if len(result["rounds"]) > 1 else ""
        print(f"  {'during' + tag:18} {during.rss_kib / 1024:8.1f} MiB {during.tcp_kib / 1024:8.1f} MiB   "
              f"{(during.rss_kib - idle.rss_kib) / readers:6.1f} KiB RSS per reader, "
              f"{(during.tcp_kib - idle.tcp_kib) / readers:6.1f} KiB kernel per reader")
        print(f"  {'after' + tag:18} {after.rss_kib / 1024:8.1f} MiB {after.tcp_kib / 1024:8.1f} MiB   "
              f"{(after.rss_kib - idle.rss_kib) / 1024:+.1f} MiB kept")
        extra = f", each read {r['read_kib']:.0f} KiB" if r["read_kib"] else ""
        print(f"  {r['answered']} of {readers} readers got their 200 head{extra}; "
              f"a normal GET /small meanwhile took {r['served_ms']:.1f} ms")


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.slow_readers", description=__doc__.split("\n\n")[0])
    p.add_argument("--readers", type=int, default=500, help="slow client connections (default 500)")
    p.add_argument("--rcvbuf", type=int, default=4096,
                   help="SO_RCVBUF of each reader, bytes (default 4096; the kernel doubles it)")
    p.add_argument("--mss", type=int, default=1448,
                   help="TCP_MAXSEG each reader announces (default 1448, as over Ethernet; 0: loopback's 65483)")
    p.add_argument("--read-kib-s", type=float, default=0.0,
                   help="KiB each reader reads per second (default 0: none at all)")
    p.add_argument("--rounds", type=int, default=1, help="times the readers come and go (default 1)")
    p.add_argument("--proxies", default="fastgate,nginx", help="comma-separated (default: %(default)s)")
    args = p.parse_args(argv)
    args.proxies = args.proxies.split(",")
    for name in args.proxies:
        if name not in PEERS:
            p.error(f"unknown proxy {name!r}; known: {', '.join(PEERS)}")
    if not 1 <= args.readers <= 20_000:
        p.error("--readers must be between 1 and 20000")
    return args


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # so that every started process is stopped on the way out


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _interrupt)
    raise_fd_limit()
    if fd_limit() < args.readers + 300:
        sys.exit(f"open-file limit {fd_limit()} is too low for {args.readers} readers")
    for name in ["nginx", *args.proxies]:
        if (why := PEERS.get(name, PROXIES["nginx"]).missing()):
            sys.exit(why)
    workdir = make_workdir("fastgate-slowreaders-")
    failed: list[str] = []
    try:
        with ExitStack() as stack:
            origin, origin_port = start_origin(workdir / "origin", None)
            stack.enter_context(origin)
            for name in args.proxies:
                port = free_port()
                # each reader holds an upstream connection too (nginx counts both in worker_connections)
                spec = ProxySpec(workdir / name, port, origin_port, 1, frozenset(), 2 * args.readers + 64)
                server = PEERS[name].start(spec, None)
                with server.proc:
                    result = measure(server, port, args)
                report(name, result, args.readers)
                if any(r["answered"] < args.readers for r in result["rounds"]):
                    failed.append(name)
    except ProcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if failed:
        print(f"error: not every slow reader got its answer from {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
