"""Strict chunked transfer-coding framing (RFC 9112 section 7.1), sans-IO.

Theory of operation
-------------------
fastgate relays a chunked body as the bytes it received; this class only has
to find where the body ends, and to refuse anything that is not exactly the
grammar, so that a peer behind us cannot be made to frame it differently
(request smuggling). ``feed(data, start)`` walks ``data`` from ``start`` and
returns the offset just past the body's last byte (the CRLF that closes the
trailer section), or -1 when the body goes on in later data. Chunk payloads
are skipped by arithmetic, so a large chunk costs no Python work per byte.
When ``payload`` is given (a list), the chunk data slices are appended to it,
for a peer that needs the body without the chunked coding (HTTP/1.0). With
``keep_trailers`` the trailer fields are kept in ``trailers`` as (lower-case
name, value) pairs, for a peer that carries them in a frame of its own
(HTTP/2); ``render_trailers`` writes fields back as a last chunk.

States: SIZE (reading a chunk-size line), DATA (skipping payload bytes),
DATA_END (expecting the CRLF after a payload), TRAILER (reading trailer
lines until an empty one), DONE.

Grammar, as RFC 9112 7.1 has it: a size line is 1*HEXDIG (at most 15) and
``*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )``, with no
byte above 0x7E; every line ends in CRLF; a trailer line is ``token ":"
value`` without obs-fold. A request's trailer may not carry a field that
frames, routes or authorises the message (RFC 9110 6.5.1): an upstream
that merges trailers into the head must not be handed one.
"""

import re

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)
_HEX = frozenset(b"0123456789abcdefABCDEF")
_MAX_LINE = 4096
_MAX_HEX_DIGITS = 15
_MAX_TRAILER_BYTES = 16 * 1024
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_EXTENSIONS = re.compile(
    rb'(?:[ \t]*;[ \t]*' + _TOKEN + rb'(?:[ \t]*=[ \t]*(?:' + _TOKEN + rb'|"(?:[\t !#-\[\]-~]|\\[\t -~])*"))?)*')
_TRAILER_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(?:[!-~](?:[\t -~]*[!-~])?)?[ \t]*")
REQUEST_TRAILER_FORBIDDEN = frozenset((
    b"content-length", b"transfer-encoding", b"host", b"connection", b"keep-alive", b"trailer", b"te", b"upgrade",
    b"expect", b"authorization", b"proxy-authorization", b"cookie", b"content-type", b"content-encoding",
    b"content-range", b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto",
))
"""Fields a request trailer may not carry (framing, routing, authentication, payload processing)."""


class FramingError(Exception):
    """The bytes are not a valid chunked body."""


class BodyTooLarge(FramingError):
    """The body's payload passed ``max_body_bytes``."""


class ChunkedFramer:
    __slots__ = ("_state", "_line", "_remaining", "_trailer_bytes", "body_bytes", "max_body_bytes", "forbidden_trailers",
                 "trailers")

    def __init__(self, max_body_bytes: int = 0, forbidden_trailers: frozenset = frozenset(),
                 keep_trailers: bool = False) -> None:
        self._state = _SIZE
        self._line = b""  # partial size/trailer line carried across feeds
        self._remaining = 0  # payload bytes (DATA) or CRLF bytes (DATA_END) still expected
        self._trailer_bytes = 0
        self.body_bytes = 0
        """Payload bytes seen so far (without the chunked coding)."""
        self.max_body_bytes = max_body_bytes
        """Above this many payload bytes BodyTooLarge is raised; 0 means no limit."""
        self.forbidden_trailers = forbidden_trailers
        """Trailer field names (lower case) that make the body invalid (REQUEST_TRAILER_FORBIDDEN for requests)."""
        self.trailers: list[tuple[bytes, bytes]] | None = [] if keep_trailers else None
        """The trailer fields read, with ``keep_trailers``; else None."""

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes, start: int = 0, payload: list | None = None) -> int:
        pos = start
        end = len(data)
        while pos < end:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, end - pos)
                if payload is not None:
                    payload.append(data[pos : pos + take])
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _DATA_END
                    self._remaining = 2
            elif state == _DATA_END:
                expected = b"\r\n"[2 - self._remaining]
                if data[pos] != expected:
                    raise FramingError("chunk data not followed by CRLF")
                pos += 1
                self._remaining -= 1
                if self._remaining == 0:
                    self._state = _SIZE
            elif state == _DONE:
                return pos
            else:
                nl = data.find(b"\n", pos)
                if nl < 0:
                    self._line += data[pos:]
                    if len(self._line) > _MAX_LINE:
                        raise FramingError("chunk line too long")
                    return -1
                line = self._line + data[pos : nl + 1]
                self._line = b""
                pos = nl + 1
                if len(line) > _MAX_LINE or len(line) < 2 or line[-2] != 13:
                    raise FramingError("chunk line not ended by CRLF")
                if state == _SIZE:
                    self._size_line(line[:-2])
                else:
                    self._trailer_line(line[:-2])
                if self._state == _DONE:
                    return pos
        return pos if self._state == _DONE else -1

    def _size_line(self, line: bytes) -> None:
        if _HEX.issuperset(line) and 0 < len(line) <= _MAX_HEX_DIGITS:
            digits = line
        else:
            end = 0
            while end < len(line) and line[end] in _HEX:
                end += 1
            digits = line[:end]
            if not 0 < end <= _MAX_HEX_DIGITS:
                raise FramingError("bad chunk size")
            if _EXTENSIONS.fullmatch(line, end) is None:
                raise FramingError("bad chunk extension")
        size = int(digits, 16)
        if size == 0:
            self._state = _TRAILER
            return
        self.body_bytes += size
        if self.max_body_bytes and self.body_bytes > self.max_body_bytes:
            raise BodyTooLarge("too large")
        self._state = _DATA
        self._remaining = size

    def _trailer_line(self, line: bytes) -> None:
        if not line:
            self._state = _DONE
            return
        self._trailer_bytes += len(line) + 2
        m = _TRAILER_FIELD.fullmatch(line)
        if m is None or self._trailer_bytes > _MAX_TRAILER_BYTES:
            raise FramingError("bad trailer field")
        name = m.group(1).lower()
        if self.forbidden_trailers and name in self.forbidden_trailers:
            raise FramingError("a trailer field that frames, routes or authorises the request")
        if self.trailers is not None:
            self.trailers.append((name, line[len(name) + 1 :].strip(b" \t")))


RESPONSE_TRAILER_DROPPED = frozenset((
    b"content-length", b"transfer-encoding", b"host", b"connection", b"keep-alive", b"proxy-connection", b"trailer",
    b"te", b"upgrade", b"content-type", b"content-encoding", b"content-range",
))
"""Fields a relayed response trailer section never carries: they frame or describe the message,
and a trailer cannot (RFC 9110 6.5.1)."""
_BAD_VALUE = re.compile(rb"[\r\n\x00]")


def forwardable_trailers(fields: list) -> list[tuple[bytes, bytes]]:
    """Trailer fields (name, value) that may be relayed: no pseudo-header, framing or connection
    field, no CR, LF or NUL in a value; names in lower case."""
    kept = []
    for name, value in fields:
        name = name.lower()
        if name[:1] != b":" and name not in RESPONSE_TRAILER_DROPPED and not _BAD_VALUE.search(value):
            kept.append((name, value))
    return kept


def render_trailers(fields: list) -> bytes:
    """The last chunk of a chunked body with these (forwardable) trailer fields."""
    return b"".join([b"0\r\n", *[name + b": " + value + b"\r\n" for name, value in fields], b"\r\n"])
