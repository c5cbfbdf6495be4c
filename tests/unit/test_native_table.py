"""The local store's C check (ratelimit/_native_table.c) counts as the Python path does, and leaves every
other case to it: a busy lock, a key not yet placed, a request that does not fit."""

import time
from array import array

import pytest

from fastgate.native import speedup
from fastgate.ratelimit import Limit, RateLimiter, RateLimitSettings
from fastgate.ratelimit.algorithms import ALGORITHMS

native = speedup("ratelimit._native_table")
pytestmark = pytest.mark.skipif(native is None, reason="C speedups not built, or FASTGATE_PURE_PYTHON=1")
IP = b"192.0.2.7"


def gate(route, ip: bytes):
    """What transport/limit_gate.py does: the C check, then the Python check when it did not admit."""
    if route.admit_ip(ip):
        return "c"
    decisions = []
    route.check(route.keys(ip, lambda name: None, b"", None, None), decisions.append)
    return "python" if decisions[0].allowed else decisions[0].status


def limited(rate: str, **settings):
    limiter = RateLimiter.create_shared(RateLimitSettings(**{"headers_on_allowed": False, **settings}))
    return limiter, limiter.compile_route("r", [Limit(key=["ip"], rate=rate, burst=2)])


def test_the_c_check_admits_what_the_python_check_would_and_leaves_the_rest():
    limiter, route = limited("5/h")
    answers = [gate(route, IP) for _ in range(10)]
    # The first request places the key (Python); the rest of the 5 + 2 burst fit in C; then 429s from Python.
    assert answers == ["python"] + ["c"] * 6 + [429] * 3
    assert limiter.table.fast_admitted() == 6
    assert limiter.stats.allowed == 7 and limiter.stats.limited == 3
    # The state is GCRA's: 7 intervals of 720 s ahead of the first request.
    table = limiter.table
    assert table.acquire()
    try:
        now = time.monotonic_ns() // 1000
        tat = table.state(table.record(route.keys(IP, None, b"", None, None)[0], now), 1, now)[0]
    finally:
        table.release()
    assert 7 * 720_000_000 - 5_000_000 < tat - now <= 7 * 720_000_000


def test_a_busy_lock_or_an_unplaced_key_is_left_to_the_python_path():
    limiter, route = limited("100/s")
    assert not route.admit_ip(IP)  # no slot yet
    assert gate(route, IP) == "python"
    assert limiter.table.acquire()
    try:
        assert not route.admit_ip(IP)  # held by someone else: no wait in C
    finally:
        limiter.table.release()
    assert route.admit_ip(IP)
    assert not route.admit_ip(b"192.0.2.8")


def test_the_c_check_is_only_for_the_plain_case():
    assert limited("5/h")[1].admit_ip is not None
    assert limited("5/h", headers_on_allowed=True)[1].admit_ip is None  # headers need the state: Python
    limiter = RateLimiter.create_shared(RateLimitSettings(headers_on_allowed=False))
    assert limiter.compile_route("w", [Limit(key=["ip"], rate="5/h", algorithm="fixed_window")]).admit_ip is None
    assert limiter.compile_route("h", [Limit(key=["header:X-Api-Key"], rate="5/h")]).admit_ip is None
    assert limiter.compile_route("2", [Limit(key=["ip"], rate="5/h", scope="a"),
                                       Limit(key=["ip"], rate="9/h", scope="b")]).admit_ip is None
    assert set(ALGORITHMS) == {"gcra", "sliding_window", "fixed_window"}


def test_wrong_arguments_raise():
    _, route = limited("5/h")
    with pytest.raises(TypeError):
        route.admit_ip("192.0.2.7")
    with pytest.raises(ValueError):
        native.GcraAdmit(table=bytearray(64), lock=1, mask=63, fingerprints=8, records=100, owner=0,
                         prefix=b"", interval_us=1, tolerance_us=0, admitted=array("Q", [0]))
    with pytest.raises(TypeError):
        native.GcraAdmit(table=bytearray(64), lock=1, mask=0, fingerprints=8, records=16, owner=0,
                         prefix=b"", interval_us=1, tolerance_us=0, admitted=array("q", [0]))
