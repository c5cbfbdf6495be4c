"""The access log's JSON line made in C (observe/_native_jsonline.c) against its reference, the
Python path (record.py's make_record encoded by msgspec), on the same connections; and how the
access log and the observer use it."""

import gc
import json
import re
import sys
import time

import msgspec
import pytest

from fastgate.native import speedup
from fastgate.observe import observer as observer_module
from fastgate.observe.accesslog import AccessLog
from fastgate.observe.observer import RequestObserver
from fastgate.observe.record import LIMIT_ALLOWED, LIMIT_LIMITED, make_record
from fastgate.observe.trace import Tracer
from fastgate.wire.h1 import RequestHead, new_request_parser, parse_request_head
from tests.support.loglines import drain, lines_of, slow_pipe

native = speedup("observe._native_jsonline")
needs_native = pytest.mark.skipif(
    native is None, reason="the C speedup fastgate.observe._native_jsonline is not built "
    "(python setup.py build_ext --inplace), or FASTGATE_PURE_PYTHON=1 asks for the Python path")

FLOATS = ("time", "upstream_time", "total_time")
_FLOAT_VALUES = re.compile(rb'"(time|upstream_time|total_time)":[^,}]*')
_ENCODE_LINES = msgspec.json.Encoder().encode_lines


class Route:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class Conn:
    """The attributes of proxy/session.py's ProxySession that the log phase reads."""

    __slots__ = ("head", "route", "request_id", "client_text", "bytes_in", "bytes_out", "upstream_s",
                 "upstream_label", "limit_outcome", "traceparent")

    def __init__(self, head=None, **fields) -> None:
        self.head = head
        self.route = Route("api")
        self.request_id = b"9f2c4e0a1b3d5f7e00000001"
        self.client_text = "10.1.2.3"
        self.bytes_in = 120
        self.bytes_out = 543
        self.upstream_s = 0.0012
        self.upstream_label = "127.0.0.1:9000"
        self.limit_outcome = ""
        self.traceparent = b""
        for name, value in fields.items():
            setattr(self, name, value)


class DictConn:
    """The same attributes in an instance dict (not slots): the C code's slower path."""

    def __init__(self, head=None, **fields) -> None:
        slotted = Conn(head, **fields)
        for name in Conn.__slots__:
            setattr(self, name, getattr(slotted, name))


def make_head(raw: bytes) -> RequestHead:
    """A head as wire/h1.py leaves it, without httptools' validation (so any bytes can be in it)."""
    line_end = raw.find(b"\r\n")
    method, target, version = raw[:line_end].split(b" ")
    head = RequestHead(raw, line_end)
    head.method = method
    head.target = target
    head.http_1_0 = version == b"HTTP/1.0"
    head.lowered = raw.lower()
    return head


def http2(head: RequestHead) -> RequestHead:
    """The head as transport/h2_server.py leaves it: rendered as HTTP/1.1, marked as HTTP/2."""
    head.http2 = True
    return head


def request(*header_lines: bytes, line: bytes = b"GET /v1/users?id=7 HTTP/1.1") -> RequestHead:
    return make_head(b"\r\n".join((line, b"Host: example.com", *header_lines)) + b"\r\n\r\n")


def python_line(conn, status: int, total_s: float) -> bytes:
    return _ENCODE_LINES([make_record(conn, status, total_s)])


def append(buffer: bytearray, limit_bytes: int, conn, status, total_s) -> bool:
    """One line through a LineWriter: False when the buffer was at its bound; what it failed with raised."""
    at_bound, failures = [], []
    native.LineWriter(buffer, limit_bytes, lambda *args: at_bound.append(args), failures.append).write(
        conn, status, total_s)
    if failures:
        raise failures.pop()
    return not at_bound


def native_line(conn, status: int, total_s: float) -> bytes:
    buffer = bytearray()
    assert append(buffer, 1 << 20, conn, status, total_s) is True
    return bytes(buffer)


def microseconds_text(seconds: float) -> bytes:
    """How the C code writes a float: rounded to microseconds, no trailing zeros but one digit."""
    us = round(seconds * 1e6)
    whole, fraction = divmod(us, 1000000)
    return b"%d.%s" % (whole, (b"%06d" % fraction).rstrip(b"0") or b"0")


