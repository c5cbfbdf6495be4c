"""Access log lines (JSON and combined) and the sink's writing: whole lines, bounded, never blocking."""

import json
import os
import re
import select
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from fastgate.observe.accesslog import AccessLog, CombinedLines, JsonLines
from fastgate.observe.record import RequestRecord
from tests.support.loglines import drain, lines_of, slow_pipe


def record(**fields) -> RequestRecord:
    values = dict(
        time=1700000000.25, request_id="rid-1", trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        span_id="00f067aa0ba902b7", client_ip="10.1.2.3", method="GET", path="/v1/users?id=7",
        protocol="HTTP/1.1", status=200, bytes_in=120, bytes_out=543, route="api",
        upstream="127.0.0.1:9000", upstream_time=0.002, total_time=0.003, ratelimit="",
        user_agent="curl/8.5.0", referer="",
    )
    values.update(fields)
    return RequestRecord(**values)


def line(fmt, rec: RequestRecord) -> bytes:
    buffer = bytearray()
    fmt([rec], buffer)
    return bytes(buffer)


def test_a_json_line_holds_every_field_of_the_record():
    rec = record(user_agent='evil"\n\x00agent')
    out = line(JsonLines(), rec)
    assert out.endswith(b"\n") and out.count(b"\n") == 1  # control characters are escaped
    assert json.loads(out) == msgspec.to_builtins(rec)


def test_the_combined_format_is_nginx_s():
    out = line(CombinedLines(), record(referer="https://example.com/", user_agent="Mozilla/5.0 (X11)"))
    m = re.fullmatch(
        rb'10\.1\.2\.3 - - \[(\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] '
        rb'"GET /v1/users\?id=7 HTTP/1\.1" 200 543 "https://example\.com/" "Mozilla/5\.0 \(X11\)"\n', out)
    assert m, out
    os.environ["TZ"] = "UTC"
    try:
        import time
        time.tzset()
        assert line(CombinedLines(), record()).split(b"[")[1].split(b"]")[0] == b"14/Nov/2023:22:13:20 +0000"
    finally:
        del os.environ["TZ"]
        time.tzset()


def test_the_combined_format_escapes_and_fills_empty_fields_like_nginx():
    out = line(CombinedLines(), record(path='/a"b\\c', user_agent="x\ty\xe9", referer=""))
    assert b'"GET /a\\x22b\\x5Cc HTTP/1.1"' in out
    assert out.endswith(b' "-" "x\\x09y\\xE9"\n')
    refused = line(CombinedLines(), record(method="", path="", status=400))
    assert b'] "-" 400 ' in refused



def test_lines_wait_for_the_tick_then_go_out_whole(tmp_path):
    path = tmp_path / "access.log"
    sink = AccessLog(str(path), "json", 64 * 1024)
    for i in range(3):
        sink.write(record(request_id=f"r{i}"))
    assert path.read_bytes() == b""  # buffered until the tick
    sink.flush()
    assert [r["request_id"] for r in lines_of(path.read_bytes())] == ["r0", "r1", "r2"]


def test_a_full_buffer_is_written_without_waiting_for_the_tick(tmp_path):
    path = tmp_path / "access.log"
    sink = AccessLog(str(path), "json", 1024)
    for i in range(10):
        sink.write(record(request_id=f"r{i}"))
    written = lines_of(path.read_bytes())
    assert 0 < len(written) < 10 and len(sink.buffer) < 1024
    sink.flush()
    assert len(lines_of(path.read_bytes())) == 10 and sink.dropped == 0


def test_a_record_that_cannot_be_written_costs_its_batch_and_the_log_goes_on(tmp_path, caplog):
    path = tmp_path / "access.log"
    sink = AccessLog(str(path), "json", 64 * 1024)
    sink.write(record(request_id="lost", route="\ud800"))  # a lone surrogate has no UTF-8
    sink.flush()
    sink.write(record(request_id="kept"))
    sink.flush()
    assert [r["request_id"] for r in lines_of(path.read_bytes())] == ["kept"]
    assert sink.dropped == 1 and "lines could not be made (UnicodeEncodeError" in caplog.text


def test_a_full_disk_drops_and_counts_lines(caplog):
    sink = AccessLog("/dev/full", "json", 64 * 1024)
    for i in range(5):
        sink.write(record())
    sink.flush()
    sink.write(record())
    sink.flush()
    assert sink.dropped == 6 and not sink.buffer
    assert sum("No space left on device" in r.getMessage() for r in caplog.records) == 1  # rate-limited


