"""ChunkedFramer: finds the end of a chunked body exactly, and refuses anything off-grammar."""

import pytest

from fastgate.wire.chunked import REQUEST_TRAILER_FORBIDDEN, ChunkedFramer, FramingError

BODY = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"


def test_finds_the_end_and_what_follows_stays():
    framer = ChunkedFramer()
    end = framer.feed(BODY + b"GET / HTTP/1.1\r\n")
    assert end == len(BODY)
    assert framer.done
    assert framer.body_bytes == 11


@pytest.mark.parametrize("cut", range(1, len(BODY)))
def test_any_split_point_gives_the_same_end(cut):
    framer = ChunkedFramer()
    assert framer.feed(BODY[:cut]) == -1
    assert framer.feed(BODY[cut:]) == len(BODY) - cut


def test_payload_without_the_coding():
    payload: list[bytes] = []
    ChunkedFramer().feed(BODY, 0, payload)
    assert b"".join(payload) == b"hello world"


def test_trailers_are_part_of_the_body():
    body = b"1\r\na\r\n0\r\nX-Sum: 1\r\n\r\n"
    assert ChunkedFramer().feed(body + b"rest") == len(body)


@pytest.mark.parametrize("bad", [
    b"x\r\nhello\r\n",             # not hex
    b"0x5\r\nhello\r\n",           # prefix
    b"5 \r\nhello\r\n",            # space before CRLF
    b"5\nhello\r\n",               # bare LF
    b"5\r\nhelloXX",               # data not followed by CRLF
    b"-5\r\n",                     # sign
    b"1234567890abcdef0\r\n",      # too many digits
    b"5;\x01\r\nhello\r\n",        # control char in extension
    b"0\r\nbad trailer\r\n\r\n",   # trailer without colon
    # chunk extensions off RFC 9112's grammar (a quote-aware peer could frame them differently)
    b"5;\r\nhello\r\n",
    b"5;=\r\nhello\r\n",
    b"5;;;\r\nhello\r\n",
    b'5;a="b\r\nhello\r\n',         # unterminated quoted-string
    b"5;a(b)=c\r\nhello\r\n",       # a separator in the name
    b"5;a=\xff\r\nhello\r\n",       # not a token
    b'5;a="\xff"\r\nhello\r\n',     # obs-text
    b"5;a=b c\r\nhello\r\n",
    b"5;a\rb\r\nhello\r\n",         # bare CR
    b"0\r\nBad Name: 1\r\n\r\n",     # trailer name not a token
    b"0\r\n X: 1\r\n\r\n",           # obs-fold / leading space
    b"0\r\nX: a\x01\r\n\r\n",         # control in a trailer value
])
def test_malformed_is_refused(bad):
    with pytest.raises(FramingError):
        ChunkedFramer().feed(bad)


@pytest.mark.parametrize("good", [
    b'5;a="x;y"\r\nhello\r\n0\r\n\r\n',
    b"5;a=b;c\r\nhello\r\n0\r\n\r\n",
    b"5 ; a = b\r\nhello\r\n0\r\n\r\n",       # BWS is part of the grammar
    b'5;a="q\\"x"\r\nhello\r\n0\r\n\r\n',     # quoted-pair
    b"00005\r\nhello\r\n0\r\nX-Sum: 1\r\nX-Empty:\r\n\r\n",
])
def test_grammar_accepted(good):
    assert ChunkedFramer(0, REQUEST_TRAILER_FORBIDDEN).feed(good) == len(good)


@pytest.mark.parametrize("name", sorted(REQUEST_TRAILER_FORBIDDEN))
def test_request_trailers_may_not_frame_route_or_authorise(name):
    body = b"1\r\na\r\n0\r\n" + name.title() + b": 1\r\n\r\n"
    assert ChunkedFramer().feed(body) == len(body)  # a response's trailer is relayed
    with pytest.raises(FramingError):
        ChunkedFramer(0, REQUEST_TRAILER_FORBIDDEN).feed(body)


def test_body_limit():
    framer = ChunkedFramer(max_body_bytes=8)
    with pytest.raises(FramingError, match="too large"):
        framer.feed(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n")
