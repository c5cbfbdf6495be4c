"""Reading what an access-log sink wrote: JSON lines, and a pipe drained while the sink writes what it kept."""

import json
import os
import select


def lines_of(data: bytes) -> list[dict]:
    """The JSON objects of whole lines (the data must end with one)."""
    assert data.endswith(b"\n")
    return [json.loads(piece) for piece in data.splitlines()]


def drain(reader: int, sink) -> bytes:
    """Everything that reaches the pipe ``reader``, flushing ``sink`` while the pipe is quiet,
    until a flush brings nothing more."""
    received = bytearray()
    while True:
        ready, _, _ = select.select([reader], [], [], 0.2)
        if not ready:
            sink.flush()
            ready, _, _ = select.select([reader], [], [], 0.2)
            if not ready:
                return bytes(received)
        received += os.read(reader, 1 << 16)
