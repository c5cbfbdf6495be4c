"""The HTTP/2 frame guard (wire/h2_guard.py) on frames built by hyperframe, fed whole and cut anywhere."""

import random

from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame, PingFrame, RstStreamFrame, WindowUpdateFrame

from fastgate.wire.h2_guard import BLOCK_SLACK_BYTES, FLOOD, HEADER_BLOCK, RAPID_RESET, REFUND_BYTES, FrameGuard

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def guard(list_bytes: int = 1000, overhead: int = 10, resets: int = 3) -> FrameGuard:
    return FrameGuard(list_bytes, overhead, 10.0, resets, 10.0, now=0.0)


def feed(g: FrameGuard, data: bytes, cuts: list[int] | None = None) -> str | None:
    """Feed ``data`` in pieces cut at ``cuts``; the first reason found."""
    edges = [0, *sorted(cuts or []), len(data)]
    for a, b in zip(edges, edges[1:]):
        reason = g.scan(data[a:b], 0.0)
        if reason is not None:
            return reason
    return None


def headers(stream_id: int, block: bytes, end_headers: bool = True) -> bytes:
    frame = HeadersFrame(stream_id, block)
    frame.flags.add("END_STREAM")
    if end_headers:
        frame.flags.add("END_HEADERS")
    return frame.serialize()


def continuation(stream_id: int, block: bytes, end: bool = False) -> bytes:
    frame = ContinuationFrame(stream_id, block)
    if end:
        frame.flags.add("END_HEADERS")
    return frame.serialize()


def test_ordinary_traffic_passes_however_it_is_cut():
    data = PREFACE + b"".join(
        headers(i, b"x" * 200) + DataFrame(i, b"y" * 3000, flags=["END_STREAM"]).serialize() for i in range(1, 40, 2))
    data += headers(41, b"a" * 500, end_headers=False) + continuation(41, b"b" * 300, end=True)
    rng = random.Random(7)
    for _ in range(200):
        assert feed(guard(), data, rng.sample(range(1, len(data)), rng.randint(1, 30))) is None


def test_a_header_block_growing_past_the_list_limit_is_cut_before_its_end():
    data = PREFACE + headers(1, b"a" * 600, end_headers=False) + continuation(1, b"b" * 600)
    assert feed(guard(list_bytes=1000), data) is None  # 1218 bytes: within the slack
    data += continuation(1, b"c" * BLOCK_SLACK_BYTES)
    assert feed(guard(list_bytes=1000), data, [30, 700]) == HEADER_BLOCK
    # empty CONTINUATION frames end the same way, by their headers
    empty = PREFACE + headers(1, b"a", end_headers=False) + continuation(1, b"") * 300
    assert feed(guard(list_bytes=1000), empty, [100, 101, 102]) == HEADER_BLOCK


def test_overhead_frames_spend_an_allowance_that_requests_and_responses_refill():
    pings = PREFACE + PingFrame(0, b"12345678").serialize() * 10
    g = guard(overhead=10)
    assert feed(g, pings, [5, 40, 41]) is None
    assert g.scan(WindowUpdateFrame(0, 1).serialize(), 0.0) == FLOOD

    g = guard(overhead=10)
    assert feed(g, pings) is None
    g.scan(headers(1, b"x"), 0.0)
    g.sent(0, REFUND_BYTES)
    assert g.scan(RstStreamFrame(1).serialize() + DataFrame(1, b"").serialize(), 0.0) is None
    assert g.scan(PingFrame(0).serialize(), 0.0) == FLOOD


def test_empty_data_ending_a_stream_is_progress():
    g = guard(overhead=1)
    data = PREFACE + DataFrame(1, b"", flags=["END_STREAM"]).serialize() * 5 + DataFrame(1, b"z").serialize() * 5
    assert feed(g, data) is None


def test_request_data_pays_for_the_window_updates_and_pings_that_come_with_it():
    # a gRPC stream of small messages: the client pings and updates windows as they flow
    g = guard(overhead=4)
    assert g.scan(PREFACE, 0.0) is None
    for _ in range(100):
        frames = DataFrame(1, b"msg").serialize() + WindowUpdateFrame(0, 3).serialize()
        assert g.scan(frames, 0.0) is None
    g = guard(overhead=4)  # so does response data: one update or ping per DATA frame received
    assert g.scan(PREFACE, 0.0) is None
    for _ in range(100):
        g.sent(1, 20)
        assert g.scan(PingFrame(0).serialize(), 0.0) is None
    g = guard(overhead=4)  # without the data, the same updates are a flood
    assert g.scan(PREFACE + WindowUpdateFrame(0, 3).serialize() * 5, 0.0) == FLOOD


def test_allowances_refill_over_their_window():
    g = FrameGuard(1000, 2, 10.0, 2, 10.0, now=0.0)
    assert g.reset(0.0) is None and g.reset(0.0) is None
    assert g.reset(0.0) == RAPID_RESET
    assert g.reset(10.0) is None  # a window later: refilled
