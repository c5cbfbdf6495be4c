"""The local store's lock when a worker stops or dies holding it (SIGSTOP, SIGKILL)."""

import os
import signal
import time

from fastgate.ratelimit import Limit, RateLimiter, RateLimitSettings


def no_headers(name: bytes) -> None:
    return None


def test_a_stopped_holder_costs_a_bounded_wait_and_a_dead_one_is_taken_over():
    limiter = RateLimiter.create_shared(RateLimitSettings())
    route = limiter.compile_route("lock", [Limit(key=["ip"], rate="2/d")])
    keys = route.keys(b"192.0.2.1", no_headers, b"", None, None)

    def check():
        decisions = []
        started = time.monotonic()
        route.check(keys, decisions.append)
        return decisions[0], time.monotonic() - started

    pid = os.fork()
    if pid == 0:  # a worker that takes the lock and is then stopped, later killed
        try:
            limiter.table.acquire()
            os.kill(os.getpid(), signal.SIGSTOP)
        finally:
            os._exit(0)
    try:
        os.waitid(os.P_PID, pid, os.WSTOPPED | os.WNOWAIT)
        decision, waited = check()  # the holder lives: admitted after one bounded wait
        assert decision.allowed and decision.headers == b""
        assert limiter.stats.local_lock_timeouts == 1 and limiter.stats.local_lock_takeovers == 0
        assert waited < 1.0
        os.kill(pid, signal.SIGKILL)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # dead, not yet reaped: a zombie
        decision, waited = check()
        assert decision.allowed and decision.headers.endswith(b'"lock";r=1;t=43200')
        assert limiter.stats.local_lock_takeovers == 1 and waited < 1.0
        print(f"\nlocal lock: waits of {waited * 1000:.0f} ms before taking over from a dead holder")
        assert [check()[0].status for _ in range(2)] == [200, 429]  # the lock works normally again
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
