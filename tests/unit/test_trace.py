"""The traceparent parser (W3C Trace Context) and the per-request header the gateway makes."""

import re

import pytest

from fastgate.observe.trace import Tracer, is_sampled, parse_traceparent, span_id_of, trace_id_of

TRACE = b"4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = b"00f067aa0ba902b7"
VALID = b"00-" + TRACE + b"-" + PARENT + b"-01"
HEADER = re.compile(rb"\r\ntraceparent: 00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def test_a_valid_version_00_value_is_parsed():
    assert parse_traceparent(VALID) == (TRACE, PARENT, b"01")
    assert parse_traceparent(VALID[:-2] + b"00") == (TRACE, PARENT, b"00")


@pytest.mark.parametrize("value", [
    b"",
    b"garbage",
    VALID.upper(),                                     # hex must be lower case
    b"00-" + TRACE.upper() + b"-" + PARENT + b"-01",
    b"00-" + b"0" * 32 + b"-" + PARENT + b"-01",       # all-zero trace id
    b"00-" + TRACE + b"-" + b"0" * 16 + b"-01",        # all-zero parent id
    b"ff-" + TRACE + b"-" + PARENT + b"-01",           # version ff is invalid
    VALID + b"-extra",                                 # version 00 is exactly 55 characters
    VALID[:-1],                                        # too short
    b"00-" + TRACE[:-1] + b"-" + PARENT + b"0-01",     # field lengths
    b"00_" + TRACE + b"-" + PARENT + b"-01",           # separators
    b"0g-" + TRACE + b"-" + PARENT + b"-01",
    b"00-" + TRACE + b"-" + PARENT + b"-0x",
    b"repeated",                                       # what wire/h1.py stores for two headers
])
def test_invalid_values_are_refused(value):
    assert parse_traceparent(value) is None


def test_a_later_version_is_read_as_version_00_with_only_the_sampled_flag():
    later = b"cc-" + TRACE + b"-" + PARENT + b"-03"
    assert parse_traceparent(later) == (TRACE, PARENT, b"01")
    assert parse_traceparent(later + b"-what-comes-later") == (TRACE, PARENT, b"01")
    assert parse_traceparent(later[:-1] + b"2") == (TRACE, PARENT, b"00")
    assert parse_traceparent(later + b"x") is None  # more than 55 characters needs a dash


def test_a_valid_incoming_trace_is_continued_with_a_new_span():
    header = Tracer(1.0).start(VALID)
    m = HEADER.fullmatch(header)
    assert m and m.group(1) == TRACE and m.group(2) != PARENT and m.group(3) == b"01"
    assert trace_id_of(header) == TRACE and span_id_of(header) == m.group(2)
    assert is_sampled(header)
    unsampled = Tracer(1.0).start(VALID[:-2] + b"00")
    assert not is_sampled(unsampled)  # the client's decision stands


def test_a_new_trace_is_started_without_a_valid_incoming_one():
    tracer = Tracer(1.0)
    headers = [tracer.start(value) for value in (b"", b"garbage", VALID.upper())]
    for header in headers:
        m = HEADER.fullmatch(header)
        assert m and m.group(1) != TRACE.upper().lower() and m.group(3) == b"01"
    assert len({trace_id_of(h) for h in headers}) == 3
    assert len({span_id_of(h) for h in headers}) == 3


def test_sample_ratio_decides_the_flag_of_new_traces():
    assert not any(is_sampled(Tracer(0.0).start(b"")) for _ in range(200))
    assert all(is_sampled(Tracer(1.0).start(b"")) for _ in range(200))
    tracer = Tracer(0.25)
    sampled = sum(is_sampled(tracer.start(b"")) for _ in range(4000))
    assert 700 < sampled < 1300  # 1000 expected; the bound is many standard deviations wide
    for _ in range(50):  # the decision follows the trace id, so every gateway decides alike
        header = tracer.start(b"")
        assert is_sampled(header) == (int(trace_id_of(header)[16:], 16) < 0.25 * 2**64)


def test_no_header_means_no_ids():
    assert trace_id_of(b"") == b"" and span_id_of(b"") == b"" and not is_sampled(b"")
