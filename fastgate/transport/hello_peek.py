"""Wait for a new TLS connection's ClientHello and look at it without reading it.

``peek_client_hello`` is given an accepted, non-blocking socket before
uvloop's TLS transport takes it. It returns the connection's first bytes up
to the end of the ClientHello (wire/tls_hello.py says where that is), taken
with MSG_PEEK, so the TLS stack reads them all again afterwards. It waits
for readability with ``add_reader``; when only part of the hello has come
(the client wrote it in pieces), SO_RCVLOWAT makes the socket readable only
once the rest is there, so the wait is not a busy loop, and it is put back
to 1 before the socket is handed on. Bytes that are no TLS handshake, a
hello longer than wire/tls_hello.MAX_HELLO_BYTES, the client closing
(b"") or an error end the wait with what there is: the handshake that
follows fails as it would have.
"""

import asyncio
import socket

from fastgate.wire.tls_hello import hello_bytes_needed

_FIRST_PEEK_BYTES = 4096
"""Bytes asked for by the first peek: more than a usual ClientHello (0.5-2 KB)."""


async def peek_client_hello(loop: asyncio.AbstractEventLoop, sock: socket.socket, timeout_s: float) -> bytes:
    """The bytes ``sock`` holds up to the end of its ClientHello, left unread.
    Raise TimeoutError when they have not all come within ``timeout_s``."""
    low_water_set = False
    try:
        async with asyncio.timeout(timeout_s):
            wanted = _FIRST_PEEK_BYTES
            while True:
                try:
                    data = sock.recv(wanted, socket.MSG_PEEK)
                except (BlockingIOError, InterruptedError):
                    await _readable(loop, sock)
                    continue
                except OSError:
                    return b""
                needed = hello_bytes_needed(data) if data else None
                if needed is None or needed <= len(data):
                    return data
                wanted = max(wanted, needed)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, needed)
                low_water_set = True
                await _readable(loop, sock)
    finally:
        if low_water_set:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
            except OSError:
                pass


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    woken = loop.create_future()

    def wake() -> None:
        if not woken.done():
            woken.set_result(None)

    fd = sock.fileno()
    loop.add_reader(fd, wake)
    try:
        await woken
    finally:
        loop.remove_reader(fd)
