"""Open many keep-alive connections to a server, send one request on each, and hold them.

    python bench/idle_conns.py --port 8080 --connections 10000 [--path /small]

Every connection sends ``GET PATH`` and reads the whole answer, so the server
has served a request on it and now keeps it as an idle keep-alive connection.
Once every connection has been tried the script prints ``ready OPEN FAILED``
and holds the open ones until SIGTERM or SIGINT, or until --hold-s runs out,
then closes them. The benchmark measures the server's memory meanwhile.
Raises its own RLIMIT_NOFILE to fit the connections.
"""

import argparse
import asyncio
import resource
import signal
import sys

CONNECT_TIMEOUT_S = 10.0
OPENING_AT_ONCE = 256
"""Connections being opened concurrently: keeps the server's accept queue from overflowing."""


async def _open(host: str, port: int, request: bytes, gate: asyncio.Semaphore):
    """A connection that has had one 200 answer, as (reader, writer), or None."""
    async with gate:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_S)
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CONNECT_TIMEOUT_S)
            lines = head.decode("latin-1").split("\r\n")
            fields = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
            await asyncio.wait_for(reader.readexactly(int(fields["content-length"])), CONNECT_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, KeyError, ValueError):
            return None
        if lines[0].split(" ")[1] != "200" or fields.get("connection") == "close":
            writer.close()
            return None
        return reader, writer


async def hold(host: str, port: int, path: str, connections: int, hold_s: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    gate = asyncio.Semaphore(OPENING_AT_ONCE)
    opened = [c for c in await asyncio.gather(*(_open(host, port, request, gate) for _ in range(connections))) if c]
    print(f"ready {len(opened)} {connections - len(opened)}", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), hold_s)
    except asyncio.TimeoutError:
        pass
    for _, writer in opened:
        writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--hold-s", type=float, default=300.0, help="hold at most this long")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + 100
    if soft < want:
        try:  # raising the hard limit needs root (CAP_SYS_RESOURCE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
        except (ValueError, PermissionError):
            sys.exit(f"cannot raise RLIMIT_NOFILE to {want} (hard limit {hard})")
    asyncio.run(hold(args.host, args.port, args.path, args.connections, args.hold_s))


if __name__ == "__main__":
    main()
