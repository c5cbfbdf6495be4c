"""The circuit breaker's state machine, with a probe whose outcome the test decides."""

import asyncio
import logging

from fastgate.ratelimit.breaker import CircuitBreaker
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

        breaker = CircuitBreaker(BreakerSettings(failures=3, open_time=0.01, max_open_time=0.03),
                                 asyncio.get_running_loop(), probe, lambda: opened.append(True), stats)
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
        # open, then 4 probes: half_open + open for the 3 failed ones, half_open + closed for the good one
        assert stats.breaker_transitions == 1 + 3 * 2 + 2
        breaker.close()

    with caplog.at_level(logging.INFO, logger="fastgate"):
        asyncio.run(scenario())
    messages = [r.getMessage() for r in caplog.records]
    assert any("failed 3 times in a row (last: timeout); circuit breaker open" in m for m in messages)
    assert sum("probe failed (ConnectionError: refused)" in m for m in messages) == 3
    assert any("circuit breaker closed" in m for m in messages)
