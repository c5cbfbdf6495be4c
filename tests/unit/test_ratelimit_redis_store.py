"""The Redis store's round trip against a scripted RESP peer: what its deadline, late replies,
the connection being made and shutdown do to each check.

The peer (``ScriptedRedis``) listens on 127.0.0.1, records every command it
receives and answers only when the test says so, so a test can hold a reply
past the deadline, send it late, or never answer AUTH. Behaviour with a real
redis-server (killed, frozen, flushed) is in tests/integration/test_ratelimit_store_faults.py.
"""

import asyncio

import pytest
import uvloop

from fastgate.ratelimit import BreakerSettings, Limit, RateLimiter, RateLimitSettings, RedisSettings
from fastgate.runtime.resp import RespClient, ServerAddress, encode, parse_reply

TIMEOUT_S = 0.2
ALLOWED = b":1\r\n"
"""The script's answer for one admitted check without headers on admitted responses (lua.py): 1 alone."""
DENIED = b":0\r\n:0\r\n:1000000\r\n:1000000\r\n"
"""A denied check of one limit: 0, remaining, reset_us, retry_us."""


def reply(*checks: bytes) -> bytes:
    """One EVALSHA's reply: the integers of each check."""
    body = b"".join(checks)
    return b"*%d\r\n" % body.count(b"\r\n") + body


class ScriptedRedis(asyncio.Protocol):
    """A RESP peer that records commands and answers only when told (``answer``)."""

    def __init__(self) -> None:
        self.commands: list[list[bytes]] = []
        self.connections = 0
        self.transport: asyncio.Transport | None = None
        self._buffer = b""
        self._arrived = asyncio.Event()

    def connection_made(self, transport) -> None:
        self.connections += 1
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._buffer:
            parsed = parse_reply(self._buffer, 0)  # a command is a RESP array of bulk strings
            if parsed is None:
                return
            command, end = parsed
            self._buffer = self._buffer[end:]
            self.commands.append(command)
            self._arrived.set()

    def answer(self, raw: bytes) -> None:
        self.transport.write(raw)

    async def received(self, count: int) -> list[bytes]:
        """The ``count``-th command, once it has arrived."""
        while len(self.commands) < count:
            self._arrived.clear()
            await self._arrived.wait()
        return self.commands[count - 1]


async def started(max_in_flight: int = 2):
    """A scripted peer, and a limiter (policy "deny": 503) whose Redis it is: (peer, server, limiter, route)."""
    loop = asyncio.get_running_loop()
    peer = ScriptedRedis()
    server = await loop.create_server(lambda: peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = RateLimitSettings(
        store="redis", on_redis_failure="deny", headers="none",
        redis=RedisSettings(url=f"redis://127.0.0.1:{port}", timeout=TIMEOUT_S, max_in_flight=max_in_flight),
        breaker=BreakerSettings(failures=100))
    limiter = RateLimiter.create_shared(settings)
    route = limiter.compile_route("scripted", [Limit(key=["ip"], rate="10/s")])
    limiter.attach(loop)
    return peer, server, limiter, route


def check(route, ip: bytes) -> tuple[asyncio.Future, list]:
    """Submit one check; (a Future of its first decision, the list of every decision it got)."""
    future = asyncio.get_running_loop().create_future()
    decisions: list = []

    def decided(decision) -> None:
        decisions.append(decision)
        if not future.done():
            future.set_result(decision)

    route.check(route.keys(ip, lambda name: None, b"", None, None), decided)
    return future, decisions


def key_of(route, ip: bytes) -> bytes:
    return route.keys(ip, lambda name: None, b"", None, None)[0]


def run(scenario) -> None:
    """Run the scenario on uvloop, bounded; no callback may have raised (the loop's exception handler)."""
    failures = []

    async def bounded():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: failures.append(context))
        async with asyncio.timeout(10):
            await scenario()

    uvloop.run(bounded())
    assert failures == []


