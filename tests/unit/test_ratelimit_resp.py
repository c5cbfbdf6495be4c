"""The RESP2 reply parser: every reply type, replies cut anywhere, the fast path for integer arrays."""

import random

import pytest

from fastgate.runtime.resp import ReplyError, encode, parse_reply

REPLIES = [
    (b":42\r\n", 42),
    (b":-7\r\n", -7),
    (b"+OK\r\n", b"OK"),
    (b"$5\r\nhe\r\nl\r\n", b"he\r\nl"),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b"*-1\r\n", None),
    (b"*0\r\n", []),
    (b"*4\r\n:1\r\n:0\r\n:-5\r\n:1234567890123\r\n", [1, 0, -5, 1234567890123]),
    (b"*3\r\n:1\r\n$2\r\n:2\r\n:3\r\n", [1, b":2", 3]),
    (b"*2\r\n*2\r\n:1\r\n:2\r\n+x:3\r\n", [[1, 2], b"x:3"]),
    (b"*2\r\n:1\r\n-ERR x:5\r\n", [1, ReplyError("ERR x:5")]),
]


def same(a, b) -> bool:
    if isinstance(a, ReplyError):
        return isinstance(b, ReplyError) and str(a) == str(b)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("raw, value", REPLIES)
def test_each_reply_whole_and_cut_at_every_byte(raw, value):
    reply, end = parse_reply(raw + b":9\r\n", 0)
    assert same(reply, value) and end == len(raw)
    for cut in range(len(raw)):
        assert parse_reply(raw[:cut], 0) is None  # incomplete: wait for more bytes


def test_consecutive_replies_and_errors():
    data = b"".join(raw for raw, _ in REPLIES)
    pos, values = 0, []
    while pos < len(data):
        value, pos = parse_reply(data, pos)
        values.append(value)
    assert same(values, [value for _, value in REPLIES])
    error = parse_reply(b"-NOSCRIPT No matching script.\r\n", 0)[0]
    assert isinstance(error, ReplyError) and error.noscript
    assert not ReplyError("ERR wrong number of arguments").noscript


def test_commands_are_arrays_of_bulk_strings():
    assert encode([b"SET", b"k", b"a b\r\n"]) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\na b\r\n\r\n"


def _encoded(value) -> bytes:
    """``value`` as Redis sends it (the test's own encoder, independent of the parser)."""
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, ReplyError):
        return b"-" + str(value).encode() + b"\r\n"
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(_encoded(item) for item in value)
    return b"$%d\r\n%b\r\n" % (len(value), value)


def test_random_arrays_of_integers_and_of_anything_parse_whole_and_wait_when_cut():
    """The integer-array fast path against arrays built at random: only integers (what the rate
    limiter's script returns), and integers mixed with bulk strings holding ':' and CRLF, errors
    and nested arrays, which it must hand to the general parser."""
    rng = random.Random(19)
    others = [b"", b":7", b"a\r\n:1\r\n", ReplyError("ERR x:5"), [3, b":4"], -12]
    for _ in range(300):
        size = rng.randrange(0, 12)
        value = [rng.choice([rng.randrange(-10**12, 10**12), rng.randrange(3)]) for _ in range(size)]
        if size and rng.random() < 0.5:
            value[rng.randrange(size)] = rng.choice(others)
        raw = _encoded(value)
        for following in (b"", b":9\r\n+OK\r\n"):  # alone, and followed by more replies
            reply, end = parse_reply(raw + following, 0)
            assert same(reply, value) and end == len(raw)
        for cut in range(len(raw)):
            assert parse_reply(raw[:cut], 0) is None
