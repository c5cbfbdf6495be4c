"""The circuit breaker's state machine, with a probe whose outcome the test decides."""

import asyncio
import logging

import multiprocessing

from fastgate.ratelimit.breaker import CircuitBreaker, SharedBreakerState
from fastgate.ratelimit.config import BreakerSettings
from fastgate.ratelimit.shared_table import SharedTable
from fastgate.ratelimit.stats import RateLimitStats


def test_opens_after_consecutive_failures_backs_off_and_closes_after_a_good_probe(caplog):
    async def scenario():
        stats = RateLimitStats(SharedTable(64))
        probe_started: asyncio.Queue[str] = asyncio.Queue()
        outcomes: asyncio.Queue[bool] = asyncio.Queue()
        opened = []

        async def probe():
            probe_started.put_nowait(breaker.state)
            if not await outcomes.get():
                raise ConnectionError("refused")

        async def next_probe() -> str:
            async with asyncio.timeout(10):
                return await probe_started.get()

        settings = BreakerSettings(failures=3, open_time=0.01, max_open_time=0.03)
        breaker = CircuitBreaker(settings, SharedBreakerState(settings), asyncio.get_running_loop(), probe,
                                 lambda: opened.append(True), lambda: opened.append(False), stats)
        breaker.record_failure("timeout")
        breaker.record_success()  # resets the count
        breaker.record_failure("timeout")
        breaker.record_failure("timeout")
        assert breaker.state == "closed" and opened == []
        breaker.record_failure("timeout")
        assert (breaker.state, stats.breaker_state, opened) == ("open", "open", [True])
        assert 0 < breaker.retry_after_s() <= 0.01
        breaker.record_failure("late")  # results of round trips already in flight do not move it
        breaker.record_success()
        assert breaker.state == "open"
        assert await next_probe() == "half_open"
        for open_s in (0.02, 0.03, 0.03):  # each failed probe doubles the open time, up to the maximum
            outcomes.put_nowait(False)
            assert await next_probe() == "half_open"
            assert breaker.open_s == open_s
        outcomes.put_nowait(True)
        async with asyncio.timeout(10):
            while breaker.state != "closed":
                await asyncio.sleep(0)
        assert breaker.open_s == 0.01 and stats.breaker_state == "closed"
        assert opened == [True]  # saw it open (dropped its connections); its own probe closed it
        # open, then 4 probes: half_open + open for the 3 failed ones, half_open + closed for the good one
        assert stats.breaker_transitions == 1 + 3 * 2 + 2
        breaker.close()

    with caplog.at_level(logging.INFO, logger="fastgate"):
        asyncio.run(scenario())
    messages = [r.getMessage() for r in caplog.records]
    assert any("failed 3 times in a row (last: timeout); circuit breaker open" in m for m in messages)
    assert sum("probe failed (ConnectionError: refused)" in m for m in messages) == 3
    assert any("circuit breaker closed" in m for m in messages)


def test_one_breaker_for_the_workers_of_a_gateway():
    """Failures of several workers add up; the others stop at their next check; one of them probes."""
    settings = BreakerSettings(failures=3, open_time=0.05, max_open_time=0.05)
    shared = SharedBreakerState(settings)

    def worker_fails_twice() -> None:  # another worker process, forked like the gateway's
        async def fail():
            other = CircuitBreaker(settings, shared, asyncio.get_running_loop(), probe, lambda: None, lambda: None,
                                   RateLimitStats(SharedTable(64)))
            other.record_failure("timeout")
            other.record_failure("timeout")
        asyncio.run(fail())

    async def probe():
        probes.append(1)

    probes: list[int] = []

    async def scenario():
        loop = asyncio.get_running_loop()
        dropped = {"a": 0, "b": 0}
        refreshed = {"a": 0, "b": 0}
        stats = [RateLimitStats(SharedTable(64)) for _ in range(2)]
        a, b = (CircuitBreaker(settings, shared, loop, probe, lambda n=name: dropped.__setitem__(n, dropped[n] + 1),
                               lambda n=name: refreshed.__setitem__(n, refreshed[n] + 1), s)
                for name, s in zip("ab", stats))
        child = multiprocessing.get_context("fork").Process(target=worker_fails_twice)
        child.start()
        child.join(10)
        assert child.exitcode == 0
        assert a.closed() and b.closed() and a.state == "closed"
        a.record_failure("timeout")  # the third failure of the gateway opens it
        assert (a.state, b.state, stats[1].breaker_state) == ("open", "open", "open")
        assert not b.closed() and not b.closed()
        assert dropped == {"a": 1, "b": 1}  # each worker drops its connections once
        async with asyncio.timeout(10):
            while shared.state != "closed":
                await asyncio.sleep(0.01)
        assert probes == [1]  # one probe for the gateway, not one per worker
        assert a.closed() and b.closed()
        assert sum(refreshed.values()) == 1  # the worker that did not probe learns the topology again
        assert stats[0].breaker_transitions + stats[1].breaker_transitions == 3  # open, half_open, closed
        a.close()
        b.close()

    asyncio.run(scenario())