def assert_same_line(conn, status: int = 200, total_s: float = 0.0021) -> dict:
    before = time.time()
    expected = python_line(conn, status, total_s)
    got = native_line(conn, status, total_s)
    after = time.time()
    assert got.endswith(b"}\n") and got.count(b"\n") == 1
    # byte for byte, but for the floats' digits: same keys, order, escapes and omissions
    assert _FLOAT_VALUES.sub(rb'"\1":0', got) == _FLOAT_VALUES.sub(rb'"\1":0', expected)
    mine, reference = json.loads(got), json.loads(expected)
    assert list(mine) == list(reference)
    for key in reference:
        if key not in FLOATS:
            assert mine[key] == reference[key], key
    for line_time in (mine["time"], reference["time"]):  # when the head arrived: now less the total time
        assert before - total_s - 1e-6 <= line_time <= after - total_s + 1e-6
    assert mine["upstream_time"] == pytest.approx(reference["upstream_time"], abs=1e-6)
    assert mine["total_time"] == pytest.approx(reference["total_time"], abs=1e-6)
    floats = dict(re.findall(rb'"(upstream_time|total_time)":([^,}]*)', got))
    assert floats[b"upstream_time"] == microseconds_text(conn.upstream_s)
    assert floats[b"total_time"] == microseconds_text(total_s)
    return mine


