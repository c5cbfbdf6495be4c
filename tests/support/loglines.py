"""Reading what an access-log sink wrote: JSON lines, and a pipe drained while the sink writes what it kept."""

import json
import os
import select
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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


@contextmanager
def slow_pipe(directory: Path) -> Iterator[tuple[Path, int]]:
    """A FIFO in ``directory`` and the non-blocking read end that nobody reads until the test drains it:
    (its path, for the sink to open, and the read descriptor), closed at the end."""
    fifo = directory / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        yield fifo, reader
    finally:
        os.close(reader)
