"""Mutated requests (seeded, reproducible) never crash a worker, never reach the upstream as
invalid HTTP, and always get a well-formed answer or a clean close."""

import random
import re
import socket
import time
from dataclasses import dataclass

import pytest

from tests.support.raw_upstream import RawUpstream, parse_strict

SEED = 20261121
CASES = 1000
VALID = [
    b"GET /echo/a?x=1 HTTP/1.1\r\nHost: fuzz.test\r\nUser-Agent: fuzz\r\nAccept: */*\r\n\r\n",
    b"POST /echo/b HTTP/1.1\r\nHost: fuzz.test\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /echo/c HTTP/1.1\r\nHost: fuzz.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /echo/d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: fuzz.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
]
SPICE = [b"\r", b"\n", b"\x00", b" ", b"\t", b":", b"\xff", b"\x7f", b",", b"\r\n", b"\r\n\r\n",
         b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n", b"Host: other\r\n", b"ffffffffffffffff\r\n"]
STATUS_LINE = re.compile(rb"^HTTP/1\.1 [1-5][0-9][0-9] ")


def mutate(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(4)
        at = rng.randrange(len(data) + 1)
        if kind == 0 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif kind == 1:
            data[at:at] = rng.choice(SPICE)
        elif kind == 2:
            del data[at : at + rng.randint(1, 8)]
        else:
            data = data[: max(1, at)]
    return bytes(data)


def exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(chunks)


@pytest.mark.slow
def test_mutated_requests(gateways, upstream):
    gw = gateways.start({"upstreams": [upstream.config()],
                         "routes": [{"path_prefix": "/", "upstream": "up", "hosts": ["fuzz.test"]},
                                    {"path_prefix": "/", "upstream": "up"}]}, workers=2)
    workers = gw.worker_pids()
    rng = random.Random(SEED)
    answered = 0
    for case in range(CASES):
        payload = mutate(rng, rng.choice(VALID))
        answer = exchange(gw.port, payload)
        if answer:
            answered += 1
            assert STATUS_LINE.match(answer), f"case {case}: {payload!r} -> {answer[:80]!r}"
            assert not answer.startswith(b"HTTP/1.1 500"), f"case {case}: {payload!r} hit an internal error"
    assert answered > CASES // 4  # many mutations still make a whole head and get an answer; the rest end cleanly
    assert gw.worker_pids() == workers, "a worker died or was replaced"
    log = gw.log_text()
    assert "internal error" not in log and "Traceback" not in log, log[-3000:]


# -- mutated requests against a recording upstream: nothing smuggled, nothing reframed ------------

SMUGGLE_SEED = 20261203
SMUGGLE_MAX_CASES = 3000
SMUGGLE_BUDGET_S = 30.0
"""The run stops at whichever comes first (the assertions hold for any prefix of the sequence)."""
SMUGGLE_TEMPLATES = [
    "GET /f/{m}?x=1 HTTP/1.1\r\nHost: fuzz.test\r\nAccept: */*\r\n\r\n",
    "POST /f/{m} HTTP/1.1\r\nHost: fuzz.test\r\nContent-Length: 5\r\n\r\nhello",
    "POST /f/{m} HTTP/1.1\r\nHost: fuzz.test\r\nTransfer-Encoding: chunked\r\n\r\n"
    "5;ext=1\r\nhello\r\n3;a=\"b;c\"\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n",
    "PUT /f/{m} HTTP/1.1\r\nHost: fuzz.test\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    "4 ; q = v\r\nwxyz\r\n0\r\n\r\n",
    "DELETE /f/{m} HTTP/1.1\r\nHost: fuzz.test\r\nContent-Length: 0\r\n\r\n",
]
SMUGGLE_SPICE = [
    b"\r", b"\n", b"\r\n", b"\r\n\r\n", b"\x00", b" ", b"\t", b":", b",", b";", b"\"", b"\\", b"\x0b", b"\xff",
    b"0", b"f", b"-", b"0x", b"%2e%2e/", b"//", b"#", b"%2F",
    b"Content-Length: 0\r\n", b"Content-Length: 3\r\n", b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n", b"Transfer-Encoding : chunked\r\n", b"Host: other.test\r\n",
    b"Connection: close\r\n", b"Connection: content-length\r\n", b"Expect: 100-continue\r\n", b"Trailer: X\r\n",
    b"0\r\n\r\n", b"5\r\nhello\r\n", b"ffffffffffffffff\r\n",
    b"GET /f/{s} HTTP/1.1\r\nHost: fuzz.test\r\n\r\n",
]
"""Bytes the mutations insert; ``{s}`` becomes the case's marker for a smuggled request."""


def mutate_smuggle(rng: random.Random, data: bytes, smuggled: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(6)
        at = rng.randrange(len(data) + 1)
        if kind == 0 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif kind in (1, 2):
            data[at:at] = rng.choice(SMUGGLE_SPICE).replace(b"{s}", smuggled)
        elif kind == 3:
            del data[at : at + rng.randint(1, 6)]
        elif kind == 4:  # repeat a line
            start = data.rfind(b"\r\n", 0, at)
            end = data.find(b"\r\n", at)
            if end >= 0:
                start = start + 2 if start >= 0 else 0
                data[start:start] = data[start : end + 2]
        else:  # change the case of a few bytes
            data[at : at + 4] = bytes(data[at : at + 4]).swapcase()
    return bytes(data)


@dataclass
class FuzzCase:
    payload: bytes
    markers: list[str]
    accepted: list  # what a strict parser accepts of the payload (tests/support/raw_upstream.py)
    why: str | None


def make_case(rng: random.Random, case: int) -> FuzzCase:
    """A payload of one or two (pipelined) mutated requests; each marker stays whole and appears once."""
    count = rng.choice((1, 2, 2))
    markers = [f"z{case:05d}{side}{rng.getrandbits(32):08x}" for side in "ab"[:count] + "st"]
    original = b"".join(rng.choice(SMUGGLE_TEMPLATES).replace("{m}", m).encode() for m in markers[:count])
    while True:
        payload = mutate_smuggle(rng, original, markers[-2].encode())
        counts = [payload.count(m.encode()) for m in markers[:-1]]
        if counts[:-1] == [1] * count and counts[-1] <= 1:
            break
    # a last, untouched request closes the connection once everything before it was answered
    payload += f"GET /f/{markers[-1]} HTTP/1.1\r\nHost: fuzz.test\r\nConnection: close\r\n\r\n".encode()
    accepted, why = parse_strict(payload)
    return FuzzCase(payload, markers, accepted, why)


def exchange_until_closed(port: int, payload: bytes) -> bytes:
    """Send ``payload`` and read until the gateway closes the connection (it must, within 10 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        chunks = []
        try:
            sock.sendall(payload)
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, BrokenPipeError):
            pass  # refused before it read everything
        return b"".join(chunks)


def test_mutated_requests_reach_the_upstream_whole_or_not_at_all(gateways):
    """What the gateway forwards of mutated requests is exactly what a strict parser reads in them:
    the same requests (by marker), the same methods and bodies, each at most once, strictly framed.

    A request is matched to its case by its marker, not by time: the assertions need no waiting
    between cases, only once at the end until the upstream is quiet."""
    with RawUpstream() as raw_up:
        gw = gateways.start({"http": {"header_timeout": "1s", "body_timeout": "1s"},
                             "upstreams": [raw_up.config()],
                             "routes": [{"name": "all", "path_prefix": "/", "upstream": "up"}]}, workers=1)
        workers = gw.worker_pids()
        rng = random.Random(SMUGGLE_SEED)
        cases: list[FuzzCase] = []
        deadline = time.monotonic() + SMUGGLE_BUDGET_S
        while len(cases) < SMUGGLE_MAX_CASES and time.monotonic() < deadline:
            case = make_case(rng, len(cases))
            cases.append(case)
            answer = exchange_until_closed(gw.port, case.payload)
            assert not answer or STATUS_LINE.match(answer), \
                f"case {len(cases) - 1}: {case.payload!r} -> {answer[:120]!r}"
        raw_up.wait_quiet()
        assert raw_up.errors == [], "the upstream received malformed HTTP"
        assert raw_up.leftovers() == {}, "the upstream was left with part of a request"
        owner = {m: case for case in cases for m in case.markers}
        received = raw_up.requests
        seen: set[str] = set()
        for sent in received:
            found = [m for m in re.findall(r"z\d{5}[abst][0-9a-f]{8}", sent.target) if m in owner]
            assert len(found) == 1, f"upstream got {sent.summary()}, which names no single request of the run"
            (marker,) = found
            assert marker not in seen, f"{marker} reached the upstream twice"
            seen.add(marker)
            case = owner[marker]
            meant = [r for r in case.accepted if marker in r.target]
            where = f"{case.payload!r}: upstream got {sent.summary()}"
            assert meant, f"{where}, which a strict parser does not accept ({case.why}; it accepts " \
                          f"{[r.summary() for r in case.accepted]})"
            assert (sent.method, sent.body) == (meant[0].method, meant[0].body), \
                f"{where} {sent.body!r}, the client sent {meant[0].summary()} {meant[0].body!r}"
        accepted = sum(len(case.accepted) for case in cases)
        assert len(cases) >= 200 and len(received) > accepted // 2, (len(cases), accepted, len(received))
        assert gw.worker_pids() == workers, "a worker died or was replaced"
        log = gw.log_text()
        assert "internal error" not in log and "Traceback" not in log, log[-3000:]
