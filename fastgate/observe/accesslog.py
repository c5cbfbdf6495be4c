"""The access log: one line per finished request, JSON or nginx's combined format.

Theory of operation
-------------------
Lines are made in an in-memory buffer, which goes out with one
``os.write`` on every clock tick (``flush``) or once it holds ``buffer``
bytes. With the C speedup (observe/_native_jsonline.c), a JSON line is
written into the buffer straight from the connection (``write_request``:
no record is made), and a line that finds the buffer full first writes it
out. Without it, and for the combined format, ``write(record)`` only keeps
the record; records become lines in batches (one ``msgspec`` call encodes
a whole batch of JSON lines, about half the cost of a call per line), and
the buffer goes out as soon as a batch fills it. The file is opened
``O_APPEND | O_NONBLOCK``,
and every write holds whole lines only, so the lines of several workers
appending to one file never mix: the kernel appends each write whole to a
regular file. A pipe or a terminal (``"stdout"``) is written in pieces of
whole lines of at most PIPE_BUF bytes, which a pipe takes whole or not at
all; ``"stdout"`` is reopened through /proc so that O_NONBLOCK does not
leak to the other holders of the descriptor (a socket, e.g. journald's, is
written with MSG_DONTWAIT instead).

Nothing here waits or raises. A target that cannot take lines now (EAGAIN:
a full pipe) keeps them in the buffer until the next tick; lines that
find the buffer at its bound are dropped (so it passes its bound by at most
a batch of lines, or one line from ``write_request``). A connection the C
writer cannot read (an attribute of an unexpected type: a bug) costs its
line, and a record that cannot be written (a str without UTF-8) its batch,
counted and reported the same way. A target that fails
(ENOSPC, EIO, a file that cannot be opened) drops what was buffered. Drops
are counted in ``dropped`` and reported in the error log at most
once every ``_COMPLAIN_EVERY_S``. ``reopen`` (SIGUSR1) writes what it can,
then opens the path again, so lines written after a rotation go to the
new file and none is lost.
"""

import asyncio
import functools
import os
import re
import select
import socket
import stat
import time

import msgspec

from fastgate.native import speedup
from fastgate.observe.errorlog import log
from fastgate.observe.record import RequestRecord

_native = speedup("observe._native_jsonline")

_COMPLAIN_EVERY_S = 10.0
_CLOSE_WAIT_S = 1.0
"""At worker exit, how long a full pipe is waited for before the rest is dropped."""
_FILE_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC
_PIPE_BUF = select.PIPE_BUF
_BATCH_RECORDS = 32
"""Records kept before they are turned into lines; fewer when ``buffer`` is small, so that
the buffer passes its bound by at most a batch of lines."""
_BUFFER_BYTES_PER_RECORD = 2048
_UNSAFE = re.compile(r'["\\\x00-\x1f\x7f-\xff]')


class JsonLines:
    """One JSON object per line: the record's fields (record.py) by name."""

    __slots__ = ("_encode_lines",)

    def __init__(self) -> None:
        self._encode_lines = msgspec.json.Encoder().encode_lines

    def __call__(self, records: list[RequestRecord], buffer: bytearray) -> None:
        buffer += self._encode_lines(records)


class CombinedLines:
    """nginx's ``combined`` format: ``$remote_addr - $remote_user [$time_local] "$request"
    $status $bytes_sent "$http_referer" "$http_user_agent"``.

    The byte count is what was sent for the request, head included (nginx's
    ``$bytes_sent``). Quotes, backslashes and bytes outside printable ASCII
    in the request line, referer and user agent are written ``\\xHH``, as nginx does.
    """

    __slots__ = ("_second", "_local_time")

    def __init__(self) -> None:
        self._second = -1
        self._local_time = ""

    def __call__(self, records: list[RequestRecord], buffer: bytearray) -> None:
        for record in records:
            second = int(record.time)
            if second != self._second:
                self._second = second
                self._local_time = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second))
            request = f"{record.method} {record.path} {record.protocol}" if record.method else ""
            buffer += (
                f'{record.client_ip} - - [{self._local_time}] "{_escape(request)}" {record.status} '
                f'{record.bytes_out} "{_escape(record.referer)}" "{_escape(record.user_agent)}"\n'
            ).encode("ascii")


def _escape(text: str) -> str:
    if not text:
        return "-"
    return _UNSAFE.sub(_hex, text)


def _hex(m: re.Match) -> str:
    return "\\x%02X" % ord(m.group())