def test_a_target_that_cannot_be_opened_drops_and_counts(tmp_path, caplog):
    sink = AccessLog(str(tmp_path / "missing" / "access.log"), "combined", 64 * 1024)
    sink.write(record())
    sink.flush()
    assert sink.dropped == 1
    assert any("cannot open" in r.getMessage() for r in caplog.records)
    (tmp_path / "missing").mkdir()
    sink.reopen()  # SIGUSR1 tries again
    sink.write(record())
    sink.flush()
    assert (tmp_path / "missing" / "access.log").read_bytes().count(b"\n") == 1


def test_a_pipe_nobody_reads_never_blocks_and_bounds_the_buffer(tmp_path):
    with slow_pipe(tmp_path) as (fifo, reader):
        sink = AccessLog(str(fifo), "json", 8 * 1024)
        total = 2000  # far more than the pipe (64 KiB) and the buffer hold
        for i in range(total):
            sink.write(record(request_id=f"r{i:05d}"))
            if i % 100 == 0:
                sink.flush()
        assert len(sink.buffer) < 8 * 1024 + sink.batch * 1024  # the bound, passed by at most one batch
        assert sink.dropped > 0
        ids = [r["request_id"] for r in lines_of(drain(reader, sink))]  # every line whole
        assert len(ids) + sink.dropped == total
        assert ids == sorted(ids)  # in order


_WRITER = """
import sys, time
from tests.unit.test_access_log import record
from fastgate.observe.accesslog import AccessLog
sink = AccessLog(sys.argv[1], "json", 64 * 1024)
for i in range(2000):
    sink.write(record(request_id=f"{sys.argv[2]}{i:05d}", user_agent="u" * (i % 700)))
    if i % 50 == 0:
        sink.flush()
while sink.buffer:
    time.sleep(0.01)
    sink.flush()
print(sink.dropped)
"""


def test_two_processes_writing_one_pipe_never_mix_lines(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(fifo), tag], stdout=subprocess.PIPE,
                                cwd=Path(__file__).resolve().parents[2]) for tag in "ab"]
    received = bytearray()
    try:
        while True:
            done = all(w.poll() is not None for w in writers)
            piece = os.read(reader, 1000) if select.select([reader], [], [], 0.1)[0] else b""
            if not piece and done:
                break
            received += piece
    finally:
        os.close(reader)
        for w in writers:
            w.kill()
            w.wait()
    dropped = sum(int(w.stdout.read()) for w in writers)
    ids = [r["request_id"] for r in lines_of(bytes(received))]  # any mixed line fails to parse
    assert len(ids) + dropped == 4000
    for tag in "ab":
        mine = [i for i in ids if i.startswith(tag)]
        assert mine and mine == sorted(mine)


@pytest.mark.parametrize("fmt", ["json", "combined"])
def test_reopen_moves_to_a_new_file_without_losing_lines(tmp_path, fmt):
    path = tmp_path / "access.log"
    sink = AccessLog(str(path), fmt, 64 * 1024)
    sink.write(record(request_id="before"))
    sink.flush()
    path.rename(tmp_path / "access.log.1")
    sink.write(record(request_id="buffered"))
    sink.reopen()
    sink.write(record(request_id="after"))
    sink.flush()
    assert (tmp_path / "access.log.1").read_bytes().count(b"\n") == 2  # buffered lines go to the old file
    assert path.read_bytes().count(b"\n") == 1


def test_the_json_error_log_has_time_level_pid_message_and_exception():
    import logging

    from fastgate.observe.errorlog import JsonFormatter

    try:
        raise ValueError("boom")
    except ValueError:
        entry = logging.LogRecord("fastgate", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
    out = json.loads(JsonFormatter().format(entry))
    assert out["level"] == "error" and out["message"] == "failed here" and out["pid"] == os.getpid()
    assert out["logger"] == "fastgate" and out["time"] == entry.created
    assert out["exception"].startswith("Traceback") and "ValueError: boom" in out["exception"]
    plain = logging.LogRecord("fastgate", logging.INFO, __file__, 1, "fine", (), None)
    assert "exception" not in json.loads(JsonFormatter().format(plain))