def test_a_reply_after_the_deadline_decides_nothing_and_the_next_check_gets_its_own():
    async def scenario():
        peer, server, limiter, route = await started()
        first, first_decisions = check(route, b"192.0.2.1")
        await peer.received(1)  # EVALSHA for the first check: left unanswered
        assert (await first).status == 503  # the failure policy, at the deadline
        assert (limiter.stats.redis_timeouts, limiter.stats.redis_failures) == (1, 1)

        second, _ = check(route, b"192.0.2.2")
        command = await peer.received(2)
        assert key_of(route, b"192.0.2.2") in command
        peer.answer(reply(DENIED))  # the first check's reply, late
        peer.answer(reply(ALLOWED))  # the second's
        assert (await second).status == 200  # its own reply, not the late one
        await asyncio.sleep(0.01)
        assert len(first_decisions) == 1  # decided once, by the deadline
        assert peer.connections == 1  # the late reply was matched and dropped; the connection stays
        await limiter.close()
        server.close()

    run(scenario)


def test_a_batch_answered_in_time_is_redis_s_and_a_later_one_left_unanswered_times_out_at_its_own_deadline():
    """One timer watches the round trips in flight: armed for the first one's deadline, it must not
    time out a round trip that was answered, and must re-arm for the next one still in flight."""
    async def scenario():
        peer, server, limiter, route = await started()
        first, _ = check(route, b"192.0.2.1")
        await peer.received(1)
        peer.answer(reply(DENIED))
        assert (await first).status == 429  # Redis's answer
        await asyncio.sleep(TIMEOUT_S / 2)  # the timer armed for the first deadline fires before the second's
        second, _ = check(route, b"192.0.2.2")
        await peer.received(2)  # never answered
        assert (await second).status == 503
        assert (limiter.stats.redis_timeouts, limiter.stats.redis_round_trips) == (1, 2)
        await limiter.close()
        server.close()

    run(scenario)


def test_a_call_given_up_while_the_connection_is_made_is_never_written():
    """The RESP client's side of the deadline: a batch whose deadline passes while the connection
    is still being made (here: AUTH unanswered) is cancelled, and must not be written once it is made."""
    async def scenario():
        loop = asyncio.get_running_loop()
        peer = ScriptedRedis()
        server = await loop.create_server(lambda: peer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = RespClient(ServerAddress(f"redis://:secret@127.0.0.1:{port}"), 5.0, loop)
        given_up = client.execute(encode([b"INCR", b"given-up"]), 1)
        assert await peer.received(1) == [b"AUTH", b"secret"]  # left unanswered: still connecting
        given_up.cancel()  # its deadline
        peer.answer(b"+OK\r\n")
        wanted = client.execute(encode([b"INCR", b"wanted"]), 1)
        assert await peer.received(2) == [b"INCR", b"wanted"]
        peer.answer(b":1\r\n")
        assert await wanted == [1]
        assert len(peer.commands) == 2 and peer.connections == 1
        await client.close()
        server.close()

    run(scenario)


@pytest.mark.parametrize("answered_late", [False, True])
def test_shutdown_decides_the_checks_in_flight_and_pending_once(answered_late):
    async def scenario():
        peer, server, limiter, route = await started(max_in_flight=1)
        in_flight, in_flight_decisions = check(route, b"192.0.2.1")
        await peer.received(1)
        pending, pending_decisions = check(route, b"192.0.2.2")  # waits for the one slot
        await asyncio.sleep(0.01)
        assert len(peer.commands) == 1 and not pending.done()
        await limiter.close()
        assert (in_flight.result().status, pending.result().status) == (503, 503)
        if answered_late:
            peer.answer(reply(ALLOWED))
            await asyncio.sleep(0.01)
        assert (len(in_flight_decisions), len(pending_decisions)) == (1, 1)
        server.close()

    run(scenario)


def test_a_reply_of_the_wrong_shape_is_decided_by_the_policy_once():
    """Integers that do not fit the checks (more, fewer, or not integers) decide nothing from Redis:
    each check gets the failure policy's decision, once, and the loop's exception handler hears of it."""
    failures = []

    async def scenario():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: failures.append(context))
        peer, server, limiter, route = await started()
        for n, wrong in enumerate([reply(ALLOWED, ALLOWED), b"*0\r\n", b"*1\r\n$2\r\nok\r\n"], start=1):
            first, first_decisions = check(route, b"192.0.2.1")
            await peer.received(n)
            peer.answer(wrong)
            assert (await first).status == 503
            await asyncio.sleep(0.01)
            assert len(first_decisions) == 1
        await limiter.close()
        server.close()

    uvloop.run(asyncio.wait_for(scenario(), 10))
    assert [context["message"] for context in failures] == ["rate limit: a Redis reply of the wrong shape"] * 3