class AccessLog:
    """A request sink (observe/observer.py) writing access log lines to a file or stdout."""

    __slots__ = ("target", "limit_bytes", "records", "batch", "buffer", "format_lines", "write_request",
                 "needs_record", "dropped", "_fd", "_send", "_socket", "_whole", "_blocked", "_complained_s")

    def __init__(self, target: str, fmt: str, limit_bytes: int) -> None:
        self.target = target
        """A file path, or "stdout"."""
        self.limit_bytes = limit_bytes
        self.records: list[RequestRecord] = []
        """Records not yet made lines."""
        self.batch = max(1, min(_BATCH_RECORDS, limit_bytes // _BUFFER_BYTES_PER_RECORD))
        self.buffer = bytearray()
        """Lines not yet written (always this one bytearray: the C writer holds it)."""
        self.format_lines = JsonLines() if fmt == "json" else CombinedLines()
        self.write_request = (
            _native.LineWriter(self.buffer, limit_bytes, self._line_at_bound, self._line_failed).write
            if fmt == "json" and _native is not None else None)
        """``write_request(conn, status, total_s)``: the JSON line of ``conn``'s finished request, made
        in C straight into the buffer (observe/_native_jsonline.c); or None (the Python path)."""
        self.needs_record = self.write_request is None
        """False: the observer calls ``write_request`` instead of ``write`` (observe/observer.py)."""
        self.dropped = 0
        """Lines lost because the target failed or could not keep up (read by metrics)."""
        self._fd = -1
        self._send = None
        """Writes bytes to the target without waiting; returns the count written."""
        self._socket: socket.socket | None = None
        """stdout when it is a socket (written with MSG_DONTWAIT)."""
        self._whole = True
        """The target is a regular file: the whole buffer goes out in one write."""
        self._blocked = False
        """The target refused bytes (EAGAIN) since the last tick: no further try until the next one."""
        self._complained_s = -_COMPLAIN_EVERY_S
        self._open()

    # -- the sink contract ---------------------------------------------------
    def write(self, record: RequestRecord) -> None:
        records = self.records
        records.append(record)
        if len(records) >= self.batch:
            self._make_lines()
            if len(self.buffer) >= self.limit_bytes and not self._blocked:
                self._write_out()

    def flush(self) -> None:
        self._blocked = False
        if self.records:
            self._make_lines()
        if self.buffer:
            self._write_out()

    def reopen(self) -> None:
        self.flush()
        if self.target != "stdout":
            self._close_fd()
            self._open()

    async def close(self) -> None:
        deadline = time.monotonic() + _CLOSE_WAIT_S
        self.flush()
        while self.buffer and self._blocked and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            self.flush()
        if self.buffer:
            self._drop("not written before exit")
        self._close_fd()

    # -- writing ---------------------------------------------------------------
    def _line_at_bound(self, conn, status: int, total_s: float) -> None:
        """The C writer found the buffer at its bound: write it out if the target takes
        lines, and try again; else the line is dropped."""
        if not self._blocked:
            self._write_out()
            if len(self.buffer) < self.limit_bytes:
                self.write_request(conn, status, total_s)
                return
        self.dropped += 1
        self._complain("cannot keep up")

    def _line_failed(self, exc: Exception) -> None:
        """The C writer could not read the connection (an attribute of an unexpected type: a bug)."""
        self.dropped += 1
        self._complain(f"a request could not be logged ({type(exc).__name__}: {exc})")

    def _make_lines(self) -> None:
        """Turn the kept records into lines, or drop them while the target is not taking lines."""
        records = self.records
        if len(self.buffer) >= self.limit_bytes:
            self.dropped += len(records)
            self._complain("cannot keep up")
        else:
            try:
                self.format_lines(records, self.buffer)
            except (ValueError, TypeError) as exc:  # a field that cannot be written (a bug): the batch is lost
                self.dropped += len(records)
                self._complain(f"lines could not be made ({type(exc).__name__}: {exc})")
        records.clear()

    def _write_out(self) -> None:
        buffer = self.buffer
        if self._fd < 0:
            self._drop("not open")
            return
        try:
            while buffer:
                if self._whole:
                    written = self._send(buffer)
                else:
                    end = buffer.rfind(b"\n", 0, _PIPE_BUF) + 1 or buffer.find(b"\n") + 1
                    written = self._send(buffer[:end])
                if written == len(buffer):
                    buffer.clear()
                else:
                    del buffer[:written]
        except BlockingIOError:
            self._blocked = True
        except OSError as exc:
            self._drop(exc.strerror or str(exc))

    def _drop(self, reason: str) -> None:
        """Give up on the buffered lines."""
        self.dropped += self.buffer.count(b"\n")
        self.buffer.clear()
        self._complain(reason)

    def _complain(self, reason: str) -> None:
        now = time.monotonic()
        if now - self._complained_s >= _COMPLAIN_EVERY_S:
            self._complained_s = now
            log.error("access log %s: %s; %d lines dropped so far", self.target, reason, self.dropped)

    # -- the target ------------------------------------------------------------
    def _open(self) -> None:
        try:
            if self.target == "stdout":
                self._open_stdout()
            else:
                self._fd = os.open(self.target, _FILE_FLAGS | os.O_CREAT, 0o644)
                self._send = functools.partial(os.write, self._fd)
        except OSError as exc:
            self._fd = -1
            log.error("access log %s: cannot open: %s; lines are dropped until it can be (SIGUSR1 retries)",
                      self.target, exc.strerror or exc)
            return
        self._whole = stat.S_ISREG(os.fstat(self._fd).st_mode)

    def _open_stdout(self) -> None:
        """A descriptor of our own on stdout, so that O_NONBLOCK is ours alone."""
        try:
            self._fd = os.open("/proc/self/fd/1", _FILE_FLAGS)
        except OSError:  # a socket (journald) cannot be opened again; or there is no /proc
            self._fd = os.dup(1)
            if stat.S_ISSOCK(os.fstat(self._fd).st_mode):
                self._socket = sock = socket.socket(fileno=self._fd)
                self._send = lambda data: sock.send(data, socket.MSG_DONTWAIT)
                return
        self._send = functools.partial(os.write, self._fd)

    def _close_fd(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        elif self._fd >= 0:
            os.close(self._fd)
        self._fd = -1
