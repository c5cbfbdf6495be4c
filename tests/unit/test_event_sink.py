"""EventSink's buffering, batching, dropping and closing, with an in-process publisher.

The transports themselves (nats-py, coredis) are tested against real
servers in tests/integration/test_events.py; here the publisher is a list.
"""

import asyncio
import contextlib

from fastgate.config.schema import Events
from fastgate.observe.events import EventSink, NotSent
from fastgate.observe.record import RequestRecord


def record(i: int) -> RequestRecord:
    return RequestRecord(time=0.0, request_id=f"r{i}", trace_id="", span_id="", client_ip="127.0.0.1", method="GET",
                         path=f"/{i}", protocol="HTTP/1.1", status=200, bytes_in=0, bytes_out=0, route="",
                         upstream="", upstream_time=0.0, total_time=0.0, ratelimit="", user_agent="", referer="")


class ListPublisher:
    """Keeps every batch it was sent. ``down``: connecting fails; ``fail_sends``: that many sends raise
    (``NotSent`` when ``not_sent``); ``hang``: connecting never finishes."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.down = False
        self.hang = False
        self.fail_sends = 0
        self.not_sent = False
        self.connects = 0

    @contextlib.asynccontextmanager
    async def connect(self):
        self.connects += 1
        if self.hang:
            await asyncio.Future()
        if self.down:
            raise ConnectionRefusedError("refused")

        async def send(batch: list[RequestRecord]) -> None:
            await asyncio.sleep(0)
            if self.fail_sends:
                self.fail_sends -= 1
                raise NotSent("gone") if self.not_sent else ConnectionResetError("reset")
            self.batches.append([r.request_id for r in batch])

        yield send

    @property
    def sent(self) -> list[str]:
        return [i for batch in self.batches for i in batch]


def sink_for(publisher: ListPublisher, **settings) -> EventSink:
    events = Events(sink="redis", url="redis://127.0.0.1:6379/0", **settings)
    return EventSink(events, publisher, asyncio.get_running_loop())


async def until(predicate, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


def test_batches_keep_order_and_size_and_the_buffer_is_bounded():
    async def scenario():
        publisher = ListPublisher()
        sink = sink_for(publisher, max_batch=4, max_buffer=10)
        for i in range(13):
            sink.write(record(i))
        assert sink.dropped == 3  # r10..r12 found the buffer full
        sink.flush()
        await until(lambda: sink.sent == 10)
        assert publisher.batches == [["r0", "r1", "r2", "r3"], ["r4", "r5", "r6", "r7"], ["r8", "r9"]]
        await sink.close()
        assert (sink.sent, sink.dropped, publisher.connects) == (10, 3, 1)
    asyncio.run(scenario())


def test_a_full_batch_is_sent_without_waiting_for_the_tick():
    async def scenario():
        publisher = ListPublisher()
        sink = sink_for(publisher, max_batch=3)
        sink.flush()  # nothing buffered: no task, no connection
        assert publisher.connects == 0
        for i in range(3):
            sink.write(record(i))
        await until(lambda: sink.sent == 3)  # no flush() was called after the writes
        await sink.close()
    asyncio.run(scenario())


def test_a_busy_worker_sends_full_batches_and_the_tick_sends_the_rest():
    async def scenario():
        publisher = ListPublisher()
        sink = sink_for(publisher, max_batch=50)
        for i in range(0, 120, 3):
            for j in range(i, i + 3):
                sink.write(record(j))
            await asyncio.sleep(0)  # the task runs between loop iterations, as in a worker
        await until(lambda: sink.sent == 100)
        assert [len(b) for b in publisher.batches] == [50, 50]  # the 20 since wait for the tick
        sink.flush()
        await until(lambda: sink.sent == 120)
        assert [len(b) for b in publisher.batches] == [50, 50, 20]
        assert publisher.sent == [f"r{i}" for i in range(120)]
        await sink.close()
    asyncio.run(scenario())


def test_records_wait_while_the_sink_is_down_and_go_once_it_is_up():
    async def scenario():
        publisher = ListPublisher()
        publisher.down = True
        sink = sink_for(publisher, max_buffer=5)
        for i in range(8):
            sink.write(record(i))
        sink.flush()
        await until(lambda: publisher.connects >= 3)  # retries with a back-off
        assert (sink.sent, sink.dropped) == (0, 3)
        publisher.down = False
        await until(lambda: sink.sent == 5)
        assert publisher.sent == ["r0", "r1", "r2", "r3", "r4"]
        await sink.close()
    asyncio.run(scenario())


def test_a_failed_batch_is_dropped_and_a_batch_not_sent_is_kept():
    async def scenario():
        publisher = ListPublisher()
        publisher.fail_sends = 1
        sink = sink_for(publisher, max_batch=2)
        for i in range(4):
            sink.write(record(i))
        sink.flush()
        await until(lambda: sink.sent == 2)
        assert publisher.sent == ["r2", "r3"] and sink.dropped == 2  # at most once: r0, r1 are not sent again

        publisher.fail_sends, publisher.not_sent = 1, True
        for i in range(4, 6):
            sink.write(record(i))
        sink.flush()
        await until(lambda: sink.sent == 4)
        assert publisher.sent == ["r2", "r3", "r4", "r5"] and sink.dropped == 2
        await sink.close()
    asyncio.run(scenario())


def test_close_sends_what_is_buffered():
    async def scenario():
        publisher = ListPublisher()
        sink = sink_for(publisher)
        for i in range(5):
            sink.write(record(i))
        await sink.close()  # no tick came: the last attempt sends them
        assert publisher.sent == [f"r{i}" for i in range(5)]
        assert (sink.sent, sink.dropped) == (5, 0)
    asyncio.run(scenario())


def test_close_is_bounded_when_the_sink_hangs():
    async def scenario():
        publisher = ListPublisher()
        publisher.hang = True
        sink = sink_for(publisher, timeout=0.05)
        for i in range(5):
            sink.write(record(i))
        async with asyncio.timeout(10):  # a hang guard, not a threshold: close waits about 0.05 s
            await sink.close()
        assert (sink.sent, sink.dropped) == (0, 5)
    asyncio.run(scenario())