CONNECTIONS = {
    "refused before a head": lambda: Conn(None, route=None, upstream_label=""),
    "plain": lambda: Conn(request(b"User-Agent: curl/8.5.0")),
    "http/1.0": lambda: Conn(request(line=b"GET / HTTP/1.0")),
    "no route, no upstream": lambda: Conn(request(), route=None, upstream_label="", upstream_s=0.0),
    "user agent and referer in odd case": lambda: Conn(request(
        b"uSeR-aGeNt: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        b"REFERER: https://example.com/a?b=c")),
    "referer first, then user agent": lambda: Conn(request(b"Referer: r", b"user-agent: u")),
    "first of repeated headers": lambda: Conn(request(b"User-Agent: first", b"User-Agent: second",
                                                      b"Referer: one", b"Referer: two")),
    "names that only end like them": lambda: Conn(request(b"X-Referer: no", b"X-User-Agent: no",
                                                          b"Referer: yes")),
    "values stripped of blanks": lambda: Conn(request(b"User-Agent: \t spaced out \t ",
                                                      b"Referer:no-space")),
    "empty values": lambda: Conn(request(b"User-Agent:", b"Referer:   \t")),
    "quotes, backslashes and controls": lambda: Conn(request(
        b'User-Agent: a"b\\c\x01d\x1fe\x7ff\x08g\x0ch\x0bi\x00j',
        b'Referer: "\\"\\\\"',
        line=b'GET /a"b\\c%00?q="x" HTTP/1.1')),
    "latin-1 bytes": lambda: Conn(request(b"User-Agent: caf\xe9 \x80\x9f\xa0\xff",
                                          line=b"GET /\xe9t\xe9 HTTP/1.1"),
                                  request_id=b"id-\xff\x80"),
    "control bytes in the request line": lambda: Conn(request(line=b"G\tT /\x1b[0m\x7f HTTP/1.1")),
    "empty strings": lambda: Conn(request(), request_id=b"", client_text="", upstream_label="",
                                  route=Route("")),
    "str fields with escapes and non-ASCII": lambda: Conn(
        request(), route=Route('caf\xe9 "r\\o\nute\x7f \u2603 \U0001f600'), client_text="::1",
        upstream_label="h\xf6st:80", limit_outcome=LIMIT_ALLOWED),
    "limited": lambda: Conn(request(), limit_outcome=LIMIT_LIMITED, upstream_label="", upstream_s=0.0),
    "traced": lambda: Conn(request(b"User-Agent: t"), traceparent=Tracer(1.0).start(b"")),
    "trace continued": lambda: Conn(request(), traceparent=Tracer(0.5).start(
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")),
    "big ints": lambda: Conn(request(), bytes_in=2**40 + 7, bytes_out=2**63 - 1),
    "ints past 64 bits": lambda: Conn(request(), bytes_in=2**64 + 1, bytes_out=10**30),
    "negative ints": lambda: Conn(request(), bytes_in=-1, bytes_out=-(2**63)),
    "upstream time rounds": lambda: Conn(request(), upstream_s=123.4567894),
    "upstream time below a microsecond": lambda: Conn(request(), upstream_s=4e-7),
    "upstream time as an int": lambda: Conn(request(), upstream_s=3),
    "an instance dict": lambda: DictConn(request(b"User-Agent: dict", b"Referer: d")),
    "over HTTP/2": lambda: Conn(http2(request(b"User-Agent: h2load"))),
    "a head parsed by wire/h1.py": lambda: Conn(parse_request_head(
        b"POST /submit?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent:  python-httpx/0.27\r\n"
        b"Referer: https://example.com/\xe9\r\nContent-Length: 0\r\n\r\n", 8192, 100, new_request_parser())),
}


@needs_native
@pytest.mark.parametrize("name", CONNECTIONS)
def test_the_line_is_the_python_line(name):
    assert_same_line(CONNECTIONS[name]())


@needs_native
@pytest.mark.parametrize("status, total_s", [(200, 0.0), (499, 1.5), (502, 0.000001), (0, 12345.6789015),
                                             (10**20, 2.0000004)])
def test_status_and_durations(status, total_s):
    line = assert_same_line(Conn(request()), status, total_s)
    assert line["status"] == status


@needs_native
def test_every_byte_of_a_header_value_at_every_position():
    """Each byte value, at each place of values of 1 to 20 bytes (the C code reads 8 at a time)."""
    for length in range(1, 21):
        for at in range(length):
            for byte in list(range(0x20)) + [0x22, 0x5c, 0x7f, 0x80, 0xc3, 0xff]:
                value = bytearray(b"abcdefghijklmnopqrstuvwxyz"[:length])
                value[at] = byte
                if byte in b"\r\n" or (value.strip() != value):  # not a header value as httptools passes it
                    continue
                assert_same_line(Conn(request(b"User-Agent: " + bytes(value)), request_id=bytes(value)))


@needs_native
def test_every_character_of_a_str_field():
    text = "".join(map(chr, range(0x100))) + "\u2028\u20ac\U0001f600"
    for length in (1, 7, 8, 9, 17, len(text)):
        for start in range(0, len(text) - length + 1, 5):
            assert_same_line(Conn(request(), route=Route(text[start:start + length])))


@needs_native
def test_kept_route_and_upstream_texts_are_always_the_current_ones():
    """The writer keeps the text of the last route names, upstream labels and outcomes it saw, by object:
    names made and dropped one after another (a freed str's address is soon another's), more names than
    it keeps, names too long to keep, and names coming back all come out as they are."""
    for i in range(2000):
        name, label = "route-%d" % (i % 300), "10.0.%d.1:80" % i
        if i % 7 == 0:
            name = name * 20  # longer than a kept text
        line = json.loads(native_line(Conn(request(), route=Route(name), upstream_label=label,
                                           limit_outcome=("", "allowed", "limited")[i % 3]), 200, 0.1))
        assert (line["route"], line["upstream"], line.get("ratelimit", "")) == (name, label,
                                                                               ("", "allowed", "limited")[i % 3])


@needs_native
def test_the_time_is_when_the_head_arrived():
    before = time.time()
    line = json.loads(native_line(Conn(request()), 200, 2.5))
    assert before - 2.5 - 0.001 <= line["time"] <= time.time() - 2.5 + 0.001
    assert re.search(rb'"time":\d{10}\.\d{1,6},', native_line(Conn(request()), 200, 0.0))


@needs_native
def test_the_time_is_right_in_every_second():
    """The whole seconds are kept from line to line (until the second changes): times seconds apart,
    and going back, each come out whole."""
    for total_s in (0.0, 7.25, 0.5, 3600.000001, 0.0, 86400.75, 1.0):
        before = time.time()
        seconds = float(re.search(rb'"time":(\d+\.\d+),', native_line(Conn(request()), 200, total_s))[1])
        assert before - total_s - 0.001 <= seconds <= time.time() - total_s + 0.001


@needs_native
def test_a_full_buffer_takes_no_line():
    conn = Conn(request())
    buffer = bytearray(b"x" * 100)
    assert append(buffer, 100, conn, 200, 0.1) is False and buffer == b"x" * 100
    assert append(buffer, 101, conn, 200, 0.1) is True  # below the bound: the line goes past it
    assert buffer.startswith(b"x" * 100 + b'{"time":') and len(buffer) > 101


def _set(obj, name, value):
    setattr(obj, name, value)
    return obj


WRONG = [
    ("bytes_in a str", lambda: Conn(request(), bytes_in="12"), TypeError),
    ("bytes_out a float", lambda: Conn(request(), bytes_out=1.0), TypeError),
    ("request_id a str", lambda: Conn(request(), request_id="rid"), TypeError),
    ("client_text bytes", lambda: Conn(request(), client_text=b"10.0.0.1"), TypeError),
    ("upstream_label None", lambda: Conn(request(), upstream_label=None), TypeError),
    ("limit_outcome an int", lambda: Conn(request(), limit_outcome=1), TypeError),
    ("traceparent a str", lambda: Conn(request(), traceparent="00-x"), TypeError),
    ("route without a name", lambda: Conn(request(), route=object()), AttributeError),
    ("route name None", lambda: Conn(request(), route=Route(None)), TypeError),
    ("upstream_s a str", lambda: Conn(request(), upstream_s="0.1"), TypeError),
    ("upstream_s NaN", lambda: Conn(request(), upstream_s=float("nan")), ValueError),
    ("upstream_s too large", lambda: Conn(request(), upstream_s=1e300), ValueError),
    ("head not a head", lambda: Conn(b"GET / HTTP/1.1\r\n\r\n"), AttributeError),
    ("head.raw None", lambda: Conn(_set(request(), "raw", None)), TypeError),
    ("head.lowered a str", lambda: Conn(_set(request(), "lowered", "get / http/1.1")), TypeError),
    ("head.method a str", lambda: Conn(_set(request(), "method", "GET")), TypeError),
    ("a lone surrogate", lambda: Conn(request(), route=Route("\ud800")), UnicodeEncodeError),
    ("not a connection", lambda: object(), AttributeError),
]


@needs_native
@pytest.mark.parametrize("name, make, error", WRONG, ids=[w[0] for w in WRONG])
def test_a_wrong_typed_attribute_raises_and_leaves_the_buffer_alone(name, make, error):
    buffer = bytearray(b"kept\n")
    with pytest.raises(error):
        append(buffer, 1 << 20, make(), 200, 0.1)
    assert buffer == b"kept\n"


@needs_native
@pytest.mark.parametrize("args, error", [
    ((b"not a bytearray", 1000, None, 200, 0.1), TypeError),
    ((bytearray(), "1000", None, 200, 0.1), TypeError),
    ((bytearray(), 1000, None, "200", 0.1), TypeError),
    ((bytearray(), 1000, None, 200, None), TypeError),
    ((bytearray(), 1000, None, 200, float("inf")), ValueError),
])
def test_wrong_arguments_raise(args, error):
    if args[2:3] == (None,):
        args = args[:2] + (Conn(request()),) + args[3:]
    with pytest.raises(error):
        append(*args)


@needs_native
def test_a_writer_needs_its_three_arguments_and_callable_callbacks():
    write = native.LineWriter(bytearray(), 1000, print, print).write
    with pytest.raises(TypeError):
        write(Conn(request()), 200)
    with pytest.raises(TypeError):
        native.LineWriter(bytearray(), 1000, None, print)


@needs_native
def test_a_changed_class_is_read_as_changed():
    """The C code remembers where a class keeps an attribute, and must notice when that changes."""

    class Changing(Conn):
        __slots__ = ()

    conn = Changing(request())
    assert json.loads(native_line(conn, 200, 0.1))["bytes_in"] == 120
    Changing.bytes_in = property(lambda self: 7)
    try:
        assert json.loads(native_line(conn, 200, 0.1))["bytes_in"] == 7
    finally:
        del Changing.bytes_in
    assert json.loads(native_line(conn, 200, 0.1))["bytes_in"] == 120
    del conn.bytes_out  # an unset slot
    with pytest.raises(AttributeError):
        native_line(conn, 200, 0.1)
    assert_same_line(Conn(request()))  # the other class, read since


@needs_native
def test_no_reference_is_leaked_or_lost():
    values = dict(request_id=b"rid-%d" % id(object()), client_text="client-%d" % id(object()),
                  bytes_in=2**70 + id(object()), upstream_label="up-%d" % id(object()),
                  traceparent=Tracer(1.0).start(b""))
    head = request(b"User-Agent: ua-%d" % id(object()))
    conn = Conn(head, **values)
    bad = Conn(head, **values, upstream_s="bad")
    watched = [*values.values(), head, head.raw, head.lowered, head.method, head.target, conn.route,
               conn.route.name, conn.upstream_s]
    buffer = bytearray()
    at_bound, failures = [], []
    write = native.LineWriter(buffer, 1 << 30, lambda *args: at_bound.append(len(args)),
                              lambda exc: failures.append(type(exc))).write
    full = native.LineWriter(buffer, 0, lambda *args: at_bound.append(len(args)), failures.append).write
    write(conn, 200, 0.5)  # the route's name and the upstream label are kept (one reference each), once
    buffer.clear()
    before = [sys.getrefcount(v) for v in watched]
    for _ in range(1000):
        write(conn, 200, 0.5)
        write(bad, 200, 0.5)
        full(conn, 200, 0.5)
    assert [sys.getrefcount(v) for v in watched] == before
    assert buffer.count(b"\n") == 1000
    assert failures == [TypeError] * 1000 and at_bound == [3] * 1000


@needs_native
def test_lines_appended_over_many_growths_are_the_lines_one_after_another():
    """The writer grows the bytearray itself (and writes into its spare room): what it holds is always
    the lines in order, whatever was in it, taken from its start, or cleared before."""
    lines = [native_line(Conn(request(b"User-Agent: " + b"u" * (i % 300)), request_id=b"r%d" % i), 200, 0.5)
             for i in range(3000)]
    buffer = bytearray(b"kept\n")
    write = native.LineWriter(buffer, 1 << 30, print, print).write
    expected = bytearray(b"kept\n")
    for i, line in enumerate(lines):
        conn = Conn(request(b"User-Agent: " + b"u" * (i % 300)), request_id=b"r%d" % i)
        write(conn, 200, 0.5)
        expected += line
        if i % 97 == 0:  # the first line taken: the bytearray's start moves
            del buffer[:buffer.index(b"\n") + 1], expected[:expected.index(b"\n") + 1]
        if i == 2000:
            buffer.clear(), expected.clear()
    pattern = re.compile(rb'"time":[^,]*')
    assert pattern.sub(b"", bytes(buffer)) == pattern.sub(b"", bytes(expected))
    assert bytes(buffer).endswith(b"}\n") and buffer.count(b"\n") == expected.count(b"\n") > 900


@needs_native
def test_a_buffer_with_a_view_on_it_is_not_resized():
    buffer = bytearray(b"kept\n")
    failures = []
    write = native.LineWriter(buffer, 1 << 30, print, failures.append).write
    with memoryview(buffer):
        write(Conn(request()), 200, 0.5)
    assert [type(exc) for exc in failures] == [BufferError] and buffer == b"kept\n"
    write(Conn(request()), 200, 0.5)
    assert buffer.startswith(b'kept\n{"time":') and buffer.endswith(b"}\n")


@needs_native
def test_memory_stays_flat_over_many_lines():
    import tracemalloc

    conn = Conn(request(b"User-Agent: " + b"u" * 200), bytes_in=2**70)
    buffer = bytearray()
    write = native.LineWriter(buffer, 1 << 30, print, print).write

    def run(n):
        for _ in range(n):
            write(conn, 200, 0.5)
            buffer.clear()

    run(1000)
    gc.collect()
    tracemalloc.start()
    try:
        run(1000)
        start = tracemalloc.get_traced_memory()[0]
        run(100000)
        assert tracemalloc.get_traced_memory()[0] - start < 10000
    finally:
        tracemalloc.stop()


# -- the access log with the C writer ---------------------------------------------------------


@needs_native
def test_the_json_access_log_writes_lines_from_the_connection(tmp_path):
    path = tmp_path / "access.log"
    sink = AccessLog(str(path), "json", 64 * 1024)
    assert not sink.needs_record
    assert AccessLog(str(path), "combined", 64 * 1024).needs_record
    for i in range(3):
        sink.write_request(Conn(request(), request_id=b"r%d" % i), 200, 0.01)
    assert path.read_bytes() == b""  # buffered until the tick
    sink.flush()
    assert [r["request_id"] for r in lines_of(path.read_bytes())] == ["r0", "r1", "r2"]


@needs_native
def test_a_buffer_at_its_bound_is_written_out_before_the_next_line(tmp_path):
    path = tmp_path / "access.log"
    sink = AccessLog(str(path), "json", 1024)
    line_bytes = len(native_line(Conn(request(), request_id=b"r0"), 200, 0.01)) + 5  # the time has 1-6 decimals
    for i in range(10):
        sink.write_request(Conn(request(), request_id=b"r%d" % i), 200, 0.01)
        assert len(sink.buffer) < 1024 + line_bytes  # past the bound by at most one line
    written = lines_of(path.read_bytes())
    assert 0 < len(written) < 10
    sink.flush()
    assert [r["request_id"] for r in lines_of(path.read_bytes())] == [f"r{i}" for i in range(10)]
    assert sink.dropped == 0


@needs_native
def test_lines_are_dropped_and_counted_while_the_target_cannot_take_them(tmp_path):
    with slow_pipe(tmp_path) as (fifo, reader):
        sink = AccessLog(str(fifo), "json", 8 * 1024)
        total = 2000  # far more than the pipe (64 KiB) and the buffer hold
        for i in range(total):
            sink.write_request(Conn(request(), request_id=b"r%05d" % i), 200, 0.01)
            assert len(sink.buffer) < 8 * 1024 + 1024
            if i % 100 == 0:
                sink.flush()
        assert sink.dropped > 0
        ids = [r["request_id"] for r in lines_of(drain(reader, sink))]  # every line whole
        assert len(ids) + sink.dropped == total
        assert ids == sorted(ids)


@needs_native
def test_a_full_disk_drops_and_counts_lines():
    sink = AccessLog("/dev/full", "json", 64 * 1024)
    for _ in range(5):
        sink.write_request(Conn(request()), 200, 0.01)
    sink.flush()
    assert sink.dropped == 5 and not sink.buffer


@needs_native
def test_a_connection_that_cannot_be_read_costs_its_line_not_the_worker(tmp_path, caplog):
    path = tmp_path / "access.log"
    sink = AccessLog(str(path), "json", 64 * 1024)
    sink.write_request(Conn(request(), request_id=b"before"), 200, 0.01)
    sink.write_request(Conn(request(), bytes_in="12"), 200, 0.01)  # does not raise
    sink.write_request(Conn(request(), request_id=b"after"), 200, 0.01)
    sink.flush()
    assert [r["request_id"] for r in lines_of(path.read_bytes())] == ["before", "after"]
    assert sink.dropped == 1
    assert any("could not be logged" in r.getMessage() and "TypeError" in r.getMessage() for r in caplog.records)


# -- the observer: a record only for sinks that need one ----------------------------------------

class RecordSink:
    needs_record = True

    def __init__(self) -> None:
        self.records = []

    def write(self, record) -> None:
        self.records.append(record)


class RequestSink:
    needs_record = False

    def __init__(self) -> None:
        self.requests = []

    def write_request(self, conn, status, total_s) -> None:
        self.requests.append((conn, status, total_s))


class NoMetrics:
    def request_done(self, conn, status, total_s) -> None:
        pass


class TimedConn(Conn):
    __slots__ = ("received_s",)


def test_no_record_is_made_when_no_sink_needs_one(monkeypatch):
    made = []
    monkeypatch.setattr(observer_module, "make_record", lambda *args: made.append(args))
    sink = RequestSink()
    conn = TimedConn(request())
    conn.received_s = time.monotonic() - 0.25
    RequestObserver(NoMetrics(), [sink]).done(conn, 204)
    assert not made
    [(got, status, total_s)] = sink.requests
    assert got is conn and status == 204 and 0.25 <= total_s < 1.0


def test_one_record_serves_every_sink_that_needs_one():
    first, second, direct = RecordSink(), RecordSink(), RequestSink()
    conn = TimedConn(request())
    conn.received_s = time.monotonic()
    observer = RequestObserver(NoMetrics(), [first, direct, second])
    observer.done(conn, 200)
    assert len(first.records) == 1 and second.records[0] is first.records[0]
    assert first.records[0].path == "/v1/users?id=7" and len(direct.requests) == 1
    assert observer.outputs == (first, direct, second)


def test_the_access_log_takes_what_its_format_needs(tmp_path):
    json_log = AccessLog(str(tmp_path / "a.log"), "json", 1024)
    assert json_log.needs_record is (native is None)
    assert AccessLog(str(tmp_path / "b.log"), "combined", 1024).needs_record


def test_at_most_one_sink_reads_the_connection():
    with pytest.raises(ValueError):
        RequestObserver(NoMetrics(), [RequestSink(), RecordSink(), RequestSink()])
