"""fastgate's RESP2 client against a real redis-server: pipelining, late replies, db, auth, reconnects."""

import asyncio

import pytest
import uvloop

from fastgate.runtime.resp import ReplyError, RespClient, ServerAddress, encode
from tests.support.redis_server import RedisServer


def commands(*cmds: list[bytes]) -> tuple[bytes, int]:
    return b"".join(encode(c) for c in cmds), len(cmds)


def run(coroutine_fn):
    return uvloop.run(coroutine_fn())


def test_pipelined_replies_in_order_and_an_error_answers_its_command_only():
    with RedisServer() as server:
        async def scenario():
            client = RespClient(ServerAddress(server.url), 2.0, asyncio.get_running_loop())
            try:
                return await client.execute(*commands(
                    [b"SET", b"k", b"v"], [b"INCR", b"k"], [b"RPUSH", b"l", b"a", b"b"], [b"LRANGE", b"l", b"0", b"-1"],
                    [b"GET", b"missing"], [b"PING"]))
            finally:
                await client.close()

        ok, error, pushed, items, missing, pong = run(scenario)
        assert (ok, pushed, items, missing, pong) == (b"OK", 2, [b"a", b"b"], None, b"PONG")
        assert isinstance(error, ReplyError) and "not an integer" in str(error)


def test_a_reply_that_comes_after_its_caller_gave_up_is_dropped():
    """A caller's deadline passes while Redis still works on its command; the next command must get
    its own reply, not the late one."""
    with RedisServer() as server:
        async def scenario():
            client = RespClient(ServerAddress(server.url), 2.0, asyncio.get_running_loop())
            try:
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await client.execute(*commands([b"BLPOP", b"empty", b"0.3"]))
                return await client.execute(*commands([b"ECHO", b"mine"]))
            finally:
                await client.close()

        assert run(scenario) == [b"mine"]


def test_database_from_the_url_and_credentials():
    with RedisServer(password="s3cret") as server:
        server.cli("acl", "setuser", "gate", "on", ">pw", "~*", "+@all")

        async def scenario():
            loop = asyncio.get_running_loop()
            by_url = RespClient(ServerAddress(f"redis://gate:pw@127.0.0.1:{server.port}/3"), 2.0, loop)
            by_settings = RespClient(ServerAddress(f"redis://127.0.0.1:{server.port}", "gate", "pw"), 2.0, loop)
            wrong = RespClient(ServerAddress(f"redis://127.0.0.1:{server.port}", "", "wrong"), 2.0, loop)
            try:
                await by_url.execute(*commands([b"SET", b"where", b"db3"]))
                reply = await by_settings.execute(*commands([b"GET", b"where"]))
                with pytest.raises(ReplyError, match="WRONGPASS"):
                    await wrong.execute(*commands([b"PING"]))
                return reply
            finally:
                for client in (by_url, by_settings, wrong):
                    await client.close()

        assert run(scenario) == [None]  # db 0 does not have it
        assert server.cli("-n", "3", "get", "where").strip() == "db3"


def test_callers_waiting_on_a_killed_server_fail_at_once_and_the_next_call_reconnects():
    with RedisServer() as server:
        async def scenario():
            client = RespClient(ServerAddress(server.url), 2.0, asyncio.get_running_loop())
            try:
                assert await client.execute(*commands([b"PING"])) == [b"PONG"]
                waiting = asyncio.ensure_future(client.execute(*commands([b"BLPOP", b"empty", b"5"])))
                await asyncio.sleep(0.1)
                server.kill()
                with pytest.raises(ConnectionError):
                    async with asyncio.timeout(2):
                        await waiting
                with pytest.raises(OSError):
                    await client.execute(*commands([b"PING"]))
                server.start()
                return await client.execute(*commands([b"PING"]))
            finally:
                await client.close()

        assert run(scenario) == [b"PONG"]
