"""One health check against real sockets, on uvloop as in the checker: what passes, what fails and how the failure reads."""

import asyncio
import socket

import pytest
import uvloop

from fastgate.health.checker import Target, probe


def target(port: int, expected=frozenset([200]), timeout_s: float = 0.5) -> Target:
    return Target("u", f"127.0.0.1:{port}", "127.0.0.1", port, 0,
                  b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                  expected, 1.0, timeout_s, 2, 3)


async def check_against(answer: bytes | None, **kw) -> tuple[tuple[bool, str], list[bytes]]:
    """Run one probe against a server that sends ``answer`` (None: never answers); also what it received."""
    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.readuntil(b"\r\n\r\n"))
        if answer is None:
            await asyncio.sleep(5)
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        return await probe(target(server.sockets[0].getsockname()[1], **kw)), received
    finally:
        server.close()


@pytest.mark.parametrize("answer,expected,result", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", frozenset([200]), (True, "status 200")),
    (b"HTTP/1.0 204 No Content\r\n\r\n", frozenset(range(200, 300)), (True, "status 204")),
    (b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n", frozenset([200]), (False, "status 503")),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", frozenset([200]), (False, "connection closed before a response head")),
    (None, frozenset([200]), (False, "no response within 0.2s")),
])
def test_probe_outcomes(answer, expected, result):
    kw = {"timeout_s": 0.2} if answer is None else {}
    outcome, received = uvloop.run(check_against(answer, expected=expected, **kw))
    assert outcome == result
    assert received == [b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]


def test_garbage_fails_the_check():
    (passed, reason), _ = uvloop.run(check_against(b"NOT HTTP AT ALL\r\n\r\n"))
    assert not passed and "malformed response" in reason


def test_refused_connection_fails_the_check():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        assert uvloop.run(probe(target(sock.getsockname()[1]))) == (False, "Connection refused")
